#!/usr/bin/env bash
# The configurations in deploy/ tested in real proxies: Debian's nginx and Caddy in front of the example server,
# with headless Chromium and curl as clients. Installs what is missing, then runs tests/deploy/*.test.mjs with
# the browser tests' set-up (Chromium, npm ci, the example built). Works on a clean checkout; exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

.ci/install-missing '/usr/sbin/nginx|nginx=nginx-light' caddy=caddy openssl=openssl curl=curl

exec bash tests/browser/run.sh tests/deploy/*.test.mjs
