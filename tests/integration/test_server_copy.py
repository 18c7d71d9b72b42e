"""Server-side copy: two buckets on one SeaweedFS endpoint, reached with one set of keys, are
copied with CopyObject / UploadPartCopy; every request is recorded on the way."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from longbow_testkit.sealproxy import SealProxy, seal_proxy
from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, cli_env, new_bucket
from ..killing import kill_after_parts
from .test_integrity import job_verdicts, put_multipart, run_sync, sync_argv

MiB = 1024 * 1024


@pytest.fixture()
def recorder(seaweed_src: LocalServer) -> Iterator[SealProxy]:
    with seal_proxy(seaweed_src.endpoint, seal=False) as proxy:
        yield proxy


def through(proxy: SealProxy, bucket: Bucket) -> Bucket:
    return Bucket(proxy.endpoint(), bucket.name, bucket.client)


def object_reads(proxy: SealProxy, bucket: str) -> list[str]:
    """GETs of object data (not listings) and PUTs that carried a body."""
    out = []
    for method, path, headers in proxy.requests:
        name = path.split("?", 1)[0].strip("/")
        if method == "GET" and "/" in name and name.startswith(bucket):
            out.append(f"GET {path}")
        if method == "PUT" and int(headers.get("content-length") or 0) > 0:
            out.append(f"PUT {path}")
    return out


def seed(src: Bucket) -> dict[str, str]:
    src.client.put_object(
        Bucket=src.name,
        Key="doc.html",
        Body=b"<p>hello</p>",
        ContentType="text/html",
        Metadata={"owner": "ops"},
        Tagging="team=blue",
    )
    src.put("big-one-put", os.urandom(7 * MiB))
    put_multipart(src, "layered", [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(MiB)])
    src.put("empty", b"")
    return src.digests()


@pytest.mark.parametrize("kind", ["seaweedfs", "moto"])
def test_one_account_copies_on_the_server_and_proves_each_copy(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: LocalServer = request.getfixturevalue("seaweed_src" if kind == "seaweedfs" else "moto")
    src, dst = new_bucket(server, "ss"), new_bucket(server, "sd")
    expected = seed(src)

    with seal_proxy(server.endpoint, seal=False) as recorder:
        code, summary = run_sync(
            through(recorder, src), through(recorder, dst), tmp_path / "j.db", "--part-size", "5MiB"
        )

    assert code == 0, summary["failed"]
    assert dst.digests() == expected
    assert object_reads(recorder, src.name) == []  # no byte came through the client
    assert any("x-amz-copy-source" in h for _, _, h in recorder.requests)
    verdicts = job_verdicts(tmp_path / "j.db")
    assert verdicts["doc.html"] == ("done", "source-md5; copied on the server")
    assert verdicts["big-one-put"] == ("done", "source-md5; copied on the server")
    if kind == "moto":
        assert verdicts["layered"] == ("done", "source-etag; copied on the server")
    else:  # its UploadPartCopy answers with ETags that are not the parts' MD5s
        assert verdicts["layered"] == (
            "done",
            "unverified: the part ETags the server gave are not MD5s; copied on the server",
        )
    head = dst.client.head_object(Bucket=dst.name, Key="doc.html")
    assert head["ContentType"] == "text/html" and head["Metadata"] == {"owner": "ops"}
    tags = dst.client.get_object_tagging(Bucket=dst.name, Key="doc.html")["TagSet"]
    assert tags == [{"Key": "team", "Value": "blue"}]


def test_no_server_side_copy_streams_the_bytes(
    seaweed_src: LocalServer, recorder: SealProxy, tmp_path: Path
) -> None:
    src, dst = new_bucket(seaweed_src, "ss"), new_bucket(seaweed_src, "sd")
    src.put("a", os.urandom(1000))

    code, summary = run_sync(
        through(recorder, src), through(recorder, dst), tmp_path / "j.db", "--no-server-side-copy"
    )

    assert code == 0, summary
    assert dst.digests() == src.digests()
    assert len(object_reads(recorder, src.name)) == 2  # one GET, one PUT
    assert not any("x-amz-copy-source" in h for _, _, h in recorder.requests)


def test_a_source_replaced_before_the_server_copies_it_is_copied_in_its_new_version(
    seaweed_src: LocalServer, recorder: SealProxy, tmp_path: Path
) -> None:
    src, dst = new_bucket(seaweed_src, "ss"), new_bucket(seaweed_src, "sd")
    src.put("moving", b"first version")
    replaced = []

    def replace_once(method: str, path: str, headers: dict[str, str]) -> int | None:
        if "x-amz-copy-source" in headers and not replaced:
            replaced.append(path)
            src.put("moving", b"second version, longer")
        return None

    recorder.before = replace_once
    code, summary = run_sync(through(recorder, src), through(recorder, dst), tmp_path / "j.db")

    assert code == 0, summary
    assert replaced
    assert dst.get("moving") == b"second version, longer"


def test_a_killed_part_copy_resumes_from_the_parts_copied(
    seaweed_src: LocalServer, recorder: SealProxy, tmp_path: Path
) -> None:
    src, dst = new_bucket(seaweed_src, "ss"), new_bucket(seaweed_src, "sd")
    put_multipart(src, "layered", [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(MiB)])
    released = threading.Event()

    def hold_part_three(method: str, path: str, headers: dict[str, str]) -> int | None:
        if "x-amz-copy-source" in headers and "partNumber=3" in path:
            released.wait(30)  # the process is killed meanwhile
            return 503
        return None

    recorder.before = hold_part_three
    db = tmp_path / "j.db"
    sides = (through(recorder, src), through(recorder, dst))
    argv = sync_argv(*sides, db, "--part-size", "5MiB", "--part-threads", "1")
    env = {**os.environ, **cli_env(recorder.endpoint(), recorder.endpoint())}
    try:
        assert kill_after_parts(argv, env, db, 2) == 2
    finally:
        released.set()

    recorder.before = None
    recorder.requests.clear()
    code, summary = run_sync(*sides, db, "--part-size", "5MiB")

    assert code == 0, summary
    assert summary["bytes_reused"] == 10 * MiB
    part_copies = [p for m, p, h in recorder.requests if "x-amz-copy-source" in h]
    assert len(part_copies) == 1 and "partNumber=3" in part_copies[0]
    assert hashlib.md5(dst.get("layered")).hexdigest() == src.digests()["layered"]
