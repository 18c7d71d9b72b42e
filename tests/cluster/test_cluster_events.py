"""S3 event notifications and poison messages on the job queue, run by a worker in this
process against the same servers: every shape does the right thing, nothing crashes the
worker, and what cannot be used reaches the dead-letter queue with its reason recorded."""

from __future__ import annotations

import json
import os
from typing import Any

from click.testing import CliRunner

from longbow_testkit.faultproxy import FaultProxy, Faults
from s3longbow.cli.app import cli
from s3longbow.cluster.sqs import REASON_ATTRIBUTE
from s3longbow.config import MiB
from s3longbow.model import JobState

from .conftest import DST_PREFIX, SRC_PREFIX, Cluster


def record(
    bucket: str,
    key: str,
    event: str = "ObjectCreated:Put",
    *,
    size: int | None = None,
    etag: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """One record of an S3 event notification; `key` is given as S3 encodes it."""
    obj: dict[str, Any] = {"key": key, "sequencer": "0055AED6DCD90281E5"}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if version is not None:
        obj["versionId"] = version
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": event,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
    }


def s3_event(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sns(message: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "2f6f6c5a-0000-4000-8000-000000000000",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2024-05-01T12:00:00.000Z",
        }
    )


def eventbridge(bucket: str, key: str, detail_type: str = "Object Created", **obj: Any) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2024-05-01T12:00:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, **obj}},
        }
    )


def job_message(
    cluster: Cluster, key: str, size: int, src_bucket: str | None = None, **entry: Any
) -> str:
    """A job message of one object of the pair (`entry` adds etag, mtime, ...)."""
    obj = {"key": SRC_PREFIX + key, "dst_key": DST_PREFIX + key, "size": size, **entry}
    return json.dumps(
        {
            "longbow": 1,
            "src_bucket": src_bucket or cluster.src.name,
            "dst_bucket": cluster.dst.name,
            "objects": [obj],
        }
    )


def put(cluster: Cluster, key: str, data: bytes) -> tuple[int, str]:
    cluster.src.put(SRC_PREFIX + key, data)
    head = cluster.src.client.head_object(Bucket=cluster.src.name, Key=SRC_PREFIX + key)
    return len(data), head["ETag"]


def test_s3_events_of_every_shape_become_jobs(cluster: Cluster) -> None:
    b = cluster.src.name
    data = {
        "multi/1": os.urandom(100),
        "multi/2": os.urandom(200),
        "a b+c.txt": os.urandom(300),
        "ünï.txt": os.urandom(400),
        "sns.txt": os.urandom(500),
        "eb file.txt": os.urandom(6 * MiB),  # multipart
        "versioned.txt": os.urandom(700),
        "tagged.txt": os.urandom(800),
    }
    meta = {k: put(cluster, k, v) for k, v in data.items()}
    cluster.dst.put(DST_PREFIX + "gone.txt", b"the copy of an object removed at the source")
    size, etag = meta["multi/1"]
    size2, etag2 = meta["multi/2"]
    bodies = [
        # Every record of a multi-record message is a job.
        s3_event(
            record(b, "data/multi/1", size=size, etag=etag),
            record(b, "data/multi/2", "ObjectCreated:CompleteMultipartUpload", size=size2),
        ),
        # Keys are form-encoded: "+" is a space, %2B a plus, UTF-8 percent-encoded.
        s3_event(record(b, "data/a+b%2Bc.txt", size=300)),
        s3_event(record(b, "data/%C3%BCn%C3%AF.txt", size=400)),
        sns(s3_event(record(b, "data/sns.txt", size=500))),
        eventbridge(b, "data/eb+file.txt", size=6 * MiB, etag=meta["eb file.txt"][1]),
        # No size or ETag, a version id: the worker asks the source.
        s3_event(record(b, "data/versioned.txt", version="3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")),
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": b}),
        s3_event(record(b, "data/tagged.txt", "ObjectTagging:Put")),
        # An object removed at the source, with delete_removed off: the copy stays.
        s3_event(record(b, "data/gone.txt", "ObjectRemoved:Delete")),
        # A key under no configured pair.
        s3_event(record(b, "elsewhere/x.txt", size=1)),
    ]
    for body in bodies:
        cluster.send_raw(body)

    report = cluster.drain()

    copied = {k: v for k, v in cluster.source_digests().items() if k != "tagged.txt"}
    assert cluster.copy_digests() == {**copied, "gone.txt": cluster.copy_digests()["gone.txt"]}
    assert "tagged.txt" not in cluster.copy_digests()
    assert report.counters["test_events"] == 1
    assert report.counters["events_ignored"] == 1
    jobs = {i.src_key: i for i in cluster.items("copy")}
    assert {k.removeprefix(SRC_PREFIX) for k in jobs} == set(data) - {"tagged.txt"}
    assert all(i.state is JobState.DONE for i in jobs.values())
    assert jobs["data/versioned.txt"].version_id == "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"
    (removal,) = cluster.items("remove")
    assert removal.state is JobState.SKIPPED and "delete_removed is off" in (removal.reason or "")

    dead = cluster.dead_letters()
    assert len(dead) == 1
    reason = dead[0]["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert "no configured pair matches" in reason and "elsewhere/x.txt" in reason
    (problem,) = cluster.items("message")
    assert problem.state is JobState.FAILED and "no configured pair" in (problem.reason or "")
    assert cluster.depth() == 0


def test_removal_events_delete_copies_only_when_allowed(cluster: Cluster) -> None:
    cluster.write_config(delete_removed=True)
    b = cluster.src.name
    cluster.dst.put(DST_PREFIX + "removed.txt", b"copy")
    cluster.dst.put(DST_PREFIX + "back.txt", b"copy")
    put(cluster, "back.txt", b"the source object was written again after its removal")
    cluster.send_raw(s3_event(record(b, "data/removed.txt", "ObjectRemoved:DeleteMarkerCreated")))
    cluster.send_raw(eventbridge(b, "data/back.txt", "Object Deleted"))

    cluster.drain()

    assert sorted(cluster.dst.keys()) == [DST_PREFIX + "back.txt"]
    removals = {i.src_key: i for i in cluster.items("remove")}
    assert removals["data/removed.txt"].state is JobState.DONE
    assert removals["data/back.txt"].state is JobState.SKIPPED
    assert "exists again" in (removals["data/back.txt"].reason or "")
    assert cluster.depth() == 0 and cluster.dead_letters() == []


def test_events_the_filters_leave_out_copy_and_delete_nothing(cluster: Cluster) -> None:
    cluster.write_config(transfer={"exclude": "logs/", "max_size": "1K"}, delete_removed=True)
    b = cluster.src.name
    small, small_etag = put(cluster, "a.txt", b"a")
    big, big_etag = put(cluster, "big.bin", os.urandom(2000))
    log, log_etag = put(cluster, "logs/x", b"x")
    cluster.dst.put(DST_PREFIX + "logs/old", b"a copy the filters leave alone")
    cluster.send_raw(
        s3_event(
            record(b, "data/a.txt", size=small, etag=small_etag),
            record(b, "data/big.bin", size=big, etag=big_etag),
            record(b, "data/logs/x", size=log, etag=log_etag),
            record(b, "data/logs/old", "ObjectRemoved:Delete"),
        )
    )

    report = cluster.drain()

    assert report.counters["events_ignored"] == 3
    assert sorted(cluster.dst.keys()) == [DST_PREFIX + "a.txt", DST_PREFIX + "logs/old"]
    assert [i.src_key for i in cluster.items()] == ["data/a.txt"]
    assert cluster.depth() == 0 and cluster.dead_letters() == []


def test_poison_messages_reach_the_dead_letter_queue_with_their_reason(
    cluster: Cluster,
) -> None:
    b, d = cluster.src.name, cluster.dst.name
    poison = {
        "not json": "this is { not json",
        "a JSON list": "[1, 2, 3]",
        "unknown shape": json.dumps({"hello": "world"}),
        "missing fields": json.dumps({"longbow": 1, "src_bucket": b}),
        "wrong types": json.dumps(
            {
                "longbow": 1,
                "src_bucket": b,
                "dst_bucket": d,
                "objects": [{"key": "data/x", "dst_key": "copy/x", "size": "12"}],
            }
        ),
        "newer format": json.dumps({"longbow": 2, "src_bucket": b, "dst_bucket": d, "objects": []}),
        "oversized": json.dumps({"Records": [], "padding": "x" * 300_000}),
        "record without s3": json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
        "SNS without JSON": sns("not json at all"),
        "unknown S3 event": json.dumps({"Service": "Amazon S3", "Event": "s3:SomethingElse"}),
    }
    ids = {cluster.send_raw(body): what for what, body in poison.items()}

    report = cluster.drain()  # never raises, never crashes

    assert report.counters["messages_moved_aside"] == len(poison)
    assert cluster.depth() == 0
    dead = cluster.dead_letters()
    assert len(dead) == len(poison)
    reasons = {
        ids[m["MessageAttributes"]["LongbowMessageId"]["StringValue"]]: m["MessageAttributes"][
            REASON_ATTRIBUTE
        ]["StringValue"]
        for m in dead
    }
    assert set(reasons) == set(poison)
    assert "not JSON" in reasons["not json"]
    assert "expected an object" in reasons["a JSON list"]
    assert "unknown message shape" in reasons["unknown shape"]
    assert "dst_bucket" in reasons["missing fields"]
    assert "size must be a whole number" in reasons["wrong types"]
    assert "format 2 is not supported" in reasons["newer format"]
    assert "more than the 262144 accepted" in reasons["oversized"]
    assert "no s3 member" in reasons["record without s3"]
    assert "Message is not JSON" in reasons["SNS without JSON"]
    assert "unknown S3 event" in reasons["unknown S3 event"]
    recorded = cluster.items("message")
    assert len(recorded) == len(poison)
    assert all(i.state is JobState.FAILED and i.reason for i in recorded)

    status = CliRunner().invoke(
        cli, ["status", "--cluster", "--config", str(cluster.config_path), "--json"]
    )
    assert status.exit_code == 1  # failures are listed
    summary = json.loads(status.stdout)
    assert summary["jobs"]["failed"] == len(poison)
    assert summary["dead_letter_queue"]["visible"] + summary["dead_letter_queue"][
        "in_flight"
    ] == len(poison)


def test_a_job_failing_on_every_delivery_is_recorded_and_dead_lettered(
    cluster: Cluster,
) -> None:
    put(cluster, "flaky.txt", os.urandom(1000))
    with FaultProxy(cluster.src.endpoint.url, Faults()) as proxy:
        cluster.src_endpoint_url = proxy.url
        cluster.write_config(max_receive_count=2, transfer={"part_attempts": 1})
        # cluster-init again: the redrive policy now moves a message after two deliveries.
        init = CliRunner().invoke(cli, ["cluster-init", "--config", str(cluster.config_path)])
        assert init.exit_code == 0, init.output
        assert cluster.send().objects_queued == 1
        # From now on every read of the source answers 500: each delivery fails transiently.
        proxy.set_faults(Faults(internal_error=1.0, only_methods={"GET"}))
        report = cluster.drain()

    assert report.counters["attempts_failed"] == 2
    item = cluster.job("flaky.txt")
    assert item is not None and item.state is JobState.FAILED
    assert item.attempts == 2
    assert "delivery 2 of 2" in (item.reason or "") and "dead-letter" in (item.reason or "")
    assert cluster.depth() == 0
    (dead,) = cluster.dead_letters()
    assert json.loads(dead["Body"])["objects"][0]["key"] == SRC_PREFIX + "flaky.txt"
    # A failed job is queued again only when asked to.
    cluster.src_endpoint_url = None
    cluster.write_config()
    assert cluster.send().objects_queued == 0
    assert cluster.send(retry_failed=True).objects_queued == 1


def test_a_credentials_parameter_that_is_not_json_is_a_config_error(cluster: Cluster) -> None:
    cluster.ssm.put_parameter(
        Name=cluster.credentials_parameter,
        Type="SecureString",
        Value="AKIA-not-json s3cr3t-value",
        Overwrite=True,
    )
    result = CliRunner().invoke(
        cli, ["worker", "--config", str(cluster.config_path), "--exit-when-idle"]
    )
    assert result.exit_code == 2
    assert "does not hold valid JSON" in result.stderr
    assert "s3cr3t" not in result.stderr and "s3cr3t" not in result.output


def test_jobs_for_a_missing_source_end_failed_with_or_without_an_etag(cluster: Cluster) -> None:
    b, d = cluster.src.name, cluster.dst.name
    etag = "9b2cf535f27731c974343645a3985328"
    # None of these objects exists at the source: each job must end failed with its reason,
    # whether its message named the source's ETag or left the worker to ask for it.
    gone = {
        "with-etag.txt": job_message(cluster, "with-etag.txt", 12, etag=etag),
        "without-etag.txt": job_message(cluster, "without-etag.txt", 12),
        "empty.txt": job_message(cluster, "empty.txt", 0),  # like the docs' example b.jpg
        "event.txt": s3_event(record(b, "data/event.txt", size=12)),  # deleted before the read
    }
    for body in gone.values():
        cluster.send_raw(body)

    report = cluster.drain()

    reasons = {
        key: f"s3://{b}/{SRC_PREFIX}{key}: the source object no longer exists" for key in gone
    }
    for key in gone:
        item = cluster.job(key)
        assert item is not None, f"{key}: no job item"
        assert (item.kind, item.state, item.reason) == ("copy", JobState.FAILED, reasons[key])
        assert item.attempts == 1
    assert report.objects_failed == len(gone) and report.counters["jobs_failed"] == len(gone)
    assert report.counters["events_ignored"] == 0
    assert cluster.depth() == 0 and cluster.dead_letters() == []
    assert cluster.items("message") == [] and cluster.dst.keys() == []

    status = CliRunner().invoke(
        cli, ["status", "--cluster", "--config", str(cluster.config_path), "--json"]
    )
    assert status.exit_code == 1, status.output
    summary = json.loads(status.stdout)
    assert summary["jobs"]["failed"] == len(gone)
    listed = {f["src"]: f for f in summary["failed"]}
    for key, reason in reasons.items():
        failure = listed[f"s3://{b}/{SRC_PREFIX}{key}"]
        assert (failure["kind"], failure["reason"]) == ("copy", reason)
        assert failure["dst"] == f"s3://{d}/{DST_PREFIX}{key}"


def test_a_duplicate_without_an_etag_leaves_a_finished_job_done(cluster: Cluster) -> None:
    size, _ = put(cluster, "copied.txt", os.urandom(100))
    body = job_message(cluster, "copied.txt", size)
    cluster.send_raw(body)
    cluster.drain()
    first = cluster.job("copied.txt")
    assert first is not None and first.state is JobState.DONE
    # The source is deleted, then the message comes again (SQS delivers at least once).
    cluster.src.client.delete_object(Bucket=cluster.src.name, Key=SRC_PREFIX + "copied.txt")
    cluster.send_raw(body)

    report = cluster.drain()

    again = cluster.job("copied.txt")
    assert again is not None and again.state is JobState.DONE and again.rev == first.rev
    assert report.counters["jobs_duplicate"] == 1 and report.objects_failed == 0
    assert cluster.depth() == 0 and cluster.dead_letters() == []


def test_a_source_bucket_that_cannot_be_read_is_recorded_on_the_last_delivery(
    cluster: Cluster,
) -> None:
    cluster.write_config(max_receive_count=2)
    init = CliRunner().invoke(cli, ["cluster-init", "--config", str(cluster.config_path)])
    assert init.exit_code == 0, init.output
    missing = f"{cluster.src.name}-missing"
    # With an ETag the claim fails; without one the HEAD that asks for it fails first.
    ids = {
        cluster.send_raw(job_message(cluster, "a.txt", 3, missing, etag="e")): "with etag",
        cluster.send_raw(job_message(cluster, "b.txt", 3, missing)): "without etag",
    }

    cluster.drain()

    assert cluster.depth() == 0
    dead = {ids[m["MessageId"]] for m in cluster.dead_letters()}
    assert dead == {"with etag", "without etag"}
    recorded = {ids[i.message_id or ""]: i for i in cluster.items("message")}
    assert set(recorded) == {"with etag", "without etag"}
    for item in recorded.values():
        assert item.state is JobState.FAILED and missing in (item.reason or "")
