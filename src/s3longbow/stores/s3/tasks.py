"""A loop that runs many tasks on one thread: each a generator that yields a socket and the
events (READ, WRITE) to wait for, or no socket and seconds to sleep, and returns its result.
Every wait has a deadline; closing the loop ends every task where it waits."""

from __future__ import annotations

import collections
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

_T = TypeVar("_T")

# What a task waits for: a socket and the events (READ, WRITE) that wake it, or no socket
# and the seconds it sleeps.
Wait = tuple[socket.socket, int] | tuple[None, float]
Step = Generator[Wait, None, _T]


class _Closing(Exception):
    """The loop is closing: the task ends where it waits."""


@dataclass
class _Task:
    steps: Step[Any]
    done: Callable[[Any, BaseException | None], None]
    timeout: float
    deadline: float = 0.0
    waiting: socket.socket | None = None


class Loop:
    """Runs tasks on the thread that calls :meth:`run`, until :meth:`close`.

    Args:
        timeout: Seconds a task may wait on one socket before it fails (TimeoutError).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, READ, None)
        self._inbox: collections.deque[_Task] = collections.deque()
        self._waiting: dict[int, _Task] = {}  # waiting on a socket, by id
        self._sleeping: dict[int, _Task] = {}  # waiting for their deadline, by id
        self._closing = threading.Event()

    def spawn(
        self, steps: Step[_T], done: Callable[[_T | None, BaseException | None], None]
    ) -> None:
        """Run `steps` on the loop; `done(result, None)` or `done(None, error)` is called on
        the loop's thread when it ends. Callable from any thread."""
        self._inbox.append(_Task(steps, done, self._timeout))
        self._wake()

    def close(self) -> None:
        """End the loop: every task still running ends with an error (callable from any
        thread); :meth:`run` returns once they have."""
        self._closing.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_out.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or closed

    def run(self) -> None:
        """Run tasks until closed."""
        try:
            while not self._closing.is_set():
                for key, _ in self._selector.select(self._next_deadline()):
                    if key.data is None:
                        self._drain_wake()
                        continue
                    task: _Task = key.data
                    self._selector.unregister(key.fileobj)
                    task.waiting = None
                    self._step(task)
                self._start_new()
                self._expire()
        finally:
            self._end_all()

    def _drain_wake(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _start_new(self) -> None:
        while self._inbox:
            self._step(self._inbox.popleft())

    def _next_deadline(self) -> float | None:
        if self._inbox:
            return 0
        if not self._waiting and not self._sleeping:
            return None
        tasks = (*self._waiting.values(), *self._sleeping.values())
        return max(0.0, min(t.deadline for t in tasks) - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        for task in [t for t in self._sleeping.values() if t.deadline <= now]:
            del self._sleeping[id(task)]
            self._step(task)
        late = [t for t in self._waiting.values() if t.deadline <= now]
        for task in late:
            self._forget(task)
            self._step(task, TimeoutError(f"no reply byte for {task.timeout:.0f} s"))

    def _forget(self, task: _Task) -> None:
        self._waiting.pop(id(task), None)
        self._sleeping.pop(id(task), None)
        if task.waiting is not None:
            self._selector.unregister(task.waiting)
            task.waiting = None

    def _step(self, task: _Task, error: BaseException | None = None) -> None:
        self._waiting.pop(id(task), None)
        try:
            sock, events = task.steps.throw(error) if error else next(task.steps)
        except StopIteration as stop:
            self._finish(task, stop.value, None)
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the task's owner
            self._finish(task, None, exc)
            return
        try:
            if sock is not None:
                self._selector.register(sock, int(events), task)
        except (ValueError, KeyError, OSError) as exc:  # a closed socket, or one waited on
            task.steps.close()
            self._finish(task, None, exc)
            return
        if sock is None:  # a sleep: woken at its deadline, without an error
            task.deadline = time.monotonic() + events
            self._sleeping[id(task)] = task
            return
        task.waiting = sock
        task.deadline = time.monotonic() + task.timeout
        self._waiting[id(task)] = task

    def _finish(self, task: _Task, result: Any, error: BaseException | None) -> None:
        try:
            task.done(result, error)
        except Exception:  # a bug in a callback must not stop every other task
            log.exception("a task's completion failed")

    def _end_all(self) -> None:
        """Every task not finished ends with _Closing (its connections dropped)."""
        for task in [*self._waiting.values(), *self._sleeping.values()]:
            self._forget(task)
            self._step(task, _Closing("the run is shutting down"))
        while self._inbox:
            task = self._inbox.popleft()
            task.steps.close()
            self._finish(task, None, _Closing("the run is shutting down"))
        # A task that caught _Closing and waits again is ended for good.
        for task in [*self._waiting.values(), *self._sleeping.values()]:
            self._forget(task)
            task.steps.close()
            self._finish(task, None, _Closing("the run is shutting down"))
        self._selector.close()
        self._wake_in.close()
        self._wake_out.close()


__all__ = ["READ", "WRITE", "Loop", "Step", "Wait"]
