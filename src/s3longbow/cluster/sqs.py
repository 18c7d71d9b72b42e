"""The SQS adapter: send job messages in checked batches, long-poll, change visibility,
delete, move poison messages to the dead-letter queue with their reason, and report depths.

Every entry of every SendMessageBatch is checked: entries SQS failed to take are sent again
with backoff, and an entry it refuses outright stops the sender with the reason; none is ever
dropped.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3longbow.cluster.config import ClusterSettings
from s3longbow.errors import ConfigError, FatalError, TransientError

from .aws import error_code, translate, translated
from .messages import SQS_MAX_BYTES

log = logging.getLogger(__name__)

BATCH_ENTRIES = 10  # SendMessageBatch, DeleteMessageBatch and ReceiveMessage take ten at most
SEND_ATTEMPTS = 8
REASON_ATTRIBUTE = "LongbowReason"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the longest SQS keeps a message
_GONE_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.MessageNotInflight",
        "MessageNotInflight",
        "InvalidParameterValue",
    }
)


@dataclass(frozen=True, slots=True)
class Received:
    """A message as received: its body and what settles it later (the receipt handle)."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Approximate message counts of a queue."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class SendFailed(FatalError):
    """Some job messages of a batch could not be sent; `unsent` lists their positions."""

    def __init__(self, message: str, unsent: list[int], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.unsent = unsent


class MessageQueue:
    """One job queue and its dead-letter queue.

    Args:
        client: A boto3 SQS client.
        url: The job queue's URL.
        dead_letter_url: The dead-letter queue's URL, if known.
        max_receive_count: Deliveries before the redrive policy moves a message aside (None
            when the queue has no redrive policy).
        retention_seconds: How long the queue keeps a message.
        sleep: Waits between send retries (replaced in tests).
    """

    def __init__(
        self,
        client: Any,
        url: str,
        *,
        dead_letter_url: str | None = None,
        max_receive_count: int | None = None,
        retention_seconds: int = 4 * 24 * 3600,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.url = url
        self.dead_letter_url = dead_letter_url
        self.max_receive_count = max_receive_count
        self.retention_seconds = retention_seconds
        self._sleep = sleep

    @classmethod
    def open(cls, client: Any, cluster: ClusterSettings) -> MessageQueue:
        """Find the queue, its redrive policy and its dead-letter queue.

        Raises:
            FatalError: The queue does not exist or cannot be read.
        """
        where = f"opening queue {cluster.queue}"
        with translated(where, fatal=True):
            url = (
                cluster.queue_url or client.get_queue_url(QueueName=cluster.queue_name)["QueueUrl"]
            )
            attrs = client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["RedrivePolicy", "MessageRetentionPeriod"]
            ).get("Attributes", {})
        redrive: dict[str, Any] = {}
        if attrs.get("RedrivePolicy"):
            try:
                redrive = json.loads(attrs["RedrivePolicy"])
            except ValueError:
                log.warning("queue %s has an unreadable redrive policy", url)
        dlq_url = cluster.dead_letter_queue_url
        with translated(f"finding the dead-letter queue of {url}", fatal=True):
            if dlq_url is None and cluster.dead_letter_queue_name:
                dlq_url = client.get_queue_url(QueueName=cluster.dead_letter_queue_name)["QueueUrl"]
            if dlq_url is None and redrive.get("deadLetterTargetArn"):
                arn = str(redrive["deadLetterTargetArn"]).split(":")
                dlq_url = client.get_queue_url(QueueName=arn[-1], QueueOwnerAWSAccountId=arn[4])[
                    "QueueUrl"
                ]
        max_receive = redrive.get("maxReceiveCount")
        return cls(
            client,
            url,
            dead_letter_url=dlq_url,
            max_receive_count=int(max_receive) if max_receive else None,
            retention_seconds=int(attrs.get("MessageRetentionPeriod") or 4 * 24 * 3600),
        )

    # -- sending ----------------------------------------------------------------------------

    def send_batch(self, bodies: Sequence[str]) -> list[str]:
        """Send up to ten bodies (at most 256 KiB together) in one SendMessageBatch; entries
        SQS failed to take are sent again with backoff. Returns the message ids.

        Raises:
            SendFailed: An entry was refused as invalid, or still failed after
                SEND_ATTEMPTS tries; `unsent` says which.
        """
        if len(bodies) > BATCH_ENTRIES:
            raise ValueError("at most ten messages per batch")
        if sum(len(b.encode()) for b in bodies) > SQS_MAX_BYTES:
            raise ValueError("a batch may carry at most 256 KiB")
        ids: dict[int, str] = {}
        todo = list(range(len(bodies)))
        last_error = ""
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                self._sleep(_backoff(attempt))
            entries = [{"Id": str(i), "MessageBody": bodies[i]} for i in todo]
            try:
                resp = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                error = translate(exc, f"sending job messages to {self.url}")
                if not isinstance(error, TransientError):
                    raise SendFailed(error.message, todo, hint=error.hint) from None
                last_error = error.message
                log.warning("sending %d job message(s) failed: %s; retrying", len(todo), error)
                continue
            for ok in resp.get("Successful", ()):
                ids[int(ok["Id"])] = ok["MessageId"]
            failed = resp.get("Failed", ())
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:
                first = refused[0]
                raise SendFailed(
                    f"SQS refused job message(s): {first.get('Code')} ({first.get('Message')})",
                    [int(f["Id"]) for f in failed],
                    hint="check the queue's maximum message size and permissions",
                )
            todo = [int(f["Id"]) for f in failed]
            if not todo:
                return [ids[i] for i in range(len(bodies))]
            last_error = f"{failed[0].get('Code')} ({failed[0].get('Message')})"
            log.warning("SQS did not take %d job message(s) (%s); retrying", len(todo), last_error)
        raise SendFailed(
            f"{len(todo)} job message(s) could not be sent to {self.url} after "
            f"{SEND_ATTEMPTS} attempts: {last_error}",
            todo,
            hint="check SQS throttling and the network, then run `longbow send` again",
        )

    # -- receiving and settling -------------------------------------------------------------

    def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Received]:
        """Long-poll for up to `max_messages` (at most ten) messages."""
        with translated(f"receiving from {self.url}"):
            resp = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(BATCH_ENTRIES, max_messages)),
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        out = []
        for m in resp.get("Messages", ()):
            attrs = m.get("Attributes", {})
            sent = attrs.get("SentTimestamp")
            out.append(
                Received(
                    message_id=m["MessageId"],
                    receipt_handle=m["ReceiptHandle"],
                    body=m.get("Body", ""),
                    receive_count=int(attrs.get("ApproximateReceiveCount", 1)),
                    sent_at=int(sent) / 1000 if sent else None,
                )
            )
        return out

    def change_visibility(self, message: Received, seconds: float) -> bool:
        """Hide the message for `seconds` more (0: visible now); False when it is gone."""
        seconds = int(max(0, min(43_200, round(seconds))))
        try:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds
            )
        except ClientError as exc:
            if error_code(exc) in _GONE_CODES:
                return False
            raise translate(
                exc, f"changing the visibility of message {message.message_id}"
            ) from None
        except BotoCoreError as exc:
            raise translate(
                exc, f"changing the visibility of message {message.message_id}"
            ) from None
        return True

    def delete(self, message: Received) -> bool:
        """Delete a settled message; False when its receipt handle is no longer valid."""
        try:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)
        except ClientError as exc:
            if error_code(exc) in _GONE_CODES:
                return False
            raise translate(exc, f"deleting message {message.message_id}") from None
        except BotoCoreError as exc:
            raise translate(exc, f"deleting message {message.message_id}") from None
        return True

    def send_to_dead_letter(self, message: Received, reason: str) -> None:
        """Put a copy of the message on the dead-letter queue, with the reason attached."""
        if not self.dead_letter_url:
            raise ConfigError(
                f"queue {self.url} has no dead-letter queue to move poison messages to",
                hint="run `longbow cluster-init`, or set [cluster] dead_letter_queue_url",
            )
        attributes = {
            REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000] or "-"},
            "LongbowMessageId": {"DataType": "String", "StringValue": message.message_id},
            "LongbowReceiveCount": {
                "DataType": "Number",
                "StringValue": str(message.receive_count),
            },
        }
        body = message.body or "-"
        if len(body.encode()) > SQS_MAX_BYTES - 2048:
            body = body[: (SQS_MAX_BYTES - 4096) // 4]  # keep the start; the reason says why
        with translated(f"moving message {message.message_id} to {self.dead_letter_url}"):
            self.client.send_message(
                QueueUrl=self.dead_letter_url, MessageBody=body, MessageAttributes=attributes
            )

    def move_to_dead_letter(self, message: Received, reason: str) -> None:
        """Copy the message to the dead-letter queue with its reason, then delete it here."""
        self.send_to_dead_letter(message, reason)
        self.delete(message)

    def depth(self, url: str | None = None) -> QueueDepth:
        """Approximate counts of this queue (or of another, e.g. the dead-letter queue)."""
        with translated(f"reading the attributes of {url or self.url}"):
            attrs = self.client.get_queue_attributes(
                QueueUrl=url or self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            ).get("Attributes", {})
        return QueueDepth(
            visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        )


def _backoff(attempt: int) -> float:
    """Full jitter, doubling from 0.2 s and capped at 20 s."""
    return random.uniform(0, min(20.0, 0.2 * 2**attempt))


def batches(bodies: Sequence[str]) -> list[list[int]]:
    """Split bodies into SendMessageBatch calls: ten entries and 256 KiB at most each."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, body in enumerate(bodies):
        n = len(body.encode())
        if current and (len(current) >= BATCH_ENTRIES or size + n > SQS_MAX_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        out.append(current)
    return out


def queue_name_of(cluster: ClusterSettings) -> str:
    """The job queue's name, from queue_name or the last segment of queue_url."""
    return cluster.queue_name or (cluster.queue_url or "").rstrip("/").rsplit("/", 1)[-1]


def dead_letter_name_of(cluster: ClusterSettings) -> str:
    if cluster.dead_letter_queue_name:
        return cluster.dead_letter_queue_name
    if cluster.dead_letter_queue_url:
        return cluster.dead_letter_queue_url.rstrip("/").rsplit("/", 1)[-1]
    return queue_name_of(cluster) + "-dlq"


def ensure_queues(client: Any, cluster: ClusterSettings) -> tuple[str, str]:
    """Create (or update) the dead-letter queue and the job queue with its redrive policy.

    Idempotent: existing queues get the configured visibility timeout and redrive policy.
    Returns the URLs of the job queue and of the dead-letter queue.
    """
    dlq_url = _ensure_queue(
        client, dead_letter_name_of(cluster), {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    )
    with translated(f"reading the ARN of {dlq_url}", fatal=True):
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(cluster.max_receive_count)}
    url = _ensure_queue(
        client,
        queue_name_of(cluster),
        {
            "VisibilityTimeout": str(cluster.visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
        },
    )
    return url, dlq_url


def _ensure_queue(client: Any, name: str, attributes: dict[str, str]) -> str:
    where = f"creating queue {name!r}"
    try:
        url = str(client.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        if error_code(exc) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise translate(exc, where, fatal=True) from None
        with translated(where, fatal=True):
            return str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    except BotoCoreError as exc:
        raise translate(exc, where, fatal=True) from None
    with translated(f"updating queue {name!r}", fatal=True):
        client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


__all__ = [
    "BATCH_ENTRIES",
    "REASON_ATTRIBUTE",
    "MessageQueue",
    "QueueDepth",
    "Received",
    "SendFailed",
    "batches",
    "dead_letter_name_of",
    "ensure_queues",
    "queue_name_of",
]
