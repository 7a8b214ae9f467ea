# ops-warden — build, run, test.
GO       ?= go
BIN      := bin/warden-agent
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 30s
PKGS     := ./...

.PHONY: all build run test vet fuzz clean man install

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/warden-agent

## run: build and start the agent in the foreground (local CA when no OpenBao is configured)
run: build
	./$(BIN) run

## test: vet, then every test (real ssh, sshd, ssh-agent; race detector on)
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## fuzz: run every fuzz target for FUZZTIME each (make test runs their seed corpora)
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## fuzz-seeds: record the fuzz targets' seed corpora (*/testdata/fuzz) from real ssh, ssh-add, sshd and ssh-agent traffic
.PHONY: fuzz-seeds
fuzz-seeds:
	WARDEN_RECORD_SEEDS=1 $(GO) test -count=1 -run '^TestRecordSeeds$$' ./cmd/warden-agent
	$(GO) test -count=1 -run 'Fuzz|TestRecorded' ./agentproxy ./audit ./catalog ./policy ./signer

## man: regenerate docs/warden-agent.1 from the CLI definition (a test checks it is current)
man:
	$(GO) run ./cmd/warden-agent man > docs/warden-agent.1

## install: the binary to $(PREFIX)/bin, the man page, and the systemd user units
PREFIX  ?= $(HOME)/.local
UNITDIR ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/systemd/user
install: build
	install -d $(PREFIX)/bin $(PREFIX)/share/man/man1 $(UNITDIR)
	install -m 0755 $(BIN) $(PREFIX)/bin/warden-agent
	install -m 0644 docs/warden-agent.1 $(PREFIX)/share/man/man1/warden-agent.1
	sed 's|^ExecStart=.*|ExecStart=$(PREFIX)/bin/warden-agent run|' contrib/systemd/warden-agent.service > $(UNITDIR)/warden-agent.service
	install -m 0644 contrib/systemd/warden-agent.socket $(UNITDIR)/warden-agent.socket
	chmod 0644 $(UNITDIR)/warden-agent.service
	@echo "enable with: systemctl --user enable --now warden-agent.socket"

clean:
	rm -rf bin

## bench: side-by-side benchmarks against ssh-agent (bench/results/; see docs/performance.md)
.PHONY: bench
bench:
	GO=$(GO) sh bench/run.sh $(BENCHFLAGS)
