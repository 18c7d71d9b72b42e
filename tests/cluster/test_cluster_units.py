"""Pure logic of cluster mode, with plain values: message parsing and packing, the claim and
queue rules of the job table, and the metric and log line formats."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from s3longbow.cluster.inbound import Shape, parse_message
from s3longbow.cluster.jobitems import ClaimOutcome, JobItem, decide_claim, should_queue
from s3longbow.cluster.messages import (
    MESSAGE_BODY_LIMIT,
    SQS_MAX_BYTES,
    JobSpec,
    MessagePacker,
    Route,
    encode_jobs,
    job_id,
)
from s3longbow.cluster.metrics import ClusterCounters, MetricsEmitter
from s3longbow.cluster.sqs import batches
from s3longbow.config import MiB
from s3longbow.display import JsonLogFormatter
from s3longbow.model import JobState
from s3longbow.plan.filters import Filters
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.progress.stats import Stats
from s3longbow.selection import FilterRule, FilterSpec, parse_age

ROUTES = (Route("src", "in/", "dst", "out/"), Route("src", "in/both/", "other", ""))


def spec(key: str = "in/a", size: int = 10, etag: str = "e1", mtime: float = 100.0) -> JobSpec:
    return JobSpec("src", key, "dst", "out/" + key[3:], size, etag, last_modified=mtime)


def test_job_messages_round_trip_with_any_key() -> None:
    keys = ["in/plain", "in/space and+plus%41", "in/ünï 字", "in/ctl\x01\x7f", "in/" + "k" * 1000]
    jobs = [spec(k) for k in keys]
    body = encode_jobs("src", "dst", jobs)
    assert body.isascii()  # SQS refuses some characters S3 keys may hold
    parsed = parse_message(body, ())
    assert parsed.shape is Shape.JOBS and not parsed.problems
    assert [j.src_key for j in parsed.jobs] == keys
    assert parsed.jobs == tuple(jobs)


def test_s3_event_records_are_decoded_form_style_and_routed() -> None:
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": "src"},
                        "object": {"key": "in/both/a+b%2Bc%C3%A9", "size": 3, "eTag": "x"},
                    },
                },
                {
                    "eventName": "ObjectRemoved:Delete",
                    "s3": {"bucket": {"name": "src"}, "object": {"key": "in/r", "versionId": "v"}},
                },
                {
                    "eventName": "ObjectAcl:Put",
                    "s3": {"bucket": {"name": "src"}, "object": {"key": "in/q"}},
                },
                {
                    "eventName": "ObjectCreated:Copy",
                    "s3": {"bucket": {"name": "src"}, "object": {"key": "nope/z"}},
                },
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "src"}, "object": {"key": 5}},
                },
            ]
        }
    )
    parsed = parse_message(body, ROUTES)
    assert parsed.shape is Shape.S3_EVENT
    # The key matches two pairs: one job for each destination.
    assert sorted((j.dst_bucket, j.dst_key) for j in parsed.jobs) == [
        ("dst", "out/both/a b+cé"),
        ("other", "a b+cé"),
    ]
    assert all(j.src_key == "in/both/a b+cé" and j.origin == "event" for j in parsed.jobs)
    (removal,) = parsed.removals
    assert (removal.src_key, removal.dst_key, removal.version_id) == ("in/r", "out/r", "v")
    assert parsed.ignored == 1
    assert len(parsed.problems) == 2
    assert "no configured pair matches s3://src/nope/z" in parsed.problems[0]
    assert "s3.object.key must be a non-empty string" in parsed.problems[1]


def test_wrapped_and_eventbridge_events() -> None:
    inner = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Post",
                    "s3": {"bucket": {"name": "src"}, "object": {"key": "in/x", "size": 1}},
                }
            ]
        }
    )
    parsed = parse_message(json.dumps({"Type": "Notification", "Message": inner}), ROUTES)
    assert [j.src_key for j in parsed.jobs] == ["in/x"]
    test = json.dumps({"Type": "Notification", "Message": json.dumps({"Event": "s3:TestEvent"})})
    assert parse_message(test, ROUTES).shape is Shape.TEST_EVENT
    bridge = {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2024-01-01T00:00:00Z",
        "detail": {
            "bucket": {"name": "src"},
            "object": {"key": "in/e+f", "size": 4, "etag": "t", "version-id": "v9"},
        },
    }
    parsed = parse_message(json.dumps(bridge), ROUTES)
    assert parsed.shape is Shape.EVENTBRIDGE
    (job,) = parsed.jobs
    assert (job.src_key, job.size, job.etag, job.version_id) == ("in/e f", 4, "t", "v9")
    assert job.last_modified == 1704067200.0
    parsed = parse_message(json.dumps({**bridge, "detail-type": "Object Deleted"}), ROUTES)
    assert len(parsed.removals) == 1 and not parsed.jobs
    parsed = parse_message(json.dumps({**bridge, "detail-type": "Object Tags Added"}), ROUTES)
    assert parsed.ignored == 1 and not parsed.jobs and not parsed.problems


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "not JSON"),
        ("null", "expected an object"),
        ('{"Records": "x"}', "Records must be a non-empty list"),
        ('{"Records": [1]}', "record 0 is not an object"),
        ('{"Type": "SubscriptionConfirmation", "SubscribeURL": "https://x"}', "confirm"),
        ('{"detail-type": "Object Created", "source": "aws.ec2", "detail": {}}', "aws.ec2"),
        ('{"longbow": true, "objects": []}', "format True"),
        ('{"longbow": 1, "src_bucket": "a", "dst_bucket": "b", "objects": []}', "non-empty"),
        ("x" * (SQS_MAX_BYTES + 1), "more than the"),
    ],
)
def test_malformed_messages_say_why(body: str, reason: str) -> None:
    parsed = parse_message(body, ROUTES)
    assert not parsed.jobs
    assert reason in parsed.reason


def test_packing_small_objects_and_large_ones_alone() -> None:
    packer = MessagePacker(objects_per_message=3, large_threshold=5 * MiB)
    ready = []
    for i in range(7):
        ready += packer.add(spec(f"in/s{i}", size=100))
    ready += packer.add(spec("in/big", size=6 * MiB))
    ready += packer.add(JobSpec("src", "in/t", "dst2", "t", 5))  # another bucket pair
    ready += packer.flush()
    assert [len(p.jobs) for p in ready] == [3, 3, 1, 1, 1]
    assert [p.jobs[0].src_key for p in ready] == ["in/s0", "in/s3", "in/big", "in/s6", "in/t"]
    for p in ready:
        assert parse_message(p.body, ()).jobs == p.jobs


def test_packed_bodies_stay_small_enough_for_full_batches() -> None:
    packer = MessagePacker(objects_per_message=1000, large_threshold=5 * MiB)
    ready = []
    for i in range(200):
        ready += packer.add(spec("in/" + "字" * 300 + str(i), size=1))  # 6 bytes a character
    ready += packer.flush()
    assert len(ready) > 1
    assert all(len(p.body) <= MESSAGE_BODY_LIMIT for p in ready)
    assert sum(len(p.jobs) for p in ready) == 200
    assert all(len(chunk) == 10 for chunk in batches([p.body for p in ready])[:-1])


def test_claim_rules() -> None:
    s = spec()
    item = JobItem(id=s.id, source_id=s.source_id, last_modified=100.0)

    def at(state: JobState, **changes: object) -> JobItem:
        return _item(item, state, **changes)

    assert decide_claim(None, s, "m1", now=50) is ClaimOutcome.RUN
    assert decide_claim(at(JobState.PENDING), s, "m1", 50) is ClaimOutcome.RUN
    assert decide_claim(at(JobState.FAILED), s, "m1", 50) is ClaimOutcome.RUN
    running = at(JobState.IN_PROGRESS, message_id="m1", lease_until=60.0)
    assert decide_claim(running, s, "m1", 50) is ClaimOutcome.RUN  # its worker died
    assert decide_claim(running, s, "m2", 50) is ClaimOutcome.BUSY  # another delivery runs it
    assert decide_claim(running, s, "m2", 61) is ClaimOutcome.RUN  # its lease ran out
    done = at(JobState.DONE)
    assert decide_claim(done, s, "m1", 50) is ClaimOutcome.DONE_ALREADY
    changed = spec(etag="e2", mtime=200.0)
    assert decide_claim(done, changed, "m1", 50) is ClaimOutcome.RUN  # a newer version
    older = spec(etag="e0", mtime=50.0)
    assert decide_claim(done, older, "m1", 50) is ClaimOutcome.DONE_ALREADY  # a stale event


def test_a_delivery_without_an_etag_does_not_reopen_a_finished_job() -> None:
    # Its source was gone when the worker asked for the ETag: a later message time alone
    # does not make it a newer version than the one copied.
    done = JobItem(id=spec().id, state=JobState.DONE, size=10, etag="e1", last_modified=100.0)
    unnamed = replace(spec(mtime=200.0), etag=None)
    assert decide_claim(done, unnamed, "m1", 50) is ClaimOutcome.DONE_ALREADY
    skipped = replace(done, state=JobState.SKIPPED, version_id="v1")
    assert decide_claim(skipped, replace(unnamed, version_id="v1"), "m1", 50) is (
        ClaimOutcome.DONE_ALREADY
    )
    # Its size or version id says it is another version: it runs (and fails: nothing to read).
    assert decide_claim(done, replace(unnamed, size=11), "m1", 50) is ClaimOutcome.RUN
    assert decide_claim(skipped, replace(unnamed, version_id="v2"), "m1", 50) is ClaimOutcome.RUN
    assert decide_claim(None, unnamed, "m1", 50) is ClaimOutcome.RUN
    assert decide_claim(replace(done, state=JobState.PENDING), unnamed, "m1", 50) is (
        ClaimOutcome.RUN
    )


def test_queue_rules() -> None:
    s = spec()
    base = JobItem(id=s.id, source_id=s.source_id, queued_at=100.0, finished_at=100.0)
    rules = {"now": 200.0, "listed_at": 150.0, "stale_before": 50.0}
    assert should_queue(None, s, **rules)
    assert not should_queue(_item(base, JobState.PENDING), s, **rules)
    assert should_queue(_item(base, JobState.PENDING), s, **rules, requeue=True)
    assert should_queue(_item(base, JobState.PENDING, queued_at=10.0), s, **rules)  # expired
    assert should_queue(_item(base, JobState.PENDING), spec(etag="e2"), **rules)
    assert not should_queue(_item(base, JobState.IN_PROGRESS, lease_until=300.0), s, **rules)
    assert should_queue(_item(base, JobState.IN_PROGRESS, lease_until=100.0), s, **rules)
    # Done before the destination was listed, yet listed as missing: the copy was removed.
    assert should_queue(_item(base, JobState.DONE), s, **rules)
    # Done after the listing began: the listing was older than the copy.
    assert not should_queue(_item(base, JobState.DONE, finished_at=160.0), s, **rules)
    assert not should_queue(_item(base, JobState.FAILED), s, **rules)
    assert should_queue(_item(base, JobState.FAILED), s, **rules, retry_failed=True)
    assert should_queue(_item(base, JobState.FAILED), spec(etag="e2"), **rules)


def _item(base: JobItem, state: JobState, **changes: object) -> JobItem:
    return replace(base, state=state, **changes)  # type: ignore[arg-type]


def test_job_ids_are_stable_and_distinct() -> None:
    assert job_id("a", "b", "c", "d") == job_id("a", "b", "c", "d")
    assert job_id("a", "b/c", "d", "e") != job_id("a/b", "c", "d", "e")
    assert len({job_id("s", f"k{i}", "d", f"k{i}") for i in range(1000)}) == 1000


def test_metric_lines_are_embedded_metric_format() -> None:
    stats, counters = Stats(), ClusterCounters()
    lines: list[str] = []
    emitter = MetricsEmitter(
        stats,
        counters,
        lines.append,
        interval=60,
        dimensions={"Mode": "worker"},
        properties={"WorkerId": "w1"},
    )
    stats.started()
    stats.sent(1000)
    stats.finished(1000, ok=True, progressed=1000)
    counters.add(messages_received=2, errors=1)
    emitter.emit()
    stats.sent(5)
    emitter.emit()
    first, second = (json.loads(line) for line in lines)
    meta = first["_aws"]["CloudWatchMetrics"][0]
    assert meta["Namespace"] == "Longbow" and meta["Dimensions"] == [["Mode"]]
    names = {m["Name"] for m in meta["Metrics"]}
    assert {"BytesSent", "ObjectsCopied", "Errors", "Throughput"} <= names
    assert all(name in first for name in names)
    assert (first["BytesSent"], first["ObjectsCopied"], first["Errors"]) == (1000, 1, 1)
    assert (second["BytesSent"], second["ObjectsCopied"]) == (5, 0)  # changes, not totals
    assert first["Mode"] == "worker" and first["WorkerId"] == "w1"
    assert isinstance(first["_aws"]["Timestamp"], int)


def test_json_log_lines() -> None:
    record = logging.LogRecord("s3longbow.x", logging.INFO, __file__, 1, "copied %s", ("k",), None)
    record.fields = {"event": "job", "bytes": 3}
    line = json.loads(JsonLogFormatter({"worker": "w"}).format(record))
    assert line["message"] == "copied k" and line["level"] == "INFO"
    assert (line["event"], line["bytes"], line["worker"]) == ("job", 3, "w")


def test_ignore_patterns_apply_to_events() -> None:
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "src"}, "object": {"key": "in/x.tmp", "size": 1}},
                }
            ]
        }
    )
    parsed = parse_message(body, ROUTES[:1], IgnoreRules(["*.tmp"]))
    assert not parsed.jobs and parsed.ignored == 1 and not parsed.problems


def test_filters_apply_to_events_by_key_size_and_time() -> None:
    now = time.time()

    def created(key: str, size: int | None, age: float) -> dict[str, object]:
        obj: dict[str, object] = {"key": key}
        if size is not None:
            obj["size"] = size
        when = datetime.fromtimestamp(now - age, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {
            "eventName": "ObjectCreated:Put",
            "eventTime": when,
            "s3": {"bucket": {"name": "src"}, "object": obj},
        }

    def removed(key: str) -> dict[str, object]:
        return {
            "eventName": "ObjectRemoved:Delete",
            "s3": {"bucket": {"name": "src"}, "object": {"key": key}},
        }

    filters = FilterSpec(
        rules=(FilterRule(False, "/logs/", "--exclude"),),
        max_size=100,
        max_age=parse_age("1d"),
    )
    records = [
        created("in/a.jpg", 10, 60),  # taken
        created("in/logs/x", 10, 60),  # its key is left out
        created("in/big", 1000, 60),  # too large
        created("in/unsized", None, 60),  # no size: judged by its key and time
        created("in/stale", 10, 3 * 86400),  # an event replayed days late: too old
        removed("in/gone"),  # a removal is judged by its key alone
        removed("in/logs/y"),
    ]
    # Ages are measured when the event is judged: the worker's filters have no fixed `now`.
    parsed = parse_message(json.dumps({"Records": records}), ROUTES[:1], None, Filters(filters))
    assert sorted(j.src_key for j in parsed.jobs) == ["in/a.jpg", "in/unsized"]
    assert [r.src_key for r in parsed.removals] == ["in/gone"]
    assert parsed.ignored == 4 and not parsed.problems
