#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (run as root), then the npm
# packages. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have redis-server || need+=(redis-server)
have iptables || need+=(iptables)
have ip || need+=(iproute2)
have curl || need+=(curl)
have openssl || need+=(openssl)
have wrk || need+=(wrk)
have haproxy || need+=(haproxy)
have stunnel4 || have stunnel || need+=(stunnel4)
have nginx || need+=(nginx-light)
have promtool || need+=(prometheus)
# The dashboard test drives Debian's Chromium headless (through playwright-core, no bundled browser).
have chromium || need+=(chromium fonts-liberation)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "install.sh: missing ${need[*]}; run as root to install them" >&2; exit 1; fi
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts some of these as services on install; the tests start their own.
npm ci --no-audit --no-fund
