"""`longbow sync --src-inventory`: an S3 Inventory report stands for the source's listing,
against real servers on 127.0.0.1 (the report in a bucket of the source's server, as S3
delivers it to a bucket of the source's account)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.inventory import InventoryRow, Report, publish_inventory
from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """Run the CLI in-process with --json; return (exit code, summary, stderr)."""
    result = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    summary = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, summary, result.stderr


def rows_of(bucket: Bucket, prefix: str = "") -> list[InventoryRow]:
    """The report S3 would make of the bucket now."""
    rows = []
    for page in bucket.client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.name, Prefix=prefix
    ):
        for item in page.get("Contents", ()):
            rows.append(
                InventoryRow(
                    item["Key"],
                    item["Size"],
                    item["ETag"].strip('"'),
                    item["LastModified"].timestamp(),
                )
            )
    return rows


def sync_args(src: Bucket, dst: Bucket, db: Path, report: Report | str, *extra: str) -> list[str]:
    manifest = report.url if isinstance(report, Report) else report
    return [
        "sync",
        f"{src.url}/data/",
        f"{dst.url}/copy/",
        "--db",
        str(db),
        "--src-inventory",
        manifest,
        *endpoint_args(src.endpoint, dst.endpoint),
        *extra,
    ]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture()
def inventory_bucket(seaweed_src: LocalServer) -> Bucket:
    return new_bucket(seaweed_src, "inv")


@pytest.mark.parametrize("file_format", ["CSV", "ORC", "Parquet"])
def test_sync_copies_what_the_report_lists_and_the_destination_lacks(
    src_bucket: Bucket,
    dst_bucket: Bucket,
    inventory_bucket: Bucket,
    tmp_path: Path,
    file_format: str,
) -> None:
    bodies = {
        "data/a.txt": b"alpha",
        "data/sp ace+plus%25.bin": os.urandom(3000),
        "data/dir/ünï/漢字": b"unicode",
        "data/dir-x/y": os.urandom(6 * 1024 * 1024 + 5),  # in parts
        "data/present": b"already there",
        "data/changed": b"before the report",
        "outside/not-in-pair": b"other prefix",
    }
    for key, body in bodies.items():
        src_bucket.put(key, body)
    dst_bucket.put("copy/present", b"already there")
    report = publish_inventory(
        inventory_bucket.client,
        inventory_bucket.name,
        rows_of(src_bucket),
        source_bucket=src_bucket.name,
        file_format=file_format,
        files=3,
    )
    # After the report: a new object (not in it), and an object overwritten with other bytes.
    src_bucket.put("data/new-after-report", b"not listed")
    src_bucket.put("data/changed", b"overwritten after the report")

    code, summary, err = run(
        sync_args(src_bucket, dst_bucket, tmp_path / "jobs.db", report),
        cli_env(src_bucket.endpoint, dst_bucket.endpoint),
    )

    assert code == 0, err
    assert summary["failed"] == [] and summary["source_gone"] == []
    assert summary["already_present"]["objects"] == 1
    assert summary["copied"]["objects"] == 5
    listed = {k: v for k, v in bodies.items() if k.startswith("data/") and k != "data/changed"}
    expected = {"copy/" + k[len("data/") :]: md5(v) for k, v in listed.items()}
    # The changed object is copied as it is now: the copy is pinned, and restarts on it.
    expected["copy/changed"] = md5(b"overwritten after the report")
    assert dst_bucket.digests() == expected


def test_a_key_deleted_since_the_report_is_recorded_as_gone(
    src_bucket: Bucket, dst_bucket: Bucket, inventory_bucket: Bucket, tmp_path: Path
) -> None:
    for key in ("data/kept", "data/deleted-small", "data/deleted-big"):
        src_bucket.put(key, os.urandom(7 * 1024 * 1024 if key.endswith("big") else 10))
    report = publish_inventory(
        inventory_bucket.client,
        inventory_bucket.name,
        rows_of(src_bucket),
        source_bucket=src_bucket.name,
    )
    for key in ("data/deleted-small", "data/deleted-big"):
        src_bucket.client.delete_object(Bucket=src_bucket.name, Key=key)
    db = tmp_path / "jobs.db"
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)

    code, summary, err = run(sync_args(src_bucket, dst_bucket, db, report), env)

    assert code == 0, err
    assert summary["failed"] == [] and summary["jobs"]["skipped"] == 2
    gone = {item["key"]: item["reason"] for item in summary["source_gone"]}
    assert sorted(gone) == ["data/deleted-big", "data/deleted-small"]
    for reason in gone.values():
        assert reason.startswith("source gone since inventory: ")
        assert "the inventory of 2024-05-01 00:00 UTC" in reason
    assert dst_bucket.keys() == ["copy/kept"]
    # `longbow status` tells the same from the job database.
    code, status, _ = run(["status", "--db", str(db)])
    assert code == 0 and sorted(i["key"] for i in status["source_gone"]) == sorted(gone)


def _bad_manifest(inventory_bucket: Bucket, report: Report, body: bytes) -> None:
    inventory_bucket.put(report.manifest_key, body)


def _flip_a_byte(inventory_bucket: Bucket, report: Report, _: bytes) -> None:
    key = report.data_keys[1]
    data = bytearray(inventory_bucket.get(key))
    data[len(data) // 2] ^= 0x01  # the same size: only the MD5 tells
    inventory_bucket.put(key, bytes(data))


@pytest.mark.parametrize(
    ("changes", "damage", "message"),
    [
        ({}, _flip_a_byte, "fails its MD5 check"),
        ({"sourceBucket": "another-bucket"}, None, "lists bucket 'another-bucket', not the source"),
        ({"fileFormat": "XML"}, None, "unknown fileFormat 'XML'"),
        ({"fileSchema": "Bucket, Size, ETag"}, None, "no Key column"),
        ({}, _bad_manifest, "is not JSON"),
    ],
    ids=["md5-mismatch", "wrong-bucket", "unknown-format", "no-key-column", "not-json"],
)
def test_a_bad_report_stops_the_run_before_anything_is_copied(
    src_bucket: Bucket,
    dst_bucket: Bucket,
    inventory_bucket: Bucket,
    tmp_path: Path,
    changes: dict[str, Any],
    damage: Any,
    message: str,
) -> None:
    for i in range(6):
        src_bucket.put(f"data/{i}", b"x" * i)
    report = publish_inventory(
        inventory_bucket.client,
        inventory_bucket.name,
        rows_of(src_bucket),
        source_bucket=src_bucket.name,
        files=2,
        manifest_changes=changes,
    )
    if damage is not None:
        damage(inventory_bucket, report, b"{ not json")

    code, summary, err = run(
        sync_args(src_bucket, dst_bucket, tmp_path / "jobs.db", report),
        cli_env(src_bucket.endpoint, dst_bucket.endpoint),
    )

    assert code == 2, err
    assert message in err and "hint:" in err
    assert dst_bucket.keys() == []


def test_a_missing_manifest_and_delete_are_refused(
    src_bucket: Bucket, dst_bucket: Bucket, inventory_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("data/a", b"a")
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)
    missing = f"{inventory_bucket.url}/nowhere/manifest.json"
    code, _, err = run(sync_args(src_bucket, dst_bucket, tmp_path / "j.db", missing), env)
    assert code == 2 and "does not exist" in err
    code, _, err = run(
        sync_args(src_bucket, dst_bucket, tmp_path / "j.db", missing, "--delete"), env
    )
    assert code == 2 and "--delete cannot go with --src-inventory" in err
    assert dst_bucket.keys() == []


def test_a_pair_of_a_config_file_names_its_report(
    src_bucket: Bucket, dst_bucket: Bucket, inventory_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("data/a", b"listed")
    report = publish_inventory(
        inventory_bucket.client,
        inventory_bucket.name,
        rows_of(src_bucket),
        source_bucket=src_bucket.name,
    )
    src_bucket.put("data/b", b"not in the report")
    config = tmp_path / "longbow.toml"
    config.write_text(
        f'[source]\nendpoint_url = "{src_bucket.endpoint.url}"\npath_style = true\n'
        f'[destination]\nendpoint_url = "{dst_bucket.endpoint.url}"\npath_style = true\n'
        f'[[pairs]]\nsrc = "{src_bucket.url}/data/"\ndst = "{dst_bucket.url}/"\n'
        f'src_inventory = "{report.url}"\n'
    )
    code, summary, err = run(
        ["sync", "--config", str(config), "--db", str(tmp_path / "j.db")],
        cli_env(src_bucket.endpoint, dst_bucket.endpoint),
    )
    assert code == 0, err
    assert dst_bucket.keys() == ["a"] and summary["copied"]["objects"] == 1


KEYS = 1_000_000


@pytest.mark.slow
def test_a_report_of_a_million_keys_plans_in_bounded_memory(
    src_bucket: Bucket, dst_bucket: Bucket, inventory_bucket: Bucket, tmp_path: Path
) -> None:
    # Keys in a scrambled order (7919 is prime to 10^6), dealt out to 8 data files.
    rows = (
        InventoryRow(f"data/{(i * 7919) % KEYS:07d}/object", 100 + i % 1000, f"{i:032x}")
        for i in range(KEYS)
    )
    report = publish_inventory(
        inventory_bucket.client,
        inventory_bucket.name,
        rows,
        source_bucket=src_bucket.name,
        files=8,
    )
    argv = ["longbow", *sync_args(src_bucket, dst_bucket, tmp_path / "j.db", report)]
    argv += ["--dry-run", "--json"]
    # The peak resident memory of the run itself, told by the child as it exits (VmHWM).
    code = (
        "import atexit, re, runpy, sys\n"
        "atexit.register(lambda: sys.stderr.write('\\npeak-rss-kib=' + re.search("
        "r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1] + '\\n'))\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_module('s3longbow', run_name='__main__')\n"
    )
    env = {
        **os.environ,
        **cli_env(src_bucket.endpoint, dst_bucket.endpoint),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["to_copy"]["objects"] == KEYS
    assert summary["to_copy"]["bytes"] == sum(100 + i % 1000 for i in range(KEYS))
    # About 45 MiB here: the report goes through a sort on disk. The same million keys held
    # in memory (an object each, with its key and ETag) would take well over 250 MiB.
    peak_mib = int(done.stderr.rsplit("peak-rss-kib=", 1)[1].split()[0]) / 1024
    assert peak_mib < 160, f"peak RSS {peak_mib:.0f} MiB"
