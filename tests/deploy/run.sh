#!/usr/bin/env bash
# The configurations in deploy/ tested in real proxies: Debian's nginx and Caddy in front of the example server,
# with headless Chromium and curl as clients. Installs what is missing, then runs tests/deploy/*.test.mjs with
# the browser tests' set-up (Chromium, npm ci, the example built). Works on a clean checkout; exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "${missing[*]} missing and this user cannot install them" >&2; exit 1; }
        sudo=sudo
    fi
    # On a host run by systemd the packages also start their own default service (on port 80); the tests use
    # their own instances on free loopback ports and do not depend on it.
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

exec bash tests/browser/run.sh tests/deploy/*.test.mjs
