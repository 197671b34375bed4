#!/usr/bin/env bash
# Instructions per request of the in-process request path (sdk/benches/request_path.rs),
# counted by valgrind's callgrind: a figure this noisy VM repeats to within about 1%, where
# its CPU time per request varies by 20%. Instructions are not time (a cache miss costs
# more than an add), so this complements the timed benches; it does not replace them.
#
#   scripts/instructions.sh [CASE...]      default: bare authz/cached_no_audit authz/cached
#   BIN=<request_path binary> scripts/instructions.sh ...   count another build's binary
#
# Each case runs 1,000 and then 3,000 requests under callgrind; the difference divided by
# 2,000 is the count per request, without the set-up (key generation, runtime start).
# glibc is told not to copy with `rep movsb`, which callgrind counts once per byte: copies
# are then counted as the vector loop a CPU without that feature would run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  BIN=$(cargo bench -p rmcp-authz --features http,cache --bench request_path --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
fi
[ -x "$BIN" ] || { echo "no request_path binary at '$BIN'" >&2; exit 1; }
[ $# -eq 0 ] && set -- bare authz/cached_no_audit authz/cached
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  REQUEST_PATH_PROFILE="$1" REQUEST_PATH_REQUESTS="$2" \
    GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4194304 \
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$BIN" --bench 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | sort -n | tail -1
}
for case in "$@"; do
  small=$(count "$case" 1000)
  large=$(count "$case" 3000)
  printf '%-24s %8d instructions per request\n' "$case" $(((large - small) / 2000))
done
