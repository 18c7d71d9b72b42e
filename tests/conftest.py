"""Shared fixtures: real S3-compatible servers on 127.0.0.1, started once per test session."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.fakes3 import FakeS3
from longbow_testkit.servers import (
    CEPH_INSTALL_HINT,
    Endpoint,
    LocalServer,
    missing_ceph_programs,
    start_moto,
    start_rclone,
    start_rgw,
    start_seaweedfs,
)
from longbow_testkit.tls import ServerCertificate, certificate_authority
from s3longbow.config import SideSettings

# Keep the developer's own AWS set-up (profiles, config, keys, trusted authorities, proxies)
# out of every test: each test that needs one sets it itself.
for _name in (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
):
    os.environ.pop(_name, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

_bucket_ids = itertools.count(1)

# Tests marked `rgw` need a local Ceph (root and apt). Without it they are deselected, unless
# this variable is set (as CI does): then a missing Ceph fails them instead.
REQUIRE_RGW = "LONGBOW_TEST_RGW"


def _rgw_unavailable() -> str | None:
    """Why the rgw tests cannot run here, or None when they can (or must)."""
    if os.environ.get(REQUIRE_RGW) == "1":
        return None
    missing = missing_ceph_programs()
    if missing:
        return f"Ceph is not installed ({', '.join(missing)} missing; {CEPH_INSTALL_HINT})"
    return None


# Tests marked `browser` open pages in Debian's Chromium (scripts/chromium-install.sh). Without
# it they are deselected, unless this variable is set (as CI does): then they fail instead.
REQUIRE_BROWSER = "LONGBOW_TEST_BROWSER"
CHROMIUM = Path("/usr/bin/chromium")


def _browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can (or must)."""
    if os.environ.get(REQUIRE_BROWSER) == "1" or CHROMIUM.exists():
        return None
    return f"Chromium is not installed at {CHROMIUM} (sudo scripts/chromium-install.sh)"


def _unavailable() -> dict[str, tuple[str, str]]:
    """Markers whose tests cannot run here: marker -> (why, the variable requiring them)."""
    out = {}
    for marker, reason, variable in (
        ("rgw", _rgw_unavailable(), REQUIRE_RGW),
        ("browser", _browser_unavailable(), REQUIRE_BROWSER),
    ):
        if reason:
            out[marker] = (reason, variable)
    return out


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"{marker} tests deselected: {reason}; set {variable}=1 to require them"
        for marker, (reason, variable) in _unavailable().items()
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unavailable = _unavailable()
    if not unavailable:
        return
    deselected = [item for item in items if any(item.get_closest_marker(m) for m in unavailable)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        dropped = {id(item) for item in deselected}
        items[:] = [item for item in items if id(item) not in dropped]


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def tls_authority(servers_dir: Path) -> ServerCertificate:
    """A throw-away certificate authority and its certificate for 127.0.0.1."""
    return certificate_authority(servers_dir / "tls")


@pytest.fixture(scope="session")
def seaweed_src(servers_dir: Path, tls_authority: ServerCertificate) -> Iterator[LocalServer]:
    """The main source server: http at `.endpoint`, https beside it at `.https_endpoint`."""
    with start_seaweedfs(servers_dir / "seaweed-src", tls=tls_authority) as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_dst(servers_dir: Path, tls_authority: ServerCertificate) -> Iterator[LocalServer]:
    """The main destination server, http and https as seaweed_src."""
    with start_seaweedfs(servers_dir / "seaweed-dst", tls=tls_authority) as server:
        yield server


@pytest.fixture(scope="session")
def moto(servers_dir: Path) -> Iterator[LocalServer]:
    with start_moto() as server:
        yield server


@pytest.fixture(scope="session")
def rclone(servers_dir: Path) -> Iterator[LocalServer]:
    with start_rclone(servers_dir / "rclone") as server:
        yield server


@pytest.fixture(scope="session")
def rgw(servers_dir: Path) -> Iterator[LocalServer]:
    with start_rgw(servers_dir / "rgw") as server:
        yield server


@dataclass
class Bucket:
    """A fresh bucket on a real server, with helpers to seed and read it."""

    endpoint: Endpoint
    name: str
    client: Any

    @property
    def url(self) -> str:
        return f"s3://{self.name}"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        ):
            out.extend(item["Key"] for item in page.get("Contents", ()))
        return out

    def digests(self, prefix: str = "") -> dict[str, str]:
        """key (without prefix) -> md5 of its bytes, read back from the server."""
        return {k[len(prefix) :]: hashlib.md5(self.get(k)).hexdigest() for k in self.keys(prefix)}


def new_bucket(server: LocalServer, stem: str = "b") -> Bucket:
    client = server.endpoint.client()
    name = f"{stem}-{os.getpid()}-{next(_bucket_ids)}"
    client.create_bucket(Bucket=name)
    return Bucket(server.endpoint, name, client)


@pytest.fixture()
def src_bucket(seaweed_src: LocalServer) -> Bucket:
    return new_bucket(seaweed_src, "src")


@pytest.fixture()
def dst_bucket(seaweed_dst: LocalServer) -> Bucket:
    return new_bucket(seaweed_dst, "dst")


def cli_env(src: Endpoint | None, dst: Endpoint | None) -> dict[str, str]:
    """Environment giving the CLI the test servers' keys (never written to any file)."""
    env: dict[str, str] = {}
    for prefix, endpoint in (("SRC", src), ("DST", dst)):
        if endpoint is not None:
            env[f"LONGBOW_{prefix}_ACCESS_KEY_ID"] = endpoint.access_key
            env[f"LONGBOW_{prefix}_SECRET_ACCESS_KEY"] = endpoint.secret_key
    return env


def endpoint_args(src: Endpoint | None, dst: Endpoint | None) -> list[str]:
    args: list[str] = []
    if src is not None:
        args += ["--src-endpoint-url", src.url, "--src-region", src.region, "--src-path-style"]
    if dst is not None:
        args += ["--dst-endpoint-url", dst.url, "--dst-region", dst.region, "--dst-path-style"]
    return args


def sync_cli(
    src_url: str, dst_url: str, db: Path, src: Endpoint, dst: Endpoint, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`longbow sync SRC_URL DST_URL --json` in a child process, reaching each side at its
    endpoint (a proxy's, with the server's keys) and keeping its jobs in `db`."""
    args = [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        src_url,
        dst_url,
        "--db",
        str(db),
        "--json",
        *extra,
        *endpoint_args(src, dst),
    ]
    env = {**os.environ, **cli_env(src, dst)}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def fake_side(server: FakeS3) -> SideSettings:
    """One side's settings for a FakeS3 (it takes any keys)."""
    return SideSettings(
        endpoint_url=server.url,
        region="us-east-1",
        path_style=True,
        access_key_id="key",
        secret_access_key="secret",
    )
