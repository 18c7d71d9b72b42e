#!/usr/bin/env bash
# Install the Ceph programs the RADOS Gateway test tier needs (Debian/Ubuntu, as root).
# Does nothing when they are already installed. Used by .ci/run; developers can run it once
# (sudo scripts/ceph-rgw-install.sh) and then LONGBOW_TEST_RGW=1 make test.
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd radosgw ceph-common)
PROGRAMS=(monmaptool ceph-mon ceph-osd ceph radosgw radosgw-admin)
ATTEMPTS=3

missing() {
  local name
  for name in "${PROGRAMS[@]}"; do
    command -v "$name" >/dev/null 2>&1 || echo "$name"
  done
}

if [[ -z "$(missing)" ]]; then
  echo "ceph-rgw-install: Ceph is already installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "ceph-rgw-install: installing Ceph needs root; run: sudo $0" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ceph-rgw-install: apt-get not found; install ${PACKAGES[*]} with this system's" \
    "package manager" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for attempt in $(seq 1 "$ATTEMPTS"); do
  # A mirror that fails mid-download is the usual cause of a failed install: retry it whole.
  if apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; then
    break
  fi
  if [[ $attempt -eq $ATTEMPTS ]]; then
    echo "ceph-rgw-install: apt-get failed $ATTEMPTS times" >&2
    exit 1
  fi
  echo "ceph-rgw-install: apt-get failed (attempt $attempt of $ATTEMPTS); retrying" >&2
  sleep $((attempt * 10))
done

still_missing=$(missing)
if [[ -n "$still_missing" ]]; then
  echo "ceph-rgw-install: installed ${PACKAGES[*]} but still missing: $still_missing" >&2
  exit 1
fi
echo "ceph-rgw-install: Ceph $(ceph --version | awk '{print $3}') installed"
