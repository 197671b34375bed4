#!/usr/bin/env bash
# Runs the audit pipeline benchmark (sdk/benches/audit_pipeline.rs), after printing the
# machine facts its numbers depend on: cores, memory, the filesystem of the temp dir
# (fsync cost depends on it) and the load average (other work on the machine skews
# every case). Output is also kept in target/bench-output.txt.
# Extra arguments go to criterion, e.g. `scripts/bench.sh durable` for the durable cases.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log=target/bench-output.txt
tmp="${TMPDIR:-/tmp}"
{
  echo "== machine"
  echo "nproc: $(nproc)"
  free -h
  df -hT "$tmp"
  echo "load average (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "== cargo bench -p rmcp-authz --bench audit_pipeline"
} | tee "$log"
cargo bench -p rmcp-authz --bench audit_pipeline -- "$@" 2>&1 | tee -a "$log"
echo "load average after (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
