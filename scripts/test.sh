#!/usr/bin/env bash
# Runs the whole test suite: installs the real MCP peers the integration tests talk to (the
# official Python SDK in .venv; from npm the reference server-everything, and the conformance runner
# with the Node 22 it needs), then cargo test.
# Idempotent: a second run reuses what the first installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mcp, mcp_server_time' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet 'mcp==2.3.0' 'mcp-server-time==2026.10.19'
fi
# npm ls fails when anything in tests/peers/package.json is missing or at another version.
if ! (cd tests/peers && npm ls --silent >/dev/null 2>&1); then
  (cd tests/peers && npm install --silent --no-audit --no-fund)
fi

export PALISADE_PYTHON="$PWD/.venv/bin/python"
export PALISADE_PEERS_DIR="$PWD/tests/peers"
export PALISADE_REQUIRE_PEERS=1
cargo test --lib --bins --tests -- --test-threads 2
