#!/usr/bin/env bash
# What tests/web_client needs besides the Python venv: Debian's Chromium, Node with npm, and
# puppeteer-core (pinned in tests/web_client/package.json + package-lock.json; no browser
# download: it drives the Debian binary). Installs only what is missing; run by scripts/test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

apt_install() {
  local runner=()
  [ "$(id -u)" = 0 ] || runner=(sudo)
  "${runner[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -qq "$@"
}

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "web_client_deps: installing chromium (Debian)" >&2
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "web_client_deps: installing nodejs and npm (Debian)" >&2
  apt_install nodejs npm
fi

client="$root/tests/web_client"
stamp="$client/node_modules/.installed"
if [ ! -f "$stamp" ] || [ "$client/package-lock.json" -nt "$stamp" ]; then
  echo "web_client_deps: npm ci in tests/web_client" >&2
  (cd "$client" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi
