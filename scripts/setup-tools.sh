#!/usr/bin/env bash
# Installs the cargo subcommands CI runs that the Rust toolchain does not ship, at pinned
# versions, under target/tools (not ~/.cargo: nothing installed by hand is needed, and
# nothing installed by hand is used):
#
#   target/tools/bin/cargo-hack   the per-feature lints of .ci/run (`cargo hack --each-feature`)
#
# Put them first on PATH to use them: PATH="$PWD/target/tools/bin:$PATH".
# Idempotent: a tool is installed only when it is missing or not the pinned version. Needs
# crates.io. A tool that cannot be installed is an error, never a check skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

root=target/tools
hack_pin=0.6.46

say() { printf 'setup-tools: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

# `cargo-hack hack --version` prints "cargo-hack X.Y.Z".
installed_hack() {
  "$root/bin/cargo-hack" hack --version 2> /dev/null | awk '{ print $2 }' || true
}
if [ "$(installed_hack)" = "$hack_pin" ]; then
  say "cargo-hack $hack_pin already in $root/bin"
else
  say "installing cargo-hack $hack_pin into $root/bin"
  cargo install --quiet --locked --root "$root" --version "=$hack_pin" cargo-hack
  [ "$(installed_hack)" = "$hack_pin" ] \
    || die "cargo-hack $hack_pin did not install (found '$(installed_hack)')"
fi
