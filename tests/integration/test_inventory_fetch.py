"""An inventory report's data files are fetched several at once, read in the manifest's order,
and a damaged one stops the listing with its own error."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from longbow_testkit.fakes3 import FakeS3, Request
from longbow_testkit.inventory import InventoryRow, Report, publish_inventory
from s3longbow.config import PairSettings, Settings
from s3longbow.pairs import open_pairs
from s3longbow.plan.inventory import InventoryError
from s3longbow.plan.inventory_listing import inventory_listing

from ..conftest import fake_side

FILES = 3


class _Client:
    """What publish_inventory asks of a boto3 client, written straight into the server."""

    def __init__(self, server: FakeS3) -> None:
        self.server = server

    def put_object(self, Bucket: str, Key: str, Body: bytes | str) -> None:  # noqa: N803
        self.server.put(Bucket, Key, Body if isinstance(Body, bytes) else Body.encode())


def _publish(server: FakeS3, keys: list[str]) -> Report:
    server.buckets.add("inv")
    rows = [InventoryRow(key, 4, "8d777f385d3dfec8815d20f7496026dc") for key in keys]
    return publish_inventory(_Client(server), "inv", rows, source_bucket="bkt", files=FILES)


def _settings(server: FakeS3, report: Report, tmp_path: Path) -> Settings:
    pair = PairSettings("s3://bkt/", str(tmp_path / "dst"), src_inventory=report.url)
    return Settings(pairs=(pair,), source=fake_side(server))


def test_data_files_are_fetched_at_once_and_read_in_order(tmp_path: Path) -> None:
    """The server holds the first GET of each data file until all have come: fetched one
    after another, the first would wait for the others in vain and the barrier would break."""
    keys = [f"k{i:02d}" for i in range(12)]
    with FakeS3() as server:
        report = _publish(server, keys)
        meeting = threading.Barrier(FILES, timeout=10)

        def meet(request: Request) -> None:
            if request.method == "GET" and request.key in report.data_keys:
                meeting.wait()

        server.on(meet)
        with open_pairs(_settings(server, report, tmp_path)) as pairs:
            listed = [obj.key for obj in inventory_listing(pairs[0], "bytes", folder=tmp_path)]
        assert not meeting.broken
        assert listed == keys
        # Every temporary data file is gone.
        assert not list(tmp_path.glob("longbow-inventory-*"))


def test_a_damaged_data_file_stops_the_listing_with_its_error(tmp_path: Path) -> None:
    with FakeS3() as server:
        report = _publish(server, [f"k{i:02d}" for i in range(12)])
        damaged = report.data_keys[1]
        body = server.objects["inv", damaged]
        server.put("inv", damaged, body[:-1] + bytes([body[-1] ^ 1]))
        with open_pairs(_settings(server, report, tmp_path)) as pairs:
            with pytest.raises(InventoryError, match="fails its MD5 check"):
                list(inventory_listing(pairs[0], "bytes", folder=tmp_path))
        assert not list(tmp_path.glob("longbow-inventory-*"))
