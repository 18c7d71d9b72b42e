"""moto: ``moto_server``, broad S3 semantics, plus SQS, DynamoDB and SSM on the same port
(moto[server]). It does not validate Content-MD5."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LOCALHOST, Endpoint
from .process import LocalServer, find_binary, launch_with_retries

__all__ = ["reset_moto", "start_moto"]


def reset_moto(endpoint: Endpoint, timeout: float = 10) -> None:
    """Wipe all state of a moto server.

    Args:
        endpoint: The moto server's endpoint.
        timeout: Seconds to wait for the answer.

    Raises:
        urllib.error.URLError: The server did not accept the reset.
    """
    # An explicit empty ProxyHandler: loopback requests must not go through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{endpoint.url}/moto-api/reset", data=b"", method="POST")
    with opener.open(request, timeout=timeout) as response:
        response.read()


def start_moto(
    *,
    port: int | None = None,
    timeout: float = 30,
    data_dir: Path | None = None,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
) -> LocalServer:
    """Start ``moto_server`` (S3, SQS, DynamoDB, SSM, ... on one port; state in memory).

    Any credentials are accepted; ``access_key``/``secret_key`` only fill in the endpoint.

    Args:
        port: TCP port; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds.
        data_dir: Where to write ``moto.log``; a temporary directory, removed on stop, when
            ``None``.
        access_key: Access key id reported by the endpoint.
        secret_key: Secret key reported by the endpoint.

    Returns:
        The running server.

    Raises:
        RuntimeError: ``moto_server`` is not installed.
        ServerStartError: The server exited or was not ready in time.
    """
    moto_server = find_binary("moto_server")
    on_stop: list[Callable[[], None]] = []
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="s3longbow-moto-"))
        on_stop.append(functools.partial(shutil.rmtree, data_dir, ignore_errors=True))
    data_dir = Path(data_dir).absolute()
    # Unbuffered so the log is complete when a failed start is reported.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def build(base: int) -> LocalServer:
        return LocalServer(
            endpoint=Endpoint("moto", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            argv=[moto_server, "-H", LOCALHOST, "-p", str(base)],
            log_path=data_dir / "moto.log",
            ports=[base],
            env=env,
            on_stop=on_stop,
        )

    try:
        return launch_with_retries(build, port=port, count=1, grpc_offset=None, timeout=timeout)
    except BaseException:
        for callback in on_stop:
            callback()
        raise
