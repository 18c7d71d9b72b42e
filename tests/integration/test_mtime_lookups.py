"""--compare mtime looks up the times objects state (a HEAD each) at once, not one after another:
a rerun of a download whose files keep their times looks up every object, and between
continents one HEAD after another takes a round trip each."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from longbow_testkit.fakes3 import FakeS3, Request
from s3longbow.config import PairSettings, Settings
from s3longbow.mtimes import format_mtime
from s3longbow.pairs import open_pairs
from s3longbow.plan.diff import Action
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.planner import decisions

from ..conftest import fake_side

OLD = 1_600_000_000 * 10**9  # 2020, before the objects' Last-Modified (2026 in listings)
COUNT = 8


def settings_for(server: FakeS3, folder: Path) -> Settings:
    return Settings(pairs=(PairSettings("s3://bkt/", str(folder)),), source=fake_side(server))


def test_stated_times_are_looked_up_at_once(tmp_path: Path) -> None:
    """The server holds each HEAD until all of them have come: looked up one after another,
    the first would wait for the others in vain and the barrier would break."""
    meeting = threading.Barrier(COUNT + 1, timeout=10)

    def meet(request: Request) -> None:
        if request.method == "HEAD" and request.key:
            meeting.wait()

    folder = tmp_path / "down"
    folder.mkdir()
    with FakeS3() as server:
        for i in range(COUNT):
            key = f"k{i}"
            # Same size, and the file has the time the object states: already there, though
            # the listing's Last-Modified is newer than the file.
            server.put("bkt", key, b"data", **{"x-amz-meta-mtime": format_mtime(OLD).encode()})
            (folder / key).write_bytes(b"data")
            os.utime(folder / key, ns=(OLD, OLD))
        # One more whose file is older than the time its object states: copied.
        server.put("bkt", "newer", b"data", **{"x-amz-meta-mtime": format_mtime(OLD).encode()})
        (folder / "newer").write_bytes(b"data")
        os.utime(folder / "newer", ns=(OLD - 10**9, OLD - 10**9))
        server.on(meet)
        with open_pairs(settings_for(server, folder)) as pairs:
            made = list(decisions(pairs[0], IgnoreRules([]), compare="mtime"))
        assert not meeting.broken
        # In key order, each settled by its own lookup.
        assert [d.src.key for d in made] == sorted(f"k{i}" for i in range(COUNT)) + ["newer"]
        assert [d.action for d in made] == [Action.SAME] * COUNT + [Action.COPY]
        assert made[-1].reason == "source is newer than the destination"
        assert all(d.pending is None for d in made)
        assert len([r for r in server.requests if r.method == "HEAD" and r.key]) == COUNT + 1
