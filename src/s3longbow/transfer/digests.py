"""Digests of an object computed part by part as its parts stream, in any order."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable

from s3longbow import checksums
from s3longbow.model import Bytes


class OrderedHash:
    """A hash (MD5 by default) of parts fed in any order, hashed in part order. A part's
    buffer is held (and its `release` called) only until every earlier part has been hashed."""

    def __init__(self, algorithm: str = "md5") -> None:
        self._md5 = hashlib.new(algorithm)
        self._next = 1
        self._pending: dict[int, tuple[Bytes, Callable[[], None]]] = {}
        self._lock = threading.Lock()

    def feed(self, number: int, data: Bytes, release: Callable[[], None]) -> None:
        with self._lock:
            self._pending[number] = (data, release)
            while self._next in self._pending:
                chunk, done = self._pending.pop(self._next)
                self._md5.update(chunk)
                done()
                self._next += 1

    def discard(self) -> None:
        """Release every buffer still waiting (the copy failed)."""
        with self._lock:
            for _, done in self._pending.values():
                done()
            self._pending.clear()

    def hexdigest(self) -> str:
        with self._lock:
            if self._pending:
                raise RuntimeError("parts are still missing")
            return self._md5.hexdigest()

    def b64digest(self) -> str:
        with self._lock:
            if self._pending:
                raise RuntimeError("parts are still missing")
            return base64.b64encode(self._md5.digest()).decode()


class PartSums:
    """The additional checksums of each part, computed as the parts stream (thread-safe)."""

    def __init__(self, algorithms: tuple[str, ...]) -> None:
        self.algorithms = algorithms
        self._values: dict[int, tuple[int, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def running(self) -> checksums.Running:
        """Checksums to feed one read of a part, piece by piece."""
        return checksums.Running(self.algorithms)

    def record(self, number: int, length: int, running: checksums.Running) -> dict[str, str]:
        """Keep part `number`'s checksums (fed all its `length` bytes); return them."""
        sums = running.b64()
        with self._lock:
            self._values[number] = (length, sums)
        return sums

    def of(self, algorithm: str, count: int) -> list[tuple[str, int]]:
        """(checksum, size) of parts 1..count, in part order."""
        with self._lock:
            return [
                (self._values[n][1][algorithm], self._values[n][0]) for n in range(1, count + 1)
            ]


__all__ = ["OrderedHash", "PartSums"]
