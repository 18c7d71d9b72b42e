"""The sender's Lambda entry point: options from the event, settings from the environment, and
a listing stopped in time for what was recorded to be sent."""

from __future__ import annotations

import importlib
import threading
import time
from types import ModuleType
from typing import Any

import pytest
from longbow_deploy import contract


def _module() -> ModuleType:
    # Found by the name the deployed function's handler setting gives, as Lambda finds it in
    # the runtime layer.
    module, _, name = contract.SENDER_HANDLER.rpartition(".")
    loaded = importlib.import_module(module)
    assert callable(getattr(loaded, name))
    return loaded


class _Report:
    def to_json(self) -> dict[str, Any]:
        return {"queued": {"objects": 3, "bytes": 30}, "interrupted": False}


class _Control:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.closed = False
        _Control.last = self

    last: _Control | None = None

    def close(self) -> None:
        self.closed = True


class _Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGBOW_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/q")
    monkeypatch.setenv("LONGBOW_TABLE", "jobs")
    monkeypatch.setenv("LONGBOW_PAIRS", '[{"src": "s3://a-src/", "dst": "s3://a-dst/"}]')
    monkeypatch.setenv("LONGBOW_TIME_MARGIN_SECONDS", "30")
    monkeypatch.delenv("LONGBOW_CONFIG", raising=False)


def test_event_options_reach_send_and_the_summary_comes_back(environment: None) -> None:
    module = _module()
    calls: list[dict[str, Any]] = []

    def send(config: Any, control: Any, **kwargs: Any) -> _Report:
        calls.append({"config": config, **kwargs})
        return _Report()

    summary = module.handler(
        {"dry_run": True, "retry_failed": 1, "trigger": "schedule"},
        _Context(600_000),
        send=send,
        control_plane=_Control,
    )
    assert summary == _Report().to_json()
    (call,) = calls
    assert (call["dry_run"], call["retry_failed"], call["requeue"]) == (True, True, False)
    assert call["config"].cluster.table == "jobs"
    assert not call["stop"].is_set()
    assert _Control.last is not None and _Control.last.closed


def test_listing_stops_before_the_timeout(environment: None) -> None:
    module = _module()
    stopped = threading.Event()

    def send(config: Any, control: Any, *, stop: threading.Event, **kwargs: Any) -> _Report:
        # Stands for a long listing: it ends when told to stop.
        if stop.wait(5):
            stopped.set()
        return _Report()

    started = time.monotonic()
    module.handler(None, _Context(20_000), send=send, control_plane=_Control)
    assert stopped.is_set()  # 20 s left is below the 30 s margin
    assert time.monotonic() - started < 5
