#!/usr/bin/env bash
# Runs the real-client tests, including httpx + httpx-sse, which needs a Python virtualenv: this script makes
# one (under target/, so it is never committed) with the pinned requirements, then runs the tests with it.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/clients-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import httpx, httpx_sse' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
CONDUIT_TEST_PYTHON="$PWD/$venv/bin/python" cargo test --test real_clients -- --include-ignored
