#!/usr/bin/env bash
# The MCP example against the official conformance suite (@modelcontextprotocol/conformance, server scenarios)
# and the official TypeScript SDK's client (sdk_client.test.mjs). Installs the pinned npm packages, builds and
# starts examples/mcp_server.rs on a free loopback port, runs both, stops the server by PID.
# Works on a clean checkout; needs Node.js with npm and cargo; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in node npm cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required" >&2; exit 1; }
done

# npm ci when node_modules is missing or older than the lock file (npm records what it installed there).
installed=tests/mcp/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ tests/mcp/package-lock.json -nt "$installed" ] || [ tests/mcp/package.json -nt "$installed" ]; then
    echo "== npm ci (tests/mcp)"
    (cd tests/mcp && npm ci --no-audit --no-fund)
fi

echo "== cargo build --example mcp_server"
cargo build --example mcp_server
bin="${CARGO_TARGET_DIR:-target}/debug/examples/mcp_server"
[ -x "$bin" ] || { echo "the example binary is not at $bin" >&2; exit 1; }

work="$(mktemp -d)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid"
        # Graceful shutdown takes at most the server's shutdown grace; then it is ended for sure.
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_server EXIT

# Port 0: the kernel picks a free port, and the server logs the one it got.
RUST_LOG=info "$bin" --addr 127.0.0.1:0 --conformance >"$work/server.log" 2>&1 &
server_pid=$!
url=""
for _ in $(seq 100); do
    url="$(grep -o 'http://127\.0\.0\.1:[0-9]*/mcp' "$work/server.log" | head -n1 || true)"
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "the server exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { cat "$work/server.log" >&2; echo "the server did not start" >&2; exit 1; }
echo "== server on $url (pid $server_pid)"

status=0
echo "== conformance suite (all server scenarios)"
# The runner exits non-zero on an unexpected failure and on a listed scenario that passes; check-results.mjs
# also refuses warnings in the scenarios that apply.
(cd tests/mcp && timeout --kill-after=10 300 npx --no-install conformance server --url "$url" --suite all \
    --expected-failures expected-failures.yaml -o "$work/conformance" >"$work/conformance.log" 2>&1) || {
    tail -n 60 "$work/conformance.log"; status=1; }
sed -n '/=== SUMMARY ===/,$p' "$work/conformance.log"
node tests/mcp/check-results.mjs "$work/conformance" tests/mcp/expected-failures.yaml || status=1

echo "== SDK client (node --test tests/mcp/sdk_client.test.mjs)"
MCP_URL="$url" timeout --kill-after=10 300 node --test --test-timeout=60000 tests/mcp/sdk_client.test.mjs || status=1

if [ "$status" -ne 0 ]; then
    echo "== server log (last lines)"
    tail -n 40 "$work/server.log"
fi
exit "$status"
