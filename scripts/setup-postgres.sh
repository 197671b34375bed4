#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) and psql are on this
# machine, for the tests of the `postgres` feature (tests/src/postgres.rs starts a fresh
# cluster per test under target/pg-tests/; nothing is started here).
#
# Installs the Debian package `postgresql` with apt when they are missing (as root, or
# with sudo). Idempotent. PG_BINDIR, when set, names the directory of initdb and pg_ctl
# to use instead.
set -euo pipefail

say() { printf 'setup-postgres: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

found() {
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/initdb" ] && [ -x "$PG_BINDIR/pg_ctl" ]
  else
    compgen -G '/usr/lib/postgresql/*/bin/initdb' > /dev/null
  fi && command -v psql > /dev/null
}

if found; then
  say "PostgreSQL present: $(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | tail -1)${PG_BINDIR:+ (PG_BINDIR=$PG_BINDIR)}"
  exit 0
fi
[ -z "${PG_BINDIR:-}" ] || die "PG_BINDIR=$PG_BINDIR has no initdb and pg_ctl"

if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo > /dev/null; then
  as_root=(sudo)
else
  die "PostgreSQL is missing and this user cannot install it: run 'apt-get install postgresql' as root"
fi
command -v apt-get > /dev/null || die "PostgreSQL is missing and apt-get is not available: install PostgreSQL (15 or later) and set PG_BINDIR"
say "installing the Debian package postgresql"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends postgresql > /dev/null
found || die "the postgresql package installed, but no /usr/lib/postgresql/*/bin/initdb was found"
# The package starts a cluster of its own on port 5432; the tests do not use it.
say "PostgreSQL installed: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
