#!/usr/bin/env bash
# Runs every test of the workspace, after setting up what the tests need.
#
# Everything a test needs is installed by this script: beyond the Rust toolchain, the
# Python and TypeScript MCP SDKs of the interop tests and the official MCP conformance suite
# (with the Node 22 it runs on), under target/interop/ (by scripts/setup-interop.sh), and
# PostgreSQL's server binaries for the `postgres` tests (the Debian package, with apt, when
# missing: scripts/setup-postgres.sh; each test starts its own cluster under target/). A
# test never skips because something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log=target/test-output.txt

./scripts/setup-interop.sh
./scripts/setup-postgres.sh

# The corpus and conformance tests print what they ran; show those summaries first.
cargo test -q -p rmcp-authz-tests --test interop --test wycheproof --test conformance \
  -- --show-output 2>&1 | grep -E '^(interop|wycheproof|conformance)' || true

status=0
cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "$log" || status=$?

# One closing line for the whole run, summed over every test binary and doctest run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
