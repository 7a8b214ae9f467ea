#!/bin/sh
# bench/run.sh — build warden-agent and warden-bench, then measure warden
# against OpenSSH's ssh-agent and the bare x/crypto keyring (issues 7 and 17).
# Results: bench/results/latest.jsonl (one JSON line per measurement) and
# bench/results/latest.md (medians, ratios and the goals of issue 17).
# Extra arguments go to warden-bench, e.g. `bench/run.sh -reps 5 -window 5s`,
# `-only hint,login` or `-ssh-agent /opt/openssh/bin/ssh-agent`.
# WARDEN_BIN=/path/to/warden-agent (or -warden PATH) measures that binary,
# e.g. an older build, instead of building one from this tree.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=$(mktemp -d "${TMPDIR:-/tmp}/warden-bench-bin.XXXXXX")
trap 'rm -rf "$BIN"' EXIT INT TERM
for tool in ssh ssh-keygen; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found (install openssh-client)" >&2; exit 1; }
done
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null || { echo "bench: sshd not found (install openssh-server)" >&2; exit 1; }
given=
for arg in "$@"; do
	case $arg in -warden | --warden | -warden=* | --warden=*) given=yes ;; esac
done
if [ -n "${WARDEN_BIN:-}" ] && [ -z "$given" ]; then
	set -- -warden "$WARDEN_BIN" "$@"
elif [ -z "$given" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
	# As `make build` and `make release` build it: static, without
	# urfave/cli's man generator.
	CGO_ENABLED=0 "$GO" build -trimpath -tags urfave_cli_no_docs -ldflags "-X main.version=$VERSION" -o "$BIN/warden-agent" ./cmd/warden-agent
	# beside it, as `make install` puts it: the ssh-config block runs it
	CGO_ENABLED=0 "$GO" build -trimpath -o "$BIN/warden-hint" ./cmd/warden-hint
	set -- -warden "$BIN/warden-agent" "$@"
fi
"$GO" build -trimpath -o "$BIN/warden-bench" ./cmd/warden-bench
"$BIN/warden-bench" -out bench/results "$@"
echo "bench: wrote latest.jsonl and latest.md (in bench/results unless -out said otherwise)"
