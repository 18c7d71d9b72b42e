"""Malformed, oversized and oddly encoded messages on the job queue, all read by one real
`longbow worker` process (moto's SQS, DynamoDB and SSM; SeaweedFS buckets).

Every message is sent first, then one worker drains the queue. It must end normally, and each
message must end as its case says: copied, dropped quietly (a test event), or moved to the
dead-letter queue with its reason, which is also recorded as a failed item of the job table.
"""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.servers import LocalServer
from s3longbow.cluster.aws import ControlPlane
from s3longbow.cluster.dynamodb import JobItem
from s3longbow.cluster.service import init_cluster
from s3longbow.cluster.sqs import REASON_ATTRIBUTE
from s3longbow.model import JobState

from ..cluster.conftest import DST_PREFIX, SRC_PREFIX, Cluster
from ..conftest import cli_env, new_bucket


def record(bucket: str, key: Any, event: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One S3 event record; `key` as S3 writes it (form-encoded)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": event,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3}},
    }


def s3_event(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sns(message: Any) -> str:
    return json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": message})


def eventbridge(detail_type: Any = "Object Created", **detail: Any) -> str:
    return json.dumps(
        {"detail-type": detail_type, "source": "aws.s3", "time": "2024-05-01T12:00:00Z"}
        | {"detail": detail}
    )


def job_message(src: str, dst: str, **entry: Any) -> str:
    obj = {"key": SRC_PREFIX + "x", "dst_key": DST_PREFIX + "x", "size": 3, **entry}
    return json.dumps({"longbow": 1, "src_bucket": src, "dst_bucket": dst, "objects": [obj]})


def binary_junk() -> str:
    """Random characters SQS accepts in a body, none of them making JSON."""
    rng = random.Random(7)
    return "".join(
        chr(rng.choice((rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0xFFFD))))
        for _ in range(3000)
    )


@dataclass(frozen=True)
class Case:
    """One message and what must become of it."""

    body: str
    dead: str | None = None  # a reason the dead-letter queue and the job table must give
    copied: tuple[str, ...] = ()  # source keys (under the prefix) that must arrive


def cases(src: str, dst: str) -> dict[str, Case]:
    """Every message of the catalogue, by name; `src`/`dst` are the pair's buckets."""
    jm = lambda **e: job_message(src, dst, **e)  # noqa: E731
    return {
        "binary junk": Case(binary_junk(), dead="not JSON"),
        "base64 of binary": Case(base64.b64encode(os.urandom(900)).decode(), dead="not JSON"),
        "JSON nested 100,000 deep": Case("[" * 100_000 + "]" * 100_000, dead="not JSON"),
        "over 256 KiB in bytes, not in characters": Case(
            json.dumps({"p": "é" * 131_100}, ensure_ascii=False), dead="more than the 262144"
        ),
        "size NaN": Case(jm(size=float("nan")), dead="size must be a whole number"),
        "negative size": Case(jm(size=-1), dead="size must be a whole number"),
        "size true": Case(jm(size=True), dead="size must be a whole number"),
        "objects not a list": Case(
            json.dumps({"longbow": 1, "src_bucket": src, "dst_bucket": dst, "objects": {}}),
            dead="objects must be a non-empty list",
        ),
        "empty key": Case(jm(key=""), dead="key must be a non-empty string"),
        "key over 1,024 bytes": Case(jm(key=SRC_PREFIX + "k" * 1020), dead="longer than 1024"),
        "bucket a number": Case(
            json.dumps({"longbow": 1, "src_bucket": 7, "dst_bucket": dst, "objects": [{}]}),
            dead="src_bucket must be a non-empty string",
        ),
        "bucket with a line break": Case(
            json.dumps(
                {
                    "longbow": 1,
                    "src_bucket": src,
                    "dst_bucket": f"{dst}\r\nX-Injected: 1",
                    "objects": [{"key": SRC_PREFIX + "a", "dst_key": "a", "size": 1}],
                }
            ),
            dead="dst_bucket: ",
        ),
        "bucket with a slash": Case(
            json.dumps(
                {
                    "longbow": 1,
                    "src_bucket": f"{src}/../x",
                    "dst_bucket": dst,
                    "objects": [{"key": SRC_PREFIX + "a", "dst_key": "a", "size": 1}],
                }
            ),
            dead="is not a valid bucket name",
        ),
        "mtime text": Case(jm(mtime="yesterday"), dead="mtime must be a number"),
        "range past its count": Case(
            jm(range={"index": 3, "count": 3}), dead="range must be an object"
        ),
        "range a string": Case(jm(range="1/3"), dead="range must be an object"),
        "event key with + and %2B": Case(
            s3_event(record(src, SRC_PREFIX + "a+b%2Bc")), copied=("a b+c",)
        ),
        "event key percent-encoded unicode": Case(
            s3_event(record(src, SRC_PREFIX + "%C3%A9t%C3%A9%20%E5%AD%97")), copied=("été 字",)
        ),
        "event key not UTF-8": Case(
            s3_event(record(src, SRC_PREFIX + "%C3%28")), dead="does not decode to UTF-8"
        ),
        "SNS-wrapped s3:TestEvent": Case(
            sns(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": src}))
        ),
        "SNS without Message": Case(
            json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t"}),
            dead="unknown message shape",
        ),
        "SNS Message not a string": Case(sns({"Records": []}), dead="Message is not a string"),
        "SNS in SNS in SNS": Case(
            sns(sns(sns(s3_event(record(src, SRC_PREFIX + "good"))))), dead="nested too deeply"
        ),
        "EventBridge without object": Case(
            eventbridge(bucket={"name": src}), dead="detail.object must be objects"
        ),
        "EventBridge detail-type a number": Case(
            eventbridge(3, bucket={"name": src}, object={"key": "k"}),
            dead="detail-type must be a string",
        ),
        "EventBridge object without key": Case(
            eventbridge(bucket={"name": src}, object={"size": 3}),
            dead="detail.object.key must be a non-empty string",
        ),
        "event for a bucket of no pair": Case(
            s3_event(record("some-other-bucket", SRC_PREFIX + "good")),
            dead="no configured pair matches",
        ),
        "record without eventName": Case(
            json.dumps({"Records": [{"s3": {"bucket": {"name": src}, "object": {"key": "k"}}}]}),
            dead="has no eventName",
        ),
        "one good record and one bad": Case(
            s3_event(record(src, SRC_PREFIX + "good"), record(src, 5)),
            dead="s3.object.key must be a non-empty string",
            copied=("good",),
        ),
        "1,001 records": Case(
            s3_event(*[record(src, f"{SRC_PREFIX}r{i}") for i in range(1001)]),
            dead="1001 records, more than 1000",
        ),
    }


SOURCE_OBJECTS = {"a b+c": b"plus", "été 字": b"unicode", "good": b"good"}


@dataclass
class Outcome:
    """What one worker run made of the catalogue."""

    cluster: Cluster
    cases: dict[str, Case]
    message_ids: dict[str, str]  # case -> SQS message id
    returncode: int
    stderr: str
    reasons: dict[str, str] = field(default_factory=dict)  # case -> dead-letter reason
    items: dict[str, JobItem] = field(default_factory=dict)  # message id -> failed item


@pytest.fixture(scope="module")
def outcome(
    moto: LocalServer,
    seaweed_src: LocalServer,
    seaweed_dst: LocalServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Outcome]:
    src, dst = new_bucket(seaweed_src, "hsrc"), new_bucket(seaweed_dst, "hdst")
    for key, data in SOURCE_OBJECTS.items():
        src.put(SRC_PREFIX + key, data)
    ep = moto.endpoint
    c = Cluster(
        moto=moto,
        src=src,
        dst=dst,
        root=tmp_path_factory.mktemp("hostile-cluster"),
        name=uuid.uuid4().hex[:10],
        sqs=ep.client("sqs"),
        dynamodb=ep.client("dynamodb"),
        ssm=ep.client("ssm"),
    )
    c.ssm.put_parameter(
        Name=c.credentials_parameter,
        Type="SecureString",
        Value=json.dumps(
            {"access_key_id": dst.endpoint.access_key, "secret_access_key": dst.endpoint.secret_key}
        ),
    )
    c.write_config()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "moto")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "moto")
        for name, value in cli_env(src.endpoint, None).items():
            mp.setenv(name, value)
        control = ControlPlane(c.config().cluster)
        try:
            report = init_cluster(c.config(), control)
        finally:
            control.close()
    c.queue_url, c.dlq_url = report.queue_url, report.dead_letter_queue_url
    catalogue = cases(src.name, dst.name)
    ids = {name: c.send_raw(case.body) for name, case in catalogue.items()}

    done = c.run("worker", "--config", str(c.config_path), "--exit-when-idle", timeout=150)

    out = Outcome(c, catalogue, ids, done.returncode, done.stderr)
    by_id = {v: k for k, v in ids.items()}
    for m in c.dead_letters():
        attrs = m["MessageAttributes"]
        name = by_id[attrs["LongbowMessageId"]["StringValue"]]
        out.reasons[name] = attrs[REASON_ATTRIBUTE]["StringValue"]
    out.items = {i.message_id or "": i for i in c.items("message")}
    yield out
    for client in (c.sqs, c.dynamodb, c.ssm):
        client.close()


def test_the_worker_survives_the_whole_catalogue(outcome: Outcome) -> None:
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert "Traceback" not in outcome.stderr
    assert outcome.cluster.depth() == 0  # nothing left behind, nothing stuck in flight
    # Every message is accounted for: dead-lettered exactly when its case says so.
    expected_dead = {name for name, case in outcome.cases.items() if case.dead}
    assert set(outcome.reasons) == expected_dead


@pytest.mark.parametrize("name", sorted(cases("SRC", "DST")))
def test_message(outcome: Outcome, name: str) -> None:
    case = outcome.cases[name]
    message_id = outcome.message_ids[name]
    for key in case.copied:
        assert outcome.cluster.dst.get(DST_PREFIX + key) == SOURCE_OBJECTS[key]
    if case.dead is None:
        assert name not in outcome.reasons
        assert message_id not in outcome.items
        return
    assert case.dead in outcome.reasons[name]
    item = outcome.items[message_id]  # the job table keeps the message's failure too
    assert item.state is JobState.FAILED
    assert case.dead in (item.reason or "")


def test_the_catalogue_is_in_the_readme() -> None:
    readme = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    missing = [name for name in cases("SRC", "DST") if f"| {name} |" not in readme]
    assert not missing
