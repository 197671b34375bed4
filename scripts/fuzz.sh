#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each. Not run in CI.
#
# Usage: scripts/fuzz.sh [SECONDS]
#   SECONDS per target: the first argument, else $FUZZ_SECONDS, else 60.
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and python3; installs
# cargo-fuzz when `cargo fuzz` is missing. Seeds fuzz/corpus/ with the interop fixture
# tokens and JWK Set (the differential target, whose input describes a token, starts
# empty). Crashes are saved under fuzz/artifacts/<target>/; reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<crash-file>
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-${FUZZ_SECONDS:-60}}"
case "$seconds" in
    '' | *[!0-9]*)
        echo "usage: $0 [SECONDS]  (seconds per target, a positive integer)" >&2
        exit 2
        ;;
esac
if [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS]  (seconds per target, a positive integer)" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "a nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 1
fi

fixtures="$root/tests/fixtures/interop"
corpus="$root/fuzz/corpus"
mkdir -p "$corpus/verify_token" "$corpus/jwks" "$corpus/differential"

# Seed corpus: every token of the interop cases (accepted and refused), and the JWK Set.
python3 - "$fixtures/cases.json" "$corpus/verify_token" <<'PY'
import json
import pathlib
import re
import sys

cases = json.loads(pathlib.Path(sys.argv[1]).read_text(encoding="utf-8"))["cases"]
out = pathlib.Path(sys.argv[2])
for case in cases:
    token = case.get("token")
    if isinstance(token, str) and token:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(case.get("name", "case")))
        (out / f"seed-{name}").write_text(token, encoding="utf-8")
PY
cp "$fixtures/keys/jwks.json" "$corpus/jwks/seed-interop-jwks.json"

cd "$root"
for target in verify_token jwks differential; do
    echo "== fuzzing $target for ${seconds}s"
    cargo +nightly fuzz run --fuzz-dir "$root/fuzz" "$target" -- \
        -max_total_time="$seconds" -max_len=20000
done
echo "== no crash found"
