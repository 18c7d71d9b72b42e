"""Samples of the cluster workers' counters, kept in the job table for `longbow report
--cluster`: one item per worker per metrics interval (a minute by default), expiring through
the table's TTL after two weeks, so they need no deletes and stay bounded.

Layout: `pk` = "samples#<hour since the epoch>", `sk` = "<time, 17 characters>#<worker id>".
An hour's samples of every worker are one partition (a thousand workers write 17 items a
second to it, far below a partition's limit), read back in time order by one Query; a window
of a day is 24 Queries. The items carry no `gsi_state`, so the state index never sees them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from s3longbow.model import RunSample

from .aws import translated
from .expressions import plain_item, serialize, timestamp
from .provision import TTL_ATTRIBUTE

SAMPLE_PREFIX = "samples#"
SAMPLE_TTL_SECONDS = 14 * 24 * 3600
PARTITION_SECONDS = 3600
_COUNTERS = (
    "bytes_sent",
    "bytes_done",
    "objects_done",
    "objects_copied",
    "bytes_copied",
    "objects_failed",
    "in_flight",
    "concurrency",
)


def partition(at: float) -> str:
    """The partition key of the samples taken at `at`."""
    return f"{SAMPLE_PREFIX}{int(at // PARTITION_SECONDS)}"


def _sort_key(at: float) -> str:
    return f"{at:017.3f}"


class WorkerSamples:
    """Where one worker's samples go (a `SampleStore` whose samples expire on their own).

    Args:
        client: A boto3 DynamoDB client.
        table: The job table's name.
        worker_id: The worker's name.
        clock: Seconds since the epoch, for the expiry (replaced in tests).
    """

    def __init__(
        self, client: Any, table: str, worker_id: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.table = table
        self.worker_id = worker_id
        self.clock = clock
        self.written = 0

    def add_sample(self, sample: RunSample) -> None:
        item: dict[str, Any] = {
            "pk": partition(sample.at),
            "sk": f"{_sort_key(sample.at)}#{self.worker_id}",
            "worker": self.worker_id,
            "at": timestamp(sample.at),
            TTL_ATTRIBUTE: int(self.clock() + SAMPLE_TTL_SECONDS),
        }
        item.update({name: getattr(sample, name) for name in _COUNTERS})
        with translated(f"recording a sample in {self.table!r}"):
            self.client.put_item(
                TableName=self.table, Item={k: serialize(v) for k, v in item.items()}
            )
        self.written += 1

    def thin_samples(self) -> int:
        """Nothing to thin: the table's TTL removes old samples."""
        return self.written


def read_samples(client: Any, table: str, since: float, until: float) -> dict[str, list[RunSample]]:
    """Every worker's samples taken between `since` and `until`, oldest first, by worker."""
    out: dict[str, list[RunSample]] = {}
    first, last = int(since // PARTITION_SECONDS), int(until // PARTITION_SECONDS)
    for hour in range(first, last + 1):
        for raw in _query(
            client,
            table,
            KeyConditionExpression="#pk = :pk AND #sk BETWEEN :low AND :high",
            ExpressionAttributeNames={"#pk": "pk", "#sk": "sk"},
            ExpressionAttributeValues={
                ":pk": serialize(f"{SAMPLE_PREFIX}{hour}"),
                ":low": serialize(_sort_key(since)),
                ":high": serialize(_sort_key(until) + "~"),
            },
        ):
            item = plain_item(raw)
            counters = {name: int(item.get(name, 0)) for name in _COUNTERS}
            sample = RunSample(at=float(item["at"]), **counters)
            out.setdefault(str(item["worker"]), []).append(sample)
    for samples in out.values():
        samples.sort(key=lambda s: s.at)
    return out


def _query(client: Any, table: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    start: dict[str, Any] | None = None
    while True:
        if start:
            kwargs["ExclusiveStartKey"] = start
        with translated(f"reading the samples of {table!r}"):
            page = client.query(TableName=table, **kwargs)
        yield from page.get("Items", ())
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def combined(by_worker: dict[str, list[RunSample]], step: float) -> list[RunSample]:
    """One series for the whole cluster: every `step` seconds, the sum of each worker's
    counters as its latest sample gave them (a worker's counters are cumulative, so one that
    stopped still counts what it did); in flight and the limit only of workers whose latest
    sample is less than two steps old."""
    series = [samples for samples in by_worker.values() if samples]
    if not series:
        return []
    start = min(s[0].at for s in series)
    end = max(s[-1].at for s in series)
    positions = [-1] * len(series)
    out = []
    at = start
    while True:
        at = min(at, end)
        totals = dict.fromkeys(_COUNTERS, 0)
        for index, samples in enumerate(series):
            while positions[index] + 1 < len(samples) and samples[positions[index] + 1].at <= at:
                positions[index] += 1
            if positions[index] < 0:
                continue
            latest = samples[positions[index]]
            # A worker two steps past its last sample has stopped.
            fresh = latest is not samples[-1] or at - latest.at < 2 * step
            for name in _COUNTERS:
                if name in ("in_flight", "concurrency") and not fresh:
                    continue
                totals[name] += getattr(latest, name)
        out.append(RunSample(at=at, **totals))
        if at >= end:
            return out
        at += step
