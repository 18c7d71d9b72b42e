#!/usr/bin/env bash
# Install Debian's Chromium, the headless browser the report tests open the HTML report in
# (Debian/Ubuntu, as root). Does nothing when it is already installed. Used by .ci/run;
# developers can run it once (sudo scripts/chromium-install.sh) and then
# LONGBOW_TEST_BROWSER=1 make test. Playwright drives this browser: it downloads none.
set -euo pipefail

BROWSER=/usr/bin/chromium
ATTEMPTS=3

if [[ -x $BROWSER ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "chromium-install: installing Chromium needs root; run: sudo $0" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium-install: apt-get not found; install Chromium at $BROWSER with this" \
    "system's package manager" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for attempt in $(seq 1 "$ATTEMPTS"); do
  # A mirror that fails mid-download is the usual cause of a failed install: retry it whole.
  if apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
    >/dev/null
  then
    break
  fi
  if [[ $attempt -eq $ATTEMPTS ]]; then
    echo "chromium-install: apt-get failed $ATTEMPTS times" >&2
    exit 1
  fi
  echo "chromium-install: apt-get failed (attempt $attempt of $ATTEMPTS); retrying" >&2
  sleep $((attempt * 10))
done

if [[ ! -x $BROWSER ]]; then
  echo "chromium-install: installed chromium but $BROWSER is still missing" >&2
  exit 1
fi
echo "chromium-install: $("$BROWSER" --version 2>/dev/null | head -n 1) installed"
