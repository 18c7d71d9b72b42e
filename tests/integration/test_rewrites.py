"""A content-type map and metadata of the run's own on SeaweedFS: written by one PUT, in
parts and by a copy on the server; from flags or a config file; bad input refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket
from .test_integrity import put_multipart, run_sync

MiB = 1024 * 1024
MAP = "# ours\n.json application/json\n.webp image/webp\n"


def seed(src: Bucket) -> None:
    c = src.client
    generic = "application/octet-stream"
    c.put_object(Bucket=src.name, Key="a.json", Body=b"{}", ContentType=generic)
    c.put_object(
        Bucket=src.name,
        Key="big.webp",
        Body=os.urandom(11 * MiB),
        ContentType="binary/octet-stream",
        Metadata={"Owner": "someone", "kept": "yes"},
    )
    put_multipart(src, "parts.json", [os.urandom(5 * MiB), os.urandom(MiB)])  # no type given
    c.put_object(Bucket=src.name, Key="typed.json", Body=b"[]", ContentType="text/x-custom")


def heads(bucket: Bucket) -> dict[str, tuple[str, dict[str, str]]]:
    out = {}
    for key in bucket.keys():
        head = bucket.client.head_object(Bucket=bucket.name, Key=key)
        out[key] = (head["ContentType"], head["Metadata"])
    return out


@pytest.mark.parametrize("how", ["two-endpoints", "server-side", "config-file"])
def test_mapped_types_and_set_metadata_are_written(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path, how: str
) -> None:
    server_side = how == "server-side"
    src = new_bucket(seaweed_src, "rw-src")
    dst = new_bucket(seaweed_src if server_side else seaweed_dst, "rw-dst")
    seed(src)
    (tmp_path / "types.txt").write_text(MAP)
    if how == "config-file":
        config = tmp_path / "longbow.toml"
        config.write_text(
            'content_type_map = "types.txt"\n'
            'set_metadata = { owner = "storage-team", copied-by = "longbow" }\n'
        )
        args = ["--config", str(config)]
    else:
        args = [
            "--content-type-map",
            str(tmp_path / "types.txt"),
            "--set-metadata",
            "owner=storage-team",
            "--set-metadata",
            "Copied-By=longbow",
        ]
    code, summary = run_sync(src, dst, tmp_path / "j.db", "--part-size", "5MiB", *args)
    assert code == 0, summary["failed"]
    ours = {"owner": "storage-team", "copied-by": "longbow"}
    assert heads(dst) == {
        "a.json": ("application/json", ours),
        "big.webp": ("image/webp", {"kept": "yes", **ours}),
        "parts.json": ("application/json", ours),
        "typed.json": ("text/x-custom", ours),  # a type of its own is kept
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--content-type-map", "missing.txt"], "cannot read content-type map"),
        (["--content-type-map", "bad.txt"], "line 1"),
        (["--set-metadata", "novalue"], "is not NAME=VALUE"),
        (["--no-overwrite", "--all-versions"], "no-overwrite cannot go with all-versions"),
        (["--dst-sse-c-key-file", "missing.key"], "cannot read the SSE-C key file"),
    ],
)
def test_bad_options_stop_before_anything_is_copied(
    seaweed_src: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.txt").write_text("json\n")
    src = new_bucket(seaweed_src, "rw-bad")
    src.put("a", b"x")
    result = CliRunner().invoke(
        cli,
        ["sync", f"{src.url}/", str(tmp_path / "out"), "--db", str(tmp_path / "j.db"), *args]
        + endpoint_args(src.endpoint, None),
        env=cli_env(src.endpoint, None),
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()
