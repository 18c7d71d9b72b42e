"""The pre-flight estimate of `longbow sync --dry-run` against two SeaweedFS endpoints, each
behind a proxy that records every request by kind: the requests the dry run predicts are the
ones the sync then makes, the probe only reads, and the cost is priced only where prices are
known."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.faultproxy import FaultProxy, Request
from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli
from s3longbow.config import MiB
from s3longbow.plan.prices import GB

from ..conftest import Bucket, cli_env
from .test_integrity import put_multipart


def kind_of(request: Request) -> str:
    """The request's kind, as the estimate names it (HEAD-bucket for a bucket's HEAD)."""
    method, key, query = request.method, request.key, request.query
    copy = "x-amz-copy-source" in request.headers
    if not key:
        if method == "HEAD":
            return "HEAD-bucket"
        if method == "GET" and query.get("list-type") == "2":
            return "LIST"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return f"{method}-bucket"
    if method == "PUT" and "partNumber" in query:
        return "UploadPartCopy" if copy else "UploadPart"
    if method == "PUT":
        return "CopyObject" if copy else "PUT"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    return method  # GET, HEAD, DELETE of an object


@dataclass
class Recorder:
    """Every request one proxy forwarded, by kind, and the ranges of object GETs."""

    kinds: Counter[str] = field(default_factory=Counter)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, request: Request) -> None:
        kind = kind_of(request)
        with self.lock:
            self.kinds[kind] += 1
            if kind == "GET":
                self.ranges.append((request.key, request.headers.get("range")))

    def take(self) -> tuple[Counter[str], list[tuple[str, str | None]]]:
        with self.lock:
            kinds, ranges = self.kinds, self.ranges
            self.kinds, self.ranges = Counter(), []
        return kinds, ranges


@dataclass
class Sides:
    src: Bucket
    dst: Bucket
    src_proxy: FaultProxy
    dst_proxy: FaultProxy
    src_seen: Recorder
    dst_seen: Recorder

    def args(self, db: Path, *extra: str, dst_region: str | None = None) -> list[str]:
        return [
            "sync",
            self.src.url + "/",
            self.dst.url + "/",
            "--db",
            str(db),
            "--src-endpoint-url",
            self.src_proxy.url,
            "--src-region",
            self.src.endpoint.region,
            "--src-path-style",
            "--dst-endpoint-url",
            self.dst_proxy.url,
            "--dst-region",
            dst_region or self.dst.endpoint.region,
            "--dst-path-style",
            *extra,
        ]

    def env(self) -> dict[str, str]:
        return cli_env(self.src.endpoint, self.dst.endpoint)


@pytest.fixture()
def sides(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, src_bucket: Bucket, dst_bucket: Bucket
) -> Iterator[Sides]:
    src_seen, dst_seen = Recorder(), Recorder()
    with (
        FaultProxy(seaweed_src.endpoint.url) as src_proxy,
        FaultProxy(seaweed_dst.endpoint.url) as dst_proxy,
    ):
        src_proxy.on_request(lambda r: src_seen.hook(r))
        dst_proxy.on_request(lambda r: dst_seen.hook(r))
        yield Sides(src_bucket, dst_bucket, src_proxy, dst_proxy, src_seen, dst_seen)


def run(args: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def seed(sides: Sides) -> dict[str, bytes]:
    """Objects of every path: zero bytes, small, at the threshold, two parts of ours, a
    multipart source of two parts; one already present and one only at the destination."""
    data = {
        "empty": b"",
        "small/kib.bin": os.urandom(3 * 1024),
        "edge/at-threshold": os.urandom(5 * MiB),
        "big/two-parts.bin": os.urandom(12 * MiB + 17),
        "same.txt": b"already there",
    }
    for key, body in data.items():
        sides.src.put(key, body)
    parts = [os.urandom(5 * MiB), os.urandom(2 * MiB + 3)]
    data["multi/source-parts"] = b"".join(parts)
    put_multipart(sides.src, "multi/source-parts", parts)
    sides.dst.put("same.txt", b"already there")
    sides.dst.put("only-at-destination", b"extra")
    sides.src_seen.take()
    sides.dst_seen.take()
    return data


def by_kind(seen: Counter[str]) -> dict[str, int]:
    """The requests a copy makes (the bucket HEADs that check each store left out)."""
    return {k: n for k, n in seen.items() if k != "HEAD-bucket" and n}


def test_a_dry_run_predicts_the_syncs_requests_and_its_probe_only_reads(
    sides: Sides, tmp_path: Path
) -> None:
    data = seed(sides)
    code, dry = run(sides.args(tmp_path / "dry.db", "--dry-run", "--delete"), sides.env())
    assert code == 0, dry
    estimate = dry["estimate"]
    dry_src, src_ranges = sides.src_seen.take()
    dry_dst, dst_ranges = sides.dst_seen.take()

    # What the path of each object takes (see s3longbow.plan.estimate).
    requests = estimate["requests"]
    assert requests["source"] == {
        "LIST": dry_src["LIST"],
        # big/two-parts: 1; multi/source-parts: its layout and its properties
        "HEAD": 3,
        # empty, kib, at-threshold: 1 each; two-parts and source-parts: 2 parts each
        "GET": 7,
    }
    assert requests["destination"] == {
        "LIST": dry_dst["LIST"],
        "HEAD": 2,
        "PUT": 3,
        "CreateMultipartUpload": 2,
        "UploadPart": 4,
        "CompleteMultipartUpload": 2,
        "DeleteObjects": 1,
    }
    assert estimate["objects"] == {"to_copy": 5, "by_path": {"multipart": 2, "single": 3}}
    copied = sum(len(v) for k, v in data.items() if k != "same.txt")
    assert estimate["bytes"] == {
        "total": copied,
        "through_this_machine": copied,
        "copied_by_server": 0,
    }
    assert estimate["deletes"] == 1
    duration = estimate["duration"]
    assert duration["basis"] == "estimate from a probe"
    assert duration["seconds"] > 0 and duration["in_flight"] >= 1
    assert duration["probe"]["sample_bytes"] == 8 * MiB  # of the largest, 12 MiB + 17
    assert duration["probe"]["throughput_bytes_per_second"] > 0
    cost = estimate["cost"]
    assert cost["applicable"] is False and cost["by_currency"] == {}
    assert all("is not AWS" in why for why in cost["not_priced"]) and cost["not_priced"]

    # The probe only read: 3 bucket HEADs per side (beside the one that checks each store)
    # and one ranged GET of at most 8 MiB, of the largest object; the listings; nothing else.
    assert dry_src == {"HEAD-bucket": 4, "LIST": dry_src["LIST"], "GET": 1}
    assert dry_dst == {"HEAD-bucket": 4, "LIST": dry_dst["LIST"]}
    assert src_ranges == [("big/two-parts.bin", f"bytes=0-{8 * MiB - 1}")] and not dst_ranges

    # The sync makes exactly the requests predicted.
    code, summary = run(sides.args(tmp_path / "jobs.db", "--delete", "--force"), sides.env())
    assert code == 0 and summary["ok"] is True, summary
    real_src, _ = sides.src_seen.take()
    real_dst, _ = sides.dst_seen.take()
    assert by_kind(real_src) == requests["source"]
    assert by_kind(real_dst) == requests["destination"]
    assert sides.dst.get("big/two-parts.bin") == data["big/two-parts.bin"]


def test_a_price_table_and_regions_price_the_copy_in_each_regions_currency(
    sides: Sides, tmp_path: Path
) -> None:
    data = seed(sides)
    table = tmp_path / "prices.toml"
    table.write_text(
        'date = "2024-06-30"\n'
        "[regions]\n"
        'us-east-1 = { currency = "USD", write_requests = 5.0, read_requests = 0.4, '
        "internet_out = 90.0, inter_region_out = 20.0 }\n"
        'cn-north-1 = { currency = "CNY", write_requests = 40.0, read_requests = 1.5, '
        "internet_out = 900.0, inter_region_out = 600.0 }\n"
    )
    args = sides.args(
        tmp_path / "dry.db", "--dry-run", "--price-table", str(table), dst_region="cn-north-1"
    )
    code, dry = run(args, sides.env())
    assert code == 0, dry
    estimate = dry["estimate"]
    cost = estimate["cost"]
    assert cost["applicable"] is True and cost["not_priced"] == []
    assert cost["price_table"] == {"date": "2024-06-30", "origin": str(table)}
    src, dst = estimate["requests"]["source"], estimate["requests"]["destination"]
    streamed = sum(len(v) for k, v in data.items() if k != "same.txt")
    src_reads = src["GET"] + src["HEAD"]
    dst_writes = sum(n for kind, n in dst.items() if kind not in ("HEAD", "DeleteObjects"))
    # Global to China: the bytes leave us-east-1 as to the internet.
    usd = src["LIST"] / 1000 * 5.0 + src_reads / 1000 * 0.4 + streamed / GB * 90.0
    cny = dst_writes / 1000 * 40.0 + dst.get("HEAD", 0) / 1000 * 1.5
    assert cost["by_currency"] == {"CNY": pytest.approx(cny), "USD": pytest.approx(usd)}
    transfer = [i for i in cost["items"] if i["unit"] == "GB"]
    assert [(i["region"], i["currency"], i["price"]) for i in transfer] == [
        ("us-east-1", "USD", 90.0)
    ]
    assert "us-east-1 -> cn-north-1 (internet)" in transfer[0]["what"]

    # The same as a table for people, with its date and currencies.
    result = CliRunner().invoke(cli, args, env=sides.env(), catch_exceptions=False)
    assert result.exit_code == 0
    out = " ".join(result.stdout.split())
    assert "Pre-flight estimate" in out and "estimate from a probe" in out
    assert "prices of 2024-06-30" in out and "USD" in out and "CNY" in out


def _refused_with_table(sides: Sides, tmp_path: Path, date: str, *flags: str) -> str:
    """Run with a price table dated `date`: refused (exit code 2) before any listing; its
    standard error."""
    table = tmp_path / "prices.toml"
    table.write_text(f'date = "{date}"\n[regions]\n')
    result = CliRunner().invoke(
        cli,
        sides.args(tmp_path / "run.db", *flags, "--price-table", str(table)),
        env=sides.env(),
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    seen, _ = sides.src_seen.take()
    assert "LIST" not in seen
    return str(result.stderr)


def test_a_bad_price_table_stops_the_dry_run_before_any_listing(
    sides: Sides, tmp_path: Path
) -> None:
    stderr = _refused_with_table(sides, tmp_path, "yesterday", "--dry-run")
    assert "price table" in stderr and "is not a date" in stderr


def test_a_price_table_without_a_dry_run_is_refused_before_any_listing(
    sides: Sides, tmp_path: Path
) -> None:
    stderr = _refused_with_table(sides, tmp_path, "2024-06-30")
    assert "--price-table prices a dry run's estimate" in stderr
    assert "add --dry-run" in stderr
    assert not (tmp_path / "run.db").exists()  # nothing started
