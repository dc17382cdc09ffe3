#!/usr/bin/env bash
# Installs what the portal's browser tests run: Debian's Chromium, and Playwright and axe-core from
# npm (pinned in crates/cli/tests/browser/package-lock.json) into that directory's node_modules.
# Nothing is installed that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium is missing; install it (Debian: apt-get install chromium) or run this as root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
browser=crates/cli/tests/browser
# node_modules/.installed-lock is the lock file it was installed from.
if ! cmp -s "$browser/package-lock.json" "$browser/node_modules/.installed-lock" 2>/dev/null; then
    npm ci --prefix "$browser" --no-audit --no-fund --silent
    cp "$browser/package-lock.json" "$browser/node_modules/.installed-lock"
fi
