"""Where a cluster worker's messages come from and how each is settled: long-polled from SQS
(`longbow worker`), or the records of one Lambda invocation."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from s3longbow.errors import LongbowError

from .sqs import MessageQueue, Received

log = logging.getLogger(__name__)


class MessageSource(Protocol):
    """Where messages come from and how each is settled."""

    def receive(self, limit: int) -> list[Received]:
        """Up to `limit` new messages (may wait for them)."""
        ...

    def delete(self, message: Received) -> None:
        """The message is done with."""
        ...

    def release(self, message: Received, delay: float) -> None:
        """The message must come back after `delay` seconds."""
        ...

    def extend(self, message: Received, seconds: int) -> bool:
        """Keep the message invisible `seconds` more; False when it is no longer ours."""
        ...

    def move_aside(self, message: Received, reason: str) -> None:
        """Put the message on the dead-letter queue with the reason; it is done with here."""
        ...

    def exhausted(self) -> bool:
        """Whether no more messages will come (never, for a long-running worker)."""
        ...


class SqsSource:
    """Messages long-polled from the job queue.

    Args:
        queue: The job queue.
        wait_seconds: Long-poll wait of each receive.
        visibility_timeout: Visibility of received messages.
        exit_when_idle: `exhausted` reports True once the queue is empty (nothing visible,
            in flight or delayed) on two checks in a row.
    """

    def __init__(
        self,
        queue: MessageQueue,
        *,
        wait_seconds: int,
        visibility_timeout: int,
        exit_when_idle: bool,
    ) -> None:
        self.queue = queue
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.exit_when_idle = exit_when_idle
        self._idle_checks = 0

    def receive(self, limit: int) -> list[Received]:
        return self.queue.receive(limit, self.wait_seconds, self.visibility_timeout)

    def delete(self, message: Received) -> None:
        self.queue.delete(message)

    def release(self, message: Received, delay: float) -> None:
        self.queue.change_visibility(message, delay)

    def extend(self, message: Received, seconds: int) -> bool:
        return self.queue.change_visibility(message, seconds)

    def move_aside(self, message: Received, reason: str) -> None:
        self.queue.move_to_dead_letter(message, reason)

    def exhausted(self) -> bool:
        if not self.exit_when_idle:
            return False
        # Counts are approximate: the queue must look empty twice, a receive apart.
        self._idle_checks = self._idle_checks + 1 if self.queue.depth().total == 0 else 0
        return self._idle_checks >= 2


class BatchSource:
    """The records of one Lambda invocation. Lambda deletes the records not reported as
    failures, so `delete` only notes success; `release` also reports the record as failed.

    Args:
        messages: The event's records.
        queue: Their queue (visibility changes, the dead-letter queue).
    """

    def __init__(self, messages: Sequence[Received], queue: MessageQueue) -> None:
        self.queue = queue
        self._todo = deque(messages)
        self._all = [m.message_id for m in messages]
        self._ok: set[str] = set()
        self._lock = threading.Lock()

    def receive(self, limit: int) -> list[Received]:
        with self._lock:
            return [self._todo.popleft() for _ in range(min(limit, len(self._todo)))]

    def delete(self, message: Received) -> None:
        with self._lock:
            self._ok.add(message.message_id)

    def release(self, message: Received, delay: float) -> None:
        try:
            self.queue.change_visibility(message, delay)
        except LongbowError as exc:  # it comes back after its visibility timeout anyway
            log.warning("could not change the visibility of %s: %s", message.message_id, exc)

    def extend(self, message: Received, seconds: int) -> bool:
        return self.queue.change_visibility(message, seconds)

    def move_aside(self, message: Received, reason: str) -> None:
        self.queue.send_to_dead_letter(message, reason)
        self.delete(message)

    def exhausted(self) -> bool:
        with self._lock:
            return not self._todo

    def failures(self) -> list[str]:
        """Ids of the records that must come back (everything not settled as done)."""
        with self._lock:
            return [m for m in self._all if m not in self._ok]


__all__ = ["BatchSource", "MessageSource", "SqsSource"]
