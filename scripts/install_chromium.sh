#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium where it is missing and possible (used by the browser tests
# of `study report` / `study ui`). Prints the path of the browser on success; exits 1 with a reason if not.
set -u
find_browser() {
  for b in chromium chromium-browser google-chrome chrome; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}
if find_browser; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium not found and apt-get is unavailable: install Chromium (or Chrome) and put it on PATH" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "chromium not found; install it as root: apt-get install chromium" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# A lock held by another apt run (another engineer, another test) is waited for, not fought.
opts="-y -q -o DPkg::Lock::Timeout=600"
$sudo apt-get install $opts chromium >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null 2>&1
  $sudo apt-get install $opts chromium >/dev/null || { echo "installing chromium with apt-get failed" >&2; exit 1; }
}
find_browser || { echo "chromium installed but not on PATH" >&2; exit 1; }
