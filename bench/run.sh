#!/bin/sh
# bench/run.sh — build warden-agent and warden-bench, then measure warden
# against OpenSSH's ssh-agent and the bare x/crypto keyring (issue 7).
# Results: bench/results/latest.jsonl (one JSON line per measurement) and
# bench/results/latest.md (medians and ratios). Extra arguments go to
# warden-bench, e.g. `bench/run.sh -reps 5 -window 5s` or `-only sign,login`.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=$(mktemp -d "${TMPDIR:-/tmp}/warden-bench-bin.XXXXXX")
trap 'rm -rf "$BIN"' EXIT INT TERM
for tool in ssh ssh-agent ssh-keygen; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found (install openssh-client)" >&2; exit 1; }
done
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null || { echo "bench: sshd not found (install openssh-server)" >&2; exit 1; }
"$GO" build -trimpath -o "$BIN/warden-agent" ./cmd/warden-agent
"$GO" build -trimpath -o "$BIN/warden-bench" ./cmd/warden-bench
"$BIN/warden-bench" -warden "$BIN/warden-agent" -out bench/results "$@"
echo "bench: wrote bench/results/latest.jsonl and bench/results/latest.md"
