# ops-warden — build, run, test.
GO       ?= go
BIN      := bin/warden-agent
HINT_BIN := bin/warden-hint
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 30s
PKGS     := ./...

.PHONY: all build run test vet fuzz clean man install release release-check cross-check

all: build

# The installed binary is static (nothing needs cgo; the release builds are
# static too) and leaves out urfave/cli's man/markdown generator, whose
# package init (blackfriday) every run would pay, the hint that ssh runs
# before each connection included: `make man` uses a build with it.
BUILD_ENV  := CGO_ENABLED=0
BUILD_TAGS := urfave_cli_no_docs

# warden-hint is the hint alone (standard library only): ssh runs it before
# every connection, and it starts several times faster than warden-agent.
build:
	$(BUILD_ENV) $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/warden-agent
	$(BUILD_ENV) $(GO) build -trimpath -o $(HINT_BIN) ./cmd/warden-hint

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

## install: warden-agent and warden-hint to $(PREFIX)/bin, the man page, and the systemd user units
PREFIX  ?= $(HOME)/.local
UNITDIR ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/systemd/user
install: build
	install -d $(PREFIX)/bin $(PREFIX)/share/man/man1 $(UNITDIR)
	install -m 0755 $(BIN) $(PREFIX)/bin/warden-agent
	install -m 0755 $(HINT_BIN) $(PREFIX)/bin/warden-hint
	install -m 0644 docs/warden-agent.1 $(PREFIX)/share/man/man1/warden-agent.1
	sed 's|^ExecStart=.*|ExecStart=$(PREFIX)/bin/warden-agent run|' contrib/systemd/warden-agent.service > $(UNITDIR)/warden-agent.service
	install -m 0644 contrib/systemd/warden-agent.socket $(UNITDIR)/warden-agent.socket
	chmod 0644 $(UNITDIR)/warden-agent.service
	@echo "enable with: systemctl --user enable --now warden-agent.socket"

clean:
	rm -rf bin dist

## release: warden-agent and warden-hint for every platform into dist/, with SHA256SUMS; reproducible
## (no cgo, -trimpath, no VCS stamp, empty build id: the same commit and Go give the same bytes)
RELEASE_TARGETS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64
RELEASE_FLAGS    = -trimpath -buildvcs=false -tags $(BUILD_TAGS) -ldflags "-buildid= $(LDFLAGS)"
release:
	rm -rf dist && mkdir -p dist
	@set -e; for t in $(RELEASE_TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; echo "build $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build $(RELEASE_FLAGS) \
	    -o dist/warden-agent-$(VERSION)-$$os-$$arch ./cmd/warden-agent; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build $(RELEASE_FLAGS) \
	    -o dist/warden-hint-$(VERSION)-$$os-$$arch ./cmd/warden-hint; \
	done
	cd dist && { command -v sha256sum >/dev/null && sha256sum warden-* || shasum -a 256 warden-*; } > SHA256SUMS
	@cat dist/SHA256SUMS

## release-check: build one release target twice, the second time from a copy of the
## tree at another path, and require the same bytes (cheap: the link runs twice)
release-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	git ls-files -z | xargs -0 cp --parents -t "$$tmp" 2>/dev/null || cp -r . "$$tmp"; \
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build $(RELEASE_FLAGS) -o "$$tmp/a" ./cmd/warden-agent; \
	(cd "$$tmp" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build $(RELEASE_FLAGS) -o "$$tmp/b" ./cmd/warden-agent); \
	cmp "$$tmp/a" "$$tmp/b" && echo "release build is reproducible ($$(sha256sum "$$tmp/a" | cut -c1-16))"

## cross-check: vet every package and build its test binary for macOS and FreeBSD
CROSS_TARGETS ?= darwin/arm64 darwin/amd64 freebsd/amd64
cross-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for t in $(CROSS_TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; echo "vet and test binaries for $$os/$$arch"; \
	  GOOS=$$os GOARCH=$$arch $(GO) vet $(PKGS); \
	  GOOS=$$os GOARCH=$$arch $(GO) test -c -o "$$tmp/" $(PKGS) >/dev/null; \
	  GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/...; \
	done

## bench: side-by-side benchmarks against ssh-agent (bench/results/; see docs/performance.md)
##   make bench BENCHFLAGS='-ssh-agent /path/ssh-agent -only hint,login'   WARDEN_BIN=old/warden-agent measures a prebuilt binary
.PHONY: bench
bench:
	GO=$(GO) WARDEN_BIN=$(WARDEN_BIN) sh bench/run.sh $(BENCHFLAGS)
