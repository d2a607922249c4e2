#!/usr/bin/env bash
# Installs what tests/test_teams_cards_browser.py and ./dev cards need: Debian's Chromium (never a downloaded browser
# build), an emoji font, and from npm (tests/browser/package-lock.json) Microsoft's Adaptive Cards renderer and
# adaptivecards-designer for its Teams host configs.
# Failures are warnings: the browser tests then skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    $SUDO apt-get update -qq && apt_updated=1 || return 1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

if [ ! -x /usr/bin/chromium ]; then
  echo "Installing Debian's chromium" >&2
  apt_install chromium >/dev/null || echo "WARNING: could not install chromium with apt-get; the browser tests will be skipped" >&2
fi

# An emoji font, so ./dev cards shows the cards' state emoji as Teams does (optional: without it they render as boxes).
if ! fc-list 2>/dev/null | grep -qi emoji; then
  apt_install fonts-noto-color-emoji >/dev/null || echo "WARNING: could not install fonts-noto-color-emoji; ./dev cards previews show emoji as boxes" >&2
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "Installing Debian's nodejs and npm" >&2
  apt_install nodejs npm >/dev/null || echo "WARNING: could not install npm with apt-get" >&2
fi

if command -v npm >/dev/null 2>&1; then
  cd tests/browser
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
  status=$?
  [ $status -eq 0 ] || echo "WARNING: npm could not install tests/browser/node_modules; the browser tests will be skipped" >&2
  exit $status
else
  echo "WARNING: npm is missing; the browser tests will be skipped" >&2
  exit 1
fi
