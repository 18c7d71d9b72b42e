"""Pure logic of fanned-out objects, with plain values: splitting an object into ranges of its
parts, which objects are fanned out, the range message format, when a range's object is
closed, the completion rule, and the proof a copy by many workers keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s3longbow.cluster.config import ClusterSettings, parse_cluster_table, with_fanout
from s3longbow.cluster.fanout import FanoutRule, range_closed
from s3longbow.cluster.inbound import Shape, parse_message
from s3longbow.cluster.jobitems import JobItem
from s3longbow.cluster.messages import (
    JobSpec,
    MessagePacker,
    encode_jobs,
    fan_out,
    job_id,
    object_of,
    range_id,
)
from s3longbow.config import GiB, MiB, TransferSettings
from s3longbow.errors import ConfigError
from s3longbow.jobs.base import RangeProgress
from s3longbow.model import Checksum, Job, JobId, JobState, PartRange
from s3longbow.transfer.fanout import for_ranges
from s3longbow.transfer.proof import CopyMethod, CopyPath, PartCheck, Proof
from s3longbow.transfer.sizing import range_count, range_parts


@pytest.mark.parametrize(
    ("parts", "count"),
    [(9, 5), (10, 5), (10_000, 20), (3, 5), (1, 1), (7, 7), (10_000, 10_000), (501, 2)],
)
def test_ranges_hold_every_part_once_in_order(parts: int, count: int) -> None:
    ranges = [range_parts(i, count, parts) for i in range(count)]
    assert [n for r in ranges for n in r] == list(range(1, parts + 1))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1  # shared out evenly


def test_a_range_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError):
        range_parts(5, 5, 10)
    with pytest.raises(ValueError):
        PartRange(3, 3)


def test_range_count() -> None:
    assert range_count(41 * MiB, 5 * MiB, 2) == 5  # 9 parts
    assert range_count(5 * 1024 * GiB, 16 * MiB, 500) == 656  # at the part size it is given
    assert range_count(1, 5 * MiB, 500) == 1


def test_which_objects_are_fanned_out() -> None:
    rule = FanoutRule(threshold=20 * MiB, parts_per_range=2, part_size=5 * MiB)
    assert rule.ranges(None) is None
    assert rule.ranges(20 * MiB) is None  # not above the threshold
    assert rule.ranges(20 * MiB + 1) == 3  # 5 parts
    default = FanoutRule.of(ClusterSettings(queue_name="q"), TransferSettings())
    assert default.ranges(5 * GiB) is None
    # A 5 TiB object has 10,000 parts at most: 20 ranges of 500.
    assert default.ranges(5 * 1024 * GiB) == 20
    one_range = FanoutRule(threshold=5 * MiB, parts_per_range=500, part_size=5 * MiB)
    assert one_range.ranges(100 * MiB) is None  # all its parts fit in one range


def test_range_ids_name_their_object() -> None:
    spec = JobSpec("src", "a", "dst", "b", 10 * MiB, "e")
    ranges = fan_out(spec, 3)
    assert [r.part_range for r in ranges] == [PartRange(i, 3) for i in range(3)]
    assert {r.object_id for r in ranges} == {spec.id} == {job_id("src", "a", "dst", "b")}
    assert [r.id for r in ranges] == [range_id(spec.id, i) for i in range(3)]
    assert all(object_of(r.id) == spec.id for r in ranges)
    assert object_of(spec.id) is None
    assert object_of("msg-abc#rx") is None


def test_range_messages_round_trip_and_travel_alone() -> None:
    spec = JobSpec("src", "in/a", "dst", "out/a", 30 * MiB, "e", last_modified=5.0)
    packer = MessagePacker(objects_per_message=100, large_threshold=64 * MiB)
    packed = [p for r in fan_out(spec, 4) for p in packer.add(r)]
    assert len(packed) == 4 and packer.flush() == []
    body = json.loads(packed[2].body)
    assert body["objects"][0]["range"] == {"index": 2, "count": 4}
    inbound = parse_message(packed[2].body, ())
    assert inbound.shape is Shape.JOBS and inbound.problems == ()
    assert inbound.jobs == (fan_out(spec, 4)[2],)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ([0, 4], "[0, 4]"),
        ({"index": 4, "count": 4}, "'index': 4"),
        ({"index": -1, "count": 4}, "'index': -1"),
        ({"index": 0, "count": 0}, "'count': 0"),
        ({"index": 0, "count": 10_001}, "10001"),
        ({"index": True, "count": 2}, "True"),
        ({"index": 0, "count": 2, "extra": 1}, "extra"),
        ("0/4", "'0/4'"),
    ],
)
def test_malformed_ranges_are_refused_clearly(value: object, shown: str) -> None:
    body = json.loads(encode_jobs("src", "dst", [JobSpec("src", "a", "dst", "b", 1, "e")]))
    body["objects"][0]["range"] = value
    inbound = parse_message(json.dumps(body), ())
    assert inbound.jobs == ()
    assert "objects[0].range must be an object" in inbound.reason
    assert shown in inbound.reason


def item(state: JobState, etag: str = "e1", reason: str | None = None) -> JobItem:
    return JobItem(id="o", state=state, etag=etag, reason=reason)


def test_when_a_range_has_nothing_left_to_do() -> None:
    assert range_closed(item(JobState.PENDING), "e1") is None
    assert range_closed(item(JobState.IN_PROGRESS), "e1") is None
    assert range_closed(item(JobState.DONE), "e1") == "the object is already copied"
    assert "failed: source changed" in (
        range_closed(item(JobState.FAILED, reason="source changed"), "e1") or ""
    )
    assert "another version" in (range_closed(item(JobState.IN_PROGRESS, "e2"), "e1") or "")
    assert range_closed(None, "e1") == "the object's record is gone"


def test_the_object_is_completed_once_every_range_is_finished_and_it_is_open() -> None:
    assert not RangeProgress(3, 4).complete
    assert RangeProgress(4, 4).complete
    assert not RangeProgress(4, 4, closed="the object is failed: x").complete


def job(size: int = 100 * MiB, etag: str = "e1") -> Job:
    return Job(JobId("o#r00000"), 0, 0, "a", "b", size, etag, part_range=PartRange(0, 2))


def test_a_copy_by_many_workers_keeps_the_proofs_its_parts_records_give() -> None:
    settings = TransferSettings(part_size=5 * MiB)
    by_etag = CopyMethod(CopyPath.SOURCE_PARTS, Proof.SOURCE_ETAG, 5 * MiB, relay=True)
    assert for_ranges(by_etag, job(), settings, encrypts=False) == by_etag
    crc = Checksum("CRC32C", "AAAAAA==")
    by_crc = CopyMethod(
        CopyPath.OWN_PARTS, Proof.SOURCE_CHECKSUM, 5 * MiB, checksum=crc, write_algorithm="CRC32C"
    )
    assert for_ranges(by_crc, job(), settings, encrypts=False) == by_crc


@pytest.mark.parametrize(
    ("method", "encrypts", "reason"),
    [
        (
            CopyMethod(
                CopyPath.OWN_PARTS,
                Proof.SOURCE_MD5,
                5 * MiB,
                write_algorithm="CRC32C",
                part_check=PartCheck.CRC,
            ),
            False,
            "MD5 of all its bytes",
        ),
        (
            CopyMethod(CopyPath.SOURCE_PARTS, Proof.SOURCE_ETAG, 5 * MiB),
            True,
            "encrypts with KMS",
        ),
        (
            CopyMethod(
                CopyPath.OWN_PARTS,
                Proof.SOURCE_CHECKSUM,
                5 * MiB,
                checksum=Checksum("SHA256", "x"),
                write_algorithm="SHA256",
            ),
            False,
            "SHA256 checksum cannot be combined",
        ),
        (CopyMethod(CopyPath.SINGLE, Proof.REPLY), False, "one-part ETag"),
    ],
)
def test_what_many_workers_cannot_prove_is_recorded_unverified(
    method: CopyMethod, encrypts: bool, reason: str
) -> None:
    chosen = for_ranges(method, job(), TransferSettings(part_size=5 * MiB), encrypts=encrypts)
    assert chosen.proof is Proof.UNVERIFIED and reason in chosen.reason
    assert chosen.multipart and chosen.part_size == 5 * MiB
    assert chosen.part_check is PartCheck.MD5 and not chosen.relay  # every part keeps its MD5
    assert chosen.ordered_hash is None  # no worker hashes the whole object


def test_fanout_settings_from_the_file_and_the_flags() -> None:
    where = Path("c.toml")
    table = parse_cluster_table(
        {"queue_name": "q", "fanout_threshold": "20MiB", "fanout_parts": 2}, where
    )
    assert (table.fanout_threshold, table.fanout_parts) == (20 * MiB, 2)
    assert parse_cluster_table({"queue_name": "q"}, where).fanout_threshold == 5 * GiB
    for bad, text in (
        ({"fanout_threshold": "1MiB"}, "at least"),
        ({"fanout_threshold": "lots"}, "is not a size"),
        ({"fanout_threshold": True}, "expected a size"),
        ({"fanout_parts": 0}, "between 1 and 10000"),
    ):
        with pytest.raises(ConfigError, match=text):
            parse_cluster_table({"queue_name": "q", **bad}, where)
    flagged = with_fanout(table, "1GiB", 50)
    assert (flagged.fanout_threshold, flagged.fanout_parts) == (GiB, 50)
    assert with_fanout(table, None, None) is table
    with pytest.raises(ConfigError, match="--fanout-parts"):
        with_fanout(table, None, 20_000)
