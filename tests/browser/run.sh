#!/usr/bin/env bash
# End-to-end browser tests of the example server's page: headless Chromium (Debian's) driven by playwright-core
# from Node's built-in test runner. Installs what is missing, builds the example, runs tests/browser/*.test.mjs.
# Works on a clean checkout; exits non-zero on any failure. Arguments, if any, are the test files to run instead
# (tests/deploy/run.sh runs its own with this set-up).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$#" -gt 0 ] || set -- tests/browser/*.test.mjs

.ci/install-missing /usr/bin/chromium=chromium
for tool in node npm cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required" >&2; exit 1; }
done

# npm ci when node_modules is missing or older than the lock file (npm records what it installed there).
installed=tests/browser/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ ! -f tests/browser/node_modules/playwright-core/package.json ] \
    || [ tests/browser/package-lock.json -nt "$installed" ] || [ tests/browser/package.json -nt "$installed" ]; then
    echo "== npm ci (tests/browser)"
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

echo "== cargo build --example sse_simple_server"
cargo build --example sse_simple_server
bin="${CARGO_TARGET_DIR:-target}/debug/examples/sse_simple_server"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
[ -x "$bin" ] || { echo "the example binary is not at $bin" >&2; exit 1; }

echo "== browser tests (node --test $*)"
# One file at a time: each starts its own server and browser, and the timing checks stay honest on 2 cores.
# Every test has its own time limit; `timeout` bounds the whole run (its signal reaches the whole group).
CONDUIT_EXAMPLE_BIN="$bin" timeout --kill-after=10 300 \
    node --test --test-concurrency=1 --test-timeout=60000 "$@"
