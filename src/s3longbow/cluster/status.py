"""The job table's status reads: items and bytes by state, recent throughput, recent copies
and failures, all from the state index (a part of :class:`~s3longbow.cluster.dynamodb.JobTable`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from s3longbow.model import JobState

from .expressions import deserialize, serialize, timestamp
from .jobitems import JobItem
from .provision import STATE_INDEX

# Shards of the state index's key: one busy state spread over several partitions.
STATE_SHARDS = 8


class _Table(Protocol):
    """What the status reads need of the table they are part of."""

    def _query(
        self, *, max_items: int | None = None, **kwargs: Any
    ) -> Iterator[dict[str, Any]]: ...

    def get_many(self, ids: Iterable[str]) -> dict[str, JobItem]: ...


class StatusReads:
    """Reads of the state index that report on the table; the table supplies the queries."""

    def totals(self: _Table) -> dict[str, tuple[int, int]]:
        """Items and bytes by state, from the state index: state -> (count, bytes)."""
        out: dict[str, tuple[int, int]] = {}

        def count(state: JobState) -> tuple[str, tuple[int, int]]:
            n = total = 0
            for shard in range(STATE_SHARDS):
                for raw in self._query(
                    IndexName=STATE_INDEX,
                    KeyConditionExpression="#g = :g",
                    ProjectionExpression="#size",
                    ExpressionAttributeNames={"#g": "gsi_state", "#size": "size"},
                    ExpressionAttributeValues={":g": serialize(f"{state.value}#{shard}")},
                ):
                    n += 1
                    if "size" in raw:
                        total += int(deserialize(raw["size"]))
            return state.value, (n, total)

        with ThreadPoolExecutor(len(JobState)) as pool:
            out.update(pool.map(count, list(JobState)))
        return out

    def recent_done(self: _Table, seconds: float) -> tuple[int, int]:
        """Jobs finished in the last `seconds` and their bytes: the cluster's throughput.

        Reads only the tail of each `done` shard of the state index (sorted by update time).
        """
        since = time.time() - seconds
        n = total = 0
        for shard in range(STATE_SHARDS):
            for raw in self._query(
                IndexName=STATE_INDEX,
                KeyConditionExpression="#g = :g AND #u >= :since",
                ProjectionExpression="#size",
                ExpressionAttributeNames={"#g": "gsi_state", "#u": "updated_at", "#size": "size"},
                ExpressionAttributeValues={
                    ":g": serialize(f"{JobState.DONE.value}#{shard}"),
                    ":since": serialize(timestamp(since)),
                },
            ):
                n += 1
                if "size" in raw:
                    total += int(deserialize(raw["size"]))
        return n, total

    def done_since(self: _Table, since: float, limit: int = 250) -> list[JobItem]:
        """The jobs finished since `since`, the latest `limit` of each shard of the state
        index, read whole (the index holds neither their times nor their verification)."""
        ids: list[str] = []
        for shard in range(STATE_SHARDS):
            for raw in self._query(
                IndexName=STATE_INDEX,
                KeyConditionExpression="#g = :g AND #u >= :since",
                ProjectionExpression="#pk",
                ExpressionAttributeNames={"#g": "gsi_state", "#u": "updated_at", "#pk": "pk"},
                ExpressionAttributeValues={
                    ":g": serialize(f"{JobState.DONE.value}#{shard}"),
                    ":since": serialize(timestamp(since)),
                },
                ScanIndexForward=False,
                max_items=limit,
            ):
                ids.append(str(deserialize(raw["pk"])))
        items = self.get_many(ids)
        return [item for item in items.values() if item.state is JobState.DONE]

    def failures(self: _Table, limit: int = 50) -> list[JobItem]:
        """The most recent failed items (jobs, removals and poison messages)."""
        found: list[JobItem] = []
        for shard in range(STATE_SHARDS):
            for raw in self._query(
                IndexName=STATE_INDEX,
                KeyConditionExpression="#g = :g",
                ExpressionAttributeNames={"#g": "gsi_state"},
                ExpressionAttributeValues={":g": serialize(f"failed#{shard}")},
                ScanIndexForward=False,
                Limit=limit,
                max_items=limit,
            ):
                found.append(JobItem.from_item(raw))
        found.sort(key=lambda i: i.updated_at or 0, reverse=True)
        return found[:limit]


__all__ = ["STATE_SHARDS", "StatusReads"]
