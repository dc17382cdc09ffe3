#!/usr/bin/env bash
# Installs what contracts are built with: Debian's clang (its wasm32 target) and lld (wasm-ld).
# The tests that build the example contracts run this once; `medledger contract build` needs it.
# Nothing is installed if both are already there.
set -euo pipefail
if command -v clang >/dev/null 2>&1 && command -v wasm-ld >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "clang and lld are missing; install them (Debian: apt-get install clang lld) or run this as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends clang lld >/dev/null
command -v clang >/dev/null && command -v wasm-ld >/dev/null
