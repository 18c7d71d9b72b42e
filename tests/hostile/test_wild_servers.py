"""Servers that bend the protocol, as servers in the wider world do: a whole `longbow` run
against a scripted server (tests/fakes3.py) or a real one behind a fault, each case checking
that nothing is lost silently, no byte is mixed up, and one object never stops the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import Bucket, cli_env, endpoint_args
from ..fakes3 import FakeS3, Request, interim, list_reply, reply
from .conftest import db_args, longbow

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FATAL = 3
KEYS = ["k1", "k2", "k3", "k4", "k5"]


@pytest.fixture()
def fake() -> Iterator[FakeS3]:
    with FakeS3(page_size=2) as server:
        for key in KEYS:
            server.put("bkt", key, f"data of {key}".encode())
        yield server


def fake_args(server: FakeS3, side: str = "src", region: str | None = "us-east-1") -> list[str]:
    args = [f"--{side}-endpoint-url", server.url, f"--{side}-path-style"]
    if region:
        args += [f"--{side}-region", region]
    return args


FAKE_KEYS = {
    "LONGBOW_SRC_ACCESS_KEY_ID": "AKIDFAKE",
    "LONGBOW_SRC_SECRET_ACCESS_KEY": "fake-secret",
}


def sync_from(
    server: FakeS3, dst: Bucket, tmp_path: Path, *extra: str, region: str | None = "us-east-1"
) -> Any:
    return longbow(
        "sync",
        "s3://bkt/",
        f"{dst.url}/",
        *db_args(tmp_path),
        *fake_args(server, region=region),
        *endpoint_args(None, dst.endpoint),
        "--json",
        *extra,
        env={**cli_env(None, dst.endpoint), **FAKE_KEYS},
    )


def copied(dst: Bucket) -> dict[str, bytes]:
    return {key: dst.get(key) for key in dst.keys()}


# --------------------------------------------------------------------------------------------
# Listings truncated without a way on
# --------------------------------------------------------------------------------------------


def _no_token(server: FakeS3) -> None:
    """Truncated pages that name no continuation token (start-after is honoured)."""

    def answer(request: Request) -> bytes | None:
        if request.method != "GET" or request.key or "list-type" not in request.query:
            return None
        keys, truncated = server.list_page(request)
        return list_reply([(k, server.objects["bkt", k]) for k in keys], truncated=truncated)

    server.on(answer)


def test_a_truncated_page_without_a_token_goes_on_after_its_last_key(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    _no_token(fake)
    done = sync_from(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert copied(dst_bucket) == {k: f"data of {k}".encode() for k in KEYS}
    asked = [r.query.get("start-after") for r in fake.of("GET") if "list-type" in r.query]
    assert "k2" in asked and "k4" in asked


def test_a_v1_only_server_is_paged_with_markers(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    def answer(request: Request) -> bytes | None:
        if request.method != "GET" or request.key or "versions" in request.query:
            return None
        # The older ListObjects: list-type and start-after ignored, marker honoured.
        keys, truncated = fake.list_page(
            Request("GET", "", "/bkt", {"marker": request.query.get("marker", "")}, [], b"", 0)
        )
        return list_reply([(k, fake.objects["bkt", k]) for k in keys], truncated=truncated, v1=True)

    fake.on(answer)
    done = sync_from(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(copied(dst_bucket)) == KEYS


def test_a_server_that_ignores_where_a_page_starts_fails_the_listing_and_deletes_nothing(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    def answer(request: Request) -> bytes | None:
        if request.method != "GET" or request.key:
            return None
        first = [(k, fake.objects["bkt", k]) for k in KEYS[:2]]
        return list_reply(first, truncated=True)  # always page 1, never a token

    fake.on(answer)
    for key in [*KEYS, "orphan"]:  # everything is at the destination already
        dst_bucket.put(key, b"old")
    done = sync_from(fake, dst_bucket, tmp_path, "--delete", "--force")
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "asked for after 'k2' brought no key after it" in done.stderr
    assert "nothing was copied from it or deleted" in done.stderr
    assert sorted(dst_bucket.keys()) == sorted([*KEYS, "orphan"])
    verified = longbow(
        "verify",
        "s3://bkt/",
        f"{dst_bucket.url}/",
        *fake_args(fake),
        *endpoint_args(None, dst_bucket.endpoint),
        env={**cli_env(None, dst_bucket.endpoint), **FAKE_KEYS},
    )
    assert verified.returncode == EXIT_FATAL, verified.stdout
    assert "brought no key after" in verified.stderr


def test_a_truncated_page_from_a_server_listing_folder_by_folder_fails_the_listing(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    _no_token(fake)
    fake.on(
        lambda r: (
            reply(200, headers={"Server": "SeaweedFS 3.80"})
            if r.method == "HEAD" and not r.key
            else None
        )
    )
    done = sync_from(fake, dst_bucket, tmp_path, "--delete")
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "going on after the last key could skip keys" in done.stderr
    assert dst_bucket.keys() == []


def test_a_truncated_version_listing_without_a_next_key_goes_on(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    _no_token(fake)
    done = sync_from(fake, dst_bucket, tmp_path, "--compare", "version")
    assert done.returncode == 0, done.stderr
    assert sorted(copied(dst_bucket)) == KEYS
    markers = [r.query.get("key-marker") for r in fake.of("GET", query="versions")]
    assert "k2" in markers and "k4" in markers


# --------------------------------------------------------------------------------------------
# Interim replies
# --------------------------------------------------------------------------------------------


def test_early_hints_before_every_reply_never_mix_up_bodies(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    fake.on(lambda r: interim(103, {"Link": "</x>; rel=preload"}) + fake.answer(r))
    done = sync_from(fake, dst_bucket, tmp_path, "--workers", "1", "--listing-threads", "1")
    assert done.returncode == 0, done.stderr
    assert copied(dst_bucket) == {k: f"data of {k}".encode() for k in KEYS}
