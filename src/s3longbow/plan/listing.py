"""Concurrent listing: the keys under a prefix, listed folder by folder on several threads and
handed out in the store's own order, so a bucket of millions of keys lists in a fraction of
the time one paginated listing takes.

One delimited listing of the prefix gives the keys directly under it and its sub-prefixes, in
order; the sub-prefixes ahead of the consumer are listed concurrently (a few at a time, each a
few pages ahead), and each is drained in turn. Memory stays bounded by the threads times their
read-ahead, however large the bucket.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from s3longbow.model import ObjectInfo
from s3longbow.stores.base import ObjectStore

T = TypeVar("T")
_END = object()
# Keys directly under the prefix that may wait in the read-ahead window.
_MAX_WAITING_KEYS = 10_000
# Items cross between threads in batches: one queue hand-off per key cost more CPU than
# parsing the key from its listing page.
_BATCH = 500


class _ReadAhead(Generic[T]):
    """Iterates `items` on its own thread, at most `depth` items ahead of the consumer."""

    def __init__(self, items: Iterable[T], depth: int) -> None:
        self._items = items
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listing", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._failure = exc
        self._put(_END)

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    if self._failure is not None:
                        raise self._failure
                    return
                yield item  # type: ignore[misc]
        finally:
            self._stop.set()

    def cancel(self) -> None:
        self._stop.set()


def _batches(items: Iterable[T]) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class _Batched(Generic[T]):
    """Iterates `items` on its own thread, about `depth` items ahead, handed over in batches."""

    def __init__(self, items: Iterable[T], depth: int) -> None:
        self._ahead = _ReadAhead(_batches(items), max(2, depth // _BATCH))

    def __iter__(self) -> Iterator[T]:
        for batch in self._ahead:
            yield from batch

    def cancel(self) -> None:
        self._ahead.cancel()


def read_ahead(items: Iterable[T], depth: int = 2000) -> Iterator[T]:
    """Iterate `items` on a background thread, at most about `depth` items ahead of the
    consumer."""
    return iter(_Batched(items, depth))


def list_concurrently(
    store: ObjectStore, prefix: str, *, threads: int = 8, depth: int = 2000
) -> Iterator[ObjectInfo]:
    """Every object under `prefix`, in the store's listing order, listed by sub-prefix on up
    to `threads` threads. Stores without delimited listings are listed the plain way."""
    if threads <= 1 or not store.capabilities.delimited_listing:
        yield from _Batched(store.list_objects(prefix), depth)
        return
    level = iter(store.list_level(prefix))
    window: deque[ObjectInfo | _Batched[ObjectInfo]] = deque()
    running = 0
    waiting_keys = 0
    exhausted = False
    try:
        while True:
            # Read ahead in the level listing until enough sub-prefixes are being listed.
            while not exhausted and running < threads and waiting_keys < _MAX_WAITING_KEYS:
                item = next(level, None)
                if item is None:
                    exhausted = True
                elif isinstance(item, str):
                    window.append(_Batched(store.list_objects(item), depth))
                    running += 1
                else:
                    window.append(item)
                    waiting_keys += 1
            if not window:
                return
            head = window.popleft()
            if isinstance(head, _Batched):
                running -= 1
                yield from head
            else:
                waiting_keys -= 1
                yield head
    finally:
        for pending in window:
            if isinstance(pending, _Batched):
                pending.cancel()
