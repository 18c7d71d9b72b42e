"""Objects are copied as the objects they are: headers, user metadata and tags survive."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from longbow_testkit.sealproxy import seal_proxy
from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli
from s3longbow.config import MiB

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket

PROPERTIES = {
    "ContentType": "application/x-longbow; charset=utf-8",
    "ContentEncoding": "identity",
    "ContentDisposition": 'attachment; filename="report 2026.pdf"',
    "ContentLanguage": "fr-CA",
    "CacheControl": "public, max-age=86400",
    "Expires": "Wed, 21 Oct 2026 07:28:00 GMT",
    "WebsiteRedirectLocation": "/elsewhere/page.html",
}
METADATA = {"project": "Longbow", "owner-id": "42", "note": "spaces and = signs"}
TAGS = [("team", "storage"), ("cost center", "a/b+c")]


def seed(bucket, key: str, body: bytes, *, multipart: bool) -> None:  # type: ignore[no-untyped-def]
    c = bucket.client
    args = {**PROPERTIES, "Metadata": METADATA, "Tagging": "team=storage&cost%20center=a%2Fb%2Bc"}
    if not multipart:
        c.put_object(Bucket=bucket.name, Key=key, Body=body, **args)
        return
    up = c.create_multipart_upload(Bucket=bucket.name, Key=key, **args)["UploadId"]
    half = len(body) // 2
    etags = [
        c.upload_part(Bucket=bucket.name, Key=key, UploadId=up, PartNumber=i, Body=chunk)["ETag"]
        for i, chunk in enumerate((body[:half], body[half:]), 1)
    ]
    c.complete_multipart_upload(
        Bucket=bucket.name,
        Key=key,
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]},
    )


@pytest.mark.parametrize("kind", ["seaweed_src", "moto"])
def test_every_property_survives_for_single_multipart_and_empty_objects(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    server: LocalServer = request.getfixturevalue(kind)
    src, dst = new_bucket(server, "props-src"), new_bucket(server, "props-dst")
    seed(src, "single.bin", os.urandom(3000), multipart=False)
    seed(src, "multi.bin", os.urandom(12 * MiB), multipart=True)
    seed(src, "empty.bin", b"", multipart=False)
    src.put("plain.txt", b"no properties")
    result = CliRunner().invoke(
        cli,
        [
            "sync",
            f"{src.url}/",
            f"{dst.url}/",
            "--db",
            str(tmp_path / "j.db"),
            "--json",
            "--part-size",
            "5MiB",
            *endpoint_args(src.endpoint, dst.endpoint),
        ],
        env=cli_env(src.endpoint, dst.endpoint),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["copied"]["objects"] == 4
    kept = set(PROPERTIES)
    if kind == "seaweed_src":
        kept.discard("WebsiteRedirectLocation")  # SeaweedFS does not store it at all
    for key in ("single.bin", "multi.bin", "empty.bin"):
        src_head = src.client.head_object(Bucket=src.name, Key=key)
        assert {n for n in PROPERTIES if src_head.get(n)} == kept, key  # what the source has
        head = dst.client.head_object(Bucket=dst.name, Key=key)
        headers = head["ResponseMetadata"]["HTTPHeaders"]
        got = {name: head.get(name) for name in kept if name != "Expires"}
        assert got == {k: v for k, v in PROPERTIES.items() if k in kept and k != "Expires"}, key
        assert headers["expires"] == PROPERTIES["Expires"], key
        assert head["Metadata"] == METADATA, key
        tags = dst.client.get_object_tagging(Bucket=dst.name, Key=key)["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in tags) == sorted(TAGS), key
    plain = dst.client.get_object_tagging(Bucket=dst.name, Key="plain.txt")["TagSet"]
    assert plain == []


def test_no_tags_skips_tags(seaweed_src: LocalServer, tmp_path: Path) -> None:
    src, dst = new_bucket(seaweed_src, "nt-src"), new_bucket(seaweed_src, "nt-dst")
    seed(src, "obj", b"data", multipart=False)
    result = CliRunner().invoke(
        cli,
        [
            "sync",
            f"{src.url}/",
            f"{dst.url}/",
            "--db",
            str(tmp_path / "j.db"),
            "--no-tags",
            *endpoint_args(src.endpoint, dst.endpoint),
        ],
        env=cli_env(src.endpoint, dst.endpoint),
    )
    assert result.exit_code == 0, result.output
    assert dst.client.get_object_tagging(Bucket=dst.name, Key="obj")["TagSet"] == []
    assert dst.client.head_object(Bucket=dst.name, Key="obj")["Metadata"] == METADATA


def test_local_files_get_a_content_type_from_their_name(
    seaweed_src: LocalServer, tmp_path: Path
) -> None:
    dst = new_bucket(seaweed_src, "types")
    src = tmp_path / "site"
    src.mkdir()
    (src / "index.html").write_text("<p>hi</p>")
    (src / "style.css").write_text("p {}")
    (src / "data.json").write_text("{}")
    result = CliRunner().invoke(
        cli,
        [
            "sync",
            str(src),
            f"{dst.url}/",
            "--db",
            str(tmp_path / "j.db"),
            *endpoint_args(None, dst.endpoint),
        ],
        env=cli_env(None, dst.endpoint),
    )
    assert result.exit_code == 0, result.output
    types = {
        k: dst.client.head_object(Bucket=dst.name, Key=k)["ContentType"]
        for k in ("index.html", "style.css", "data.json")
    }
    assert types == {
        "index.html": "text/html",
        "style.css": "text/css",
        "data.json": "application/json",
    }


def seed_every_path(src: Bucket) -> dict[str, str]:
    """One object for each way a copy between endpoints goes, each with every property:
    the path it takes, by key."""
    seed(src, "small.bin", os.urandom(3000), multipart=False)  # one PUT through memory
    seed(src, "relayed.bin", os.urandom(2 * MiB), multipart=False)  # one PUT, relayed
    seed(src, "own-parts.bin", os.urandom(11 * MiB), multipart=False)  # our parts
    seed(src, "source-parts.bin", os.urandom(12 * MiB), multipart=True)  # its own parts
    seed(src, "empty.bin", b"", multipart=False)
    return {
        "small.bin": "single",
        "relayed.bin": "relayed-single",
        "own-parts.bin": "own-parts",
        "source-parts.bin": "source-parts",
        "empty.bin": "zero-byte",
    }


def assert_properties_kept(src: Bucket, dst: Bucket, key: str, kept: set[str]) -> None:
    head = dst.client.head_object(Bucket=dst.name, Key=key)
    headers = head["ResponseMetadata"]["HTTPHeaders"]
    got = {name: head.get(name) for name in kept if name != "Expires"}
    assert got == {k: v for k, v in PROPERTIES.items() if k in kept and k != "Expires"}, key
    assert headers["expires"] == PROPERTIES["Expires"], key
    assert head["Metadata"] == METADATA, key
    tags = dst.client.get_object_tagging(Bucket=dst.name, Key=key)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == sorted(TAGS), key
    assert dst.get(key) == src.get(key), key


@pytest.mark.parametrize("relay", [True, False], ids=["relayed", "through-memory"])
def test_every_property_survives_a_copy_between_two_endpoints(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path, relay: bool
) -> None:
    """Two SeaweedFS endpoints: the bytes come through this process, by every path (one PUT,
    relayed or through memory; parts of our size or of the source's own), and every property
    travels with them."""
    src, dst = new_bucket(seaweed_src, "xprops-src"), new_bucket(seaweed_dst, "xprops-dst")
    paths = seed_every_path(src)
    with seal_proxy(dst.endpoint, seal=False) as recorder:
        result = CliRunner().invoke(
            cli,
            [
                "sync",
                f"{src.url}/",
                f"{dst.url}/",
                "--db",
                str(tmp_path / "j.db"),
                "--json",
                "--part-size",
                "5MiB",
                *([] if relay else ["--no-relay"]),
                *endpoint_args(src.endpoint, recorder.endpoint()),
            ],
            env=cli_env(src.endpoint, dst.endpoint),
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["copied"]["objects"] == len(paths)
    # Each object went the way it was seeded for: parts for the large ones, one PUT else.
    in_parts = {
        path.split("?")[0].rsplit("/", 1)[-1]
        for method, path, _ in recorder.requests
        if method == "PUT" and "partNumber=" in path
    }
    assert in_parts == {key for key, way in paths.items() if way.endswith("parts")}
    kept = set(PROPERTIES) - {"WebsiteRedirectLocation"}  # SeaweedFS does not store it
    for key in paths:
        assert_properties_kept(src, dst, key, kept)
