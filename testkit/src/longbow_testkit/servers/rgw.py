"""Ceph's RADOS Gateway on a throwaway single-node cluster (one monitor, one in-RAM OSD).

A production server with its own deviations (an empty ETag from CompleteMultipartUpload,
NoSuchKey for an aborted upload). Needs the Ceph packages and root. The cluster is built and
supervised by :mod:`longbow_testkit.servers.rgwcluster`, run as its own process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LOCALHOST, Endpoint
from .process import LocalServer, launch_with_retries, write_private

__all__ = ["CEPH_INSTALL_HINT", "missing_ceph_programs", "start_rgw"]

_CEPH_PROGRAMS = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")
CEPH_INSTALL_HINT = (
    "as root on Debian/Ubuntu: apt-get install --no-install-recommends "
    "ceph-mon ceph-osd radosgw ceph-common"
)
# The cluster's supervisor, run as a module in its own process.
_SUPERVISOR = "longbow_testkit.servers.rgwcluster"
# P: the S3 endpoint (beast frontend), P+1: the monitor (msgr v2 only).
_RGW_PORT_COUNT = 2
# A memstore OSD keeps objects in RAM; this caps what it may use, it is not allocated upfront.
_RGW_MEMSTORE_BYTES = 4 * 1024**3


def missing_ceph_programs() -> list[str]:
    """Return the Ceph programs :func:`start_rgw` needs that are not on PATH."""
    return [name for name in _CEPH_PROGRAMS if shutil.which(name) is None]


def start_rgw(
    data_dir: Path,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    port: int | None = None,
    timeout: float = 180,
    memstore_bytes: int = _RGW_MEMSTORE_BYTES,
) -> LocalServer:
    """Start a throwaway single-node Ceph cluster with a RADOS Gateway S3 endpoint.

    One monitor, one OSD keeping its objects in RAM (memstore) and one radosgw, without
    authentication between them, all bound to 127.0.0.1 and supervised by one process, so the
    server handle stops them together. Every launch (a restart too) builds a fresh, empty
    cluster under ``data_dir/"cluster"``. Uses ports P (S3) and P+1 (monitor).

    Needs the Debian packages ``ceph-mon ceph-osd radosgw ceph-common`` and, in practice, root.

    Args:
        data_dir: Directory for ``ceph.conf``, the cluster's state and logs, and ``rgw.log``.
        access_key: Access key id of the S3 user that is created.
        secret_key: Its secret key.
        port: Base port P; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds (~15 s on an idle
            machine).
        memstore_bytes: Most RAM the OSD may use for objects.

    Returns:
        The running server.

    Raises:
        RuntimeError: A Ceph program is not installed.
        ServerStartError: The cluster exited or was not ready in time.
    """
    missing = missing_ceph_programs()
    if missing:
        raise RuntimeError(
            f"Ceph is not installed ({', '.join(missing)} not on PATH); install it "
            f"{CEPH_INSTALL_HINT}"
        )
    data_dir = Path(data_dir).absolute()
    settings_path = data_dir / "rgw-cluster.json"

    def build(base: int) -> LocalServer:
        settings = {
            "dir": str(data_dir),
            "rgw_port": base,
            "mon_port": base + 1,
            "memstore_bytes": memstore_bytes,
            "access_key": access_key,
            "secret_key": secret_key,
        }
        write_private(settings_path, json.dumps(settings))
        return LocalServer(
            endpoint=Endpoint("rgw", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            argv=[sys.executable, "-m", _SUPERVISOR, "rgw-cluster", str(settings_path)],
            log_path=data_dir / "rgw.log",
            ports=[base, base + 1],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    return launch_with_retries(
        build, port=port, count=_RGW_PORT_COUNT, grpc_offset=None, timeout=timeout
    )
