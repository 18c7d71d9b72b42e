"""The history of a run for its report: each invocation (one `longbow sync` of the run), its
summary once it ended, and the counters it sampled as it went."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from s3longbow.model import RunSample

from .file import SqliteFile

# Samples are kept for this many of a run's latest invocations; older ones keep their
# summary only. With at most a few thousand samples each, a run's history stays a few MiB
# however often it is resumed.
KEPT_INVOCATIONS = 20

_SAMPLE_COLUMNS = (
    "at, bytes_sent, bytes_done, objects_done, objects_copied, bytes_copied, objects_failed, "
    "in_flight, concurrency"
)
SampleRow = tuple[float, int, int, int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Invocation:
    """One `longbow sync` of a run.

    Attributes:
        id: Its number in the database.
        run_id: The run it continued (or began).
        started_at: When it began, in seconds since the epoch.
        ended_at: When it ended; None while it runs, or when its process was killed.
        summary: What its summary counted (the counts of `longbow sync --json`), once it ended.
    """

    id: int
    run_id: int
    started_at: float
    ended_at: float | None
    summary: dict[str, object] | None


class RunHistory(SqliteFile):
    """Invocations of runs and their samples."""

    def begin_invocation(self, run_id: int, now: float | None = None) -> int:
        """Record that an invocation of the run begins; returns its id. The samples of the
        run's invocations older than the latest `KEPT_INVOCATIONS` are dropped."""
        with self._tx() as db:
            invocation = db.execute(
                "INSERT INTO invocations (run_id, started_at) VALUES (?, ?) RETURNING id",
                (run_id, time.time() if now is None else now),
            ).fetchone()[0]
            db.execute(
                "DELETE FROM samples WHERE invocation IN (SELECT id FROM invocations "
                "WHERE run_id=? ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (run_id, KEPT_INVOCATIONS),
            )
        return int(invocation)

    def end_invocation(
        self, invocation: int, summary: dict[str, object], now: float | None = None
    ) -> None:
        """Record the end of an invocation with what its summary counted."""
        with self._tx() as db:
            db.execute(
                "UPDATE invocations SET ended_at=?, summary=? WHERE id=?",
                (time.time() if now is None else now, json.dumps(summary), invocation),
            )

    def invocations(self, run_id: int) -> list[Invocation]:
        """The run's invocations, oldest first."""
        with self._lock:
            rows: list[tuple[int, int, float, float | None, str | None]] = self._conn.execute(
                "SELECT id, run_id, started_at, ended_at, summary FROM invocations "
                "WHERE run_id=? ORDER BY id",
                (run_id,),
            ).fetchall()
        return [
            Invocation(i, run, started, ended, json.loads(summary) if summary else None)
            for i, run, started, ended, summary in rows
        ]

    def add_sample(self, invocation: int, sample: RunSample) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO samples (invocation, {_SAMPLE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    invocation,
                    sample.at,
                    sample.bytes_sent,
                    sample.bytes_done,
                    sample.objects_done,
                    sample.objects_copied,
                    sample.bytes_copied,
                    sample.objects_failed,
                    sample.in_flight,
                    sample.concurrency,
                ),
            )

    def thin_samples(self, invocation: int) -> int:
        """Halve an invocation's samples: keep the first, the third, and so on. The counters
        are cumulative, so the rate between any two kept samples is still exact; only the
        resolution is lost. Returns how many are kept."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM samples WHERE id IN (SELECT id FROM (SELECT id, "
                "ROW_NUMBER() OVER (ORDER BY id) AS n FROM samples WHERE invocation=?) "
                "WHERE n % 2 = 0)",
                (invocation,),
            )
            kept = db.execute(
                "SELECT COUNT(*) FROM samples WHERE invocation=?", (invocation,)
            ).fetchone()[0]
        return int(kept)

    def samples(self, invocation: int) -> list[RunSample]:
        """An invocation's samples, oldest first."""
        with self._lock:
            rows: list[SampleRow] = self._conn.execute(
                f"SELECT {_SAMPLE_COLUMNS} FROM samples WHERE invocation=? ORDER BY id",
                (invocation,),
            ).fetchall()
        return [RunSample(*row) for row in rows]


class InvocationSamples:
    """Where one invocation's samples go (the sampler's sink): its run's job database."""

    def __init__(self, db: RunHistory, invocation: int) -> None:
        self.db = db
        self.invocation = invocation

    def add_sample(self, sample: RunSample) -> None:
        self.db.add_sample(self.invocation, sample)

    def thin_samples(self) -> int:
        return self.db.thin_samples(self.invocation)
