#!/usr/bin/env bash
# Every measurement of docs/performance.md, with one command:
#
#   scripts/bench.sh              the criterion benches, then the end-to-end load harness
#   scripts/bench.sh sdk [ARGS]   only the criterion benches (ARGS go to criterion, e.g. a filter)
#   scripts/bench.sh load [ARGS]  only the load harness (ARGS go to it, e.g. --quick, --help)
#
# Before/after in the same run: BEFORE=<git revision> builds that revision (from `git archive`,
# in target/bench-before/) and then
# - runs each criterion bench of the earlier build right before the same bench of this tree;
# - gives the load harness `--before <its harness binary>`, so every main and overhead cell
#   also runs the earlier build's authz servers, alternating with this tree's.
#
# It first prints the machine facts the numbers depend on: cores, memory, the filesystem of
# the temp dir (fsync cost depends on it) and the load average (other work on the machine
# skews every case). Output is kept in target/bench-output.txt; the harness also writes
# target/load/results.md and target/load/throughput.svg. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log=target/bench-output.txt
tmp="${TMPDIR:-/tmp}"
what="${1:-all}"
[ $# -gt 0 ] && shift
case "$what" in
  all | sdk | load) ;;
  *) echo "usage: scripts/bench.sh [all | sdk [criterion args] | load [harness args]]" >&2; exit 2 ;;
esac

{
  echo "== machine"
  echo "nproc: $(nproc)"
  free -h
  df -hT "$tmp"
  echo "load average (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$log"

before_args=()
if [ -n "${BEFORE:-}" ]; then
  before_dir="$PWD/target/bench-before"
  rev="$(git rev-parse --short "$BEFORE")"
  echo "== building the earlier build $rev in $before_dir" | tee -a "$log"
  rm -rf "$before_dir/src"
  mkdir -p "$before_dir/src"
  git archive "$rev" | tar -x -C "$before_dir/src"
  ( cd "$before_dir/src" && CARGO_TARGET_DIR="$before_dir/target" \
      cargo bench --no-run -p rmcp-authz-tests --bench load )
  before_exe="$(ls -t "$before_dir"/target/release/deps/load-* | grep -v '\.d$' | head -n 1)"
  before_args=(--before "$before_exe")
fi

if [ "$what" != load ]; then
  for bench in verify policy cedar dpop audit_pipeline request_path; do
    # (An earlier revision may not have this bench yet.)
    if [ -n "${BEFORE:-}" ] && [ -f "$before_dir/src/sdk/benches/$bench.rs" ]; then
      echo "== (before: $rev) cargo bench -p rmcp-authz --all-features --bench $bench" | tee -a "$log"
      ( cd "$before_dir/src" && CARGO_TARGET_DIR="$before_dir/target" \
          cargo bench -p rmcp-authz --all-features --bench "$bench" -- "$@" ) 2>&1 | tee -a "$log"
    fi
    echo "== cargo bench -p rmcp-authz --all-features --bench $bench" | tee -a "$log"
    cargo bench -p rmcp-authz --all-features --bench "$bench" -- "$@" 2>&1 | tee -a "$log"
  done
fi
if [ "$what" != sdk ]; then
  echo "== cargo bench -p rmcp-authz-tests --bench load ${before_args[*]}" | tee -a "$log"
  cargo bench -p rmcp-authz-tests --bench load -- "${before_args[@]}" "$@" 2>&1 | tee -a "$log"
fi
echo "load average after (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
