"""The Lambda handler, invoked in this process with SQS events built from messages really
received from the queue, and a context whose remaining time runs out."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from s3longbow.config import MiB
from s3longbow.handlers import sqs_worker
from s3longbow.model import JobState

from .conftest import SRC_PREFIX, Cluster, md5
from .test_cluster_workers import SlowSource


class FakeContext:
    """Lambda's context: a request id and a clock running down to a deadline."""

    def __init__(self, seconds: float, request_id: str) -> None:
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def receive_event(cluster: Cluster) -> dict[str, Any]:
    """An SQS event as Lambda's poller builds it, from a message received for real."""
    resp = cluster.sqs.receive_message(
        QueueUrl=cluster.queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=5,
        VisibilityTimeout=30,
        MessageSystemAttributeNames=["All"],
    )
    arn = cluster.sqs.get_queue_attributes(QueueUrl=cluster.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in resp.get("Messages", ())
        ]
    }


def settle_like_lambda(cluster: Cluster, event: dict[str, Any], result: dict[str, Any]) -> None:
    """Lambda deletes every record not reported as failed."""
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for r in event["Records"]:
        if r["messageId"] not in failed:
            cluster.sqs.delete_message(QueueUrl=cluster.queue_url, ReceiptHandle=r["receiptHandle"])


@pytest.fixture()
def lambda_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LONGBOW_CONFIG", str(cluster.config_path))
    monkeypatch.setenv("LONGBOW_TIME_MARGIN_SECONDS", "1.5")
    monkeypatch.setenv("LONGBOW_PART_THREADS", "1")
    yield
    sqs_worker.close_runtime()


def test_lambda_resumes_a_large_object_across_two_invocations(
    cluster: Cluster, lambda_env: None
) -> None:
    data = os.urandom(30 * MiB)  # six 5 MiB parts
    cluster.src.put(SRC_PREFIX + "large.bin", data)
    with SlowSource(cluster, 0.5) as source:
        cluster.src_endpoint_url = source.proxy.url
        cluster.write_config()
        assert cluster.send().messages_sent == 1

        # First invocation: about 2 s before the margin is reached, not enough for six parts.
        event = receive_event(cluster)
        (message_id,) = [r["messageId"] for r in event["Records"]]
        first = sqs_worker.handler(event, FakeContext(3.5, "req-1"))
        assert first == {"batchItemFailures": [{"itemIdentifier": message_id}]}
        settle_like_lambda(cluster, event, first)
        item = cluster.job("large.bin")
        assert item is not None and item.state is JobState.PENDING and item.upload_id
        sent_parts = cluster.parts("large.bin")
        assert 1 <= sent_parts < 6
        assert cluster.dst.keys() == []

        # Second invocation: the record is visible again at once; the upload is resumed.
        source.slow.clear()
        event = receive_event(cluster)
        assert [r["messageId"] for r in event["Records"]] == [message_id]
        assert event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
        second = sqs_worker.handler(event, FakeContext(120, "req-2"))
        assert second == {"batchItemFailures": []}
        settle_like_lambda(cluster, event, second)

    item = cluster.job("large.bin")
    assert item is not None and item.state is JobState.DONE and item.verified
    assert item.bytes_reused >= sent_parts * 5 * MiB
    assert item.bytes_sent == len(data) - item.bytes_reused
    assert cluster.copy_digests() == {"large.bin": md5(data)}
    assert cluster.depth() == 0


def test_lambda_moves_a_poison_record_aside_and_reports_success(
    cluster: Cluster, lambda_env: None
) -> None:
    cluster.send_raw("{broken")
    event = receive_event(cluster)
    result = sqs_worker.handler(event, FakeContext(60, "req-3"))
    assert result == {"batchItemFailures": []}  # Lambda deletes it; a copy is on the DLQ
    settle_like_lambda(cluster, event, result)
    (dead,) = cluster.dead_letters()
    assert dead["Body"] == "{broken"
    assert cluster.depth() == 0
