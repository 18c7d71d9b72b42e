"""Runs and planning passes: the run of a set of pairs, the generation of each planning pass,
the destination's orphans, and the upsert of planned copies into the job table."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from sqlite3 import Connection

from s3longbow.model import ObjectInfo
from s3longbow.verdicts import emptied_reason, is_unstorable, kept_without_bytes

from .ranges import ListingRanges
from .schema import RUN_COLUMNS, Run, RunRow, run_from_row

_SEEN = "UPDATE jobs SET seen_generation=? WHERE id=?"


@dataclass(frozen=True, slots=True)
class PlannedCopy:
    """One object that planning says must be copied.

    `dst` is what the destination lists under `dst_key`; `absent` says it lists nothing
    there. A finished copy found absent is handed back to the planner to look up (see
    `UpsertCounts.to_look`), which plans it again with `unstorable` (the reason: the key is
    recorded as one the destination cannot store, and not copied) or `looked` (not found:
    plainly missing, so copied again).
    """

    pair: int
    src: ObjectInfo
    dst_key: str
    reason: str
    dst: ObjectInfo | None = None
    absent: bool = False
    unstorable: str | None = None
    looked: bool = False


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """What a batch of planned copies did to the job table."""

    new: int = 0
    reopened: int = 0
    unchanged: int = 0
    exhausted: int = 0
    queued_bytes: int = 0  # bytes of the new and reopened jobs
    unstorable: int = 0  # newly recorded as keys the destination cannot store
    to_look: tuple[PlannedCopy, ...] = ()  # finished copies now absent: left as they were


class Planning(ListingRanges):
    """Runs, planning passes and the upsert of planned copies."""

    # -- runs -------------------------------------------------------------------------------

    def open_run(self, signature: str, description: dict[str, object]) -> tuple[Run, bool]:
        """The run with this signature, created if new. Returns (run, resumed)."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT id FROM runs WHERE signature=?", (signature,)).fetchone()
            resumed = row is not None
            if not resumed:
                db.execute(
                    "INSERT INTO runs (signature, description, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    (signature, json.dumps(description), now, now),
                )
        run = self.get_run(signature=signature)
        assert run is not None
        return run, resumed

    def get_run(self, *, signature: str | None = None, run_id: int | None = None) -> Run | None:
        """A run by signature or id; the latest run when neither is given."""
        query = f"SELECT {RUN_COLUMNS} FROM runs"
        row: RunRow | None
        if signature is not None:
            row = self._one(query + " WHERE signature=?", (signature,))
        elif run_id is not None:
            row = self._one(query + " WHERE id=?", (run_id,))
        else:
            row = self._one(query + " ORDER BY updated_at DESC LIMIT 1", ())
        return None if row is None else run_from_row(row)

    def list_runs(self) -> list[Run]:
        with self._lock:
            rows: list[RunRow] = self._conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id"
            ).fetchall()
        return [run_from_row(row) for row in rows]

    def add_extras(self, run_id: int, pair: int, objects: Sequence[ObjectInfo]) -> None:
        """Record destination objects that no source object maps to (for --delete)."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO extras (run_id, pair, key, size) VALUES (?, ?, ?, ?)",
                [(run_id, pair, obj.key, obj.size) for obj in objects],
            )

    def extras(self, run_id: int, pair: int, batch: int = 1000) -> Iterator[list[str]]:
        """The recorded orphans of a pair, in batches of keys (read page by page)."""
        last = ""
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT key FROM extras WHERE run_id=? AND pair=? AND key>? ORDER BY key "
                    "LIMIT ?",
                    (run_id, pair, last, batch),
                ).fetchall()
            if not rows:
                return
            yield [r[0] for r in rows]
            last = rows[-1][0]

    def finish_plan(self, run_id: int, generation: int) -> int:
        """Close a planning pass. Unfinished jobs that this pass no longer asked for (the source
        is gone, or the destination matches now) are skipped. Returns how many."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'skipped', lease_owner = NULL, finished_at = ?, "
                "reason = 'no longer needed: the source is gone, the destination matches, or a "
                "filter leaves it out' "
                "WHERE run_id = ? AND seen_generation < ? "
                "AND state IN ('pending', 'failed', 'archived')",
                (time.time(), run_id, generation),
            )
            db.execute("UPDATE runs SET plan_complete = 1 WHERE id = ?", (run_id,))
        return cur.rowcount

    def retry_failed(self, run_id: int) -> int:
        """Give every failed job of the run a fresh set of attempts."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='pending', attempts=0, visible_at=0 "
                "WHERE run_id=? AND state='failed'",
                (run_id,),
            )
        return cur.rowcount

    # -- planning ---------------------------------------------------------------------------

    def upsert_jobs(
        self,
        run_id: int,
        generation: int,
        copies: Sequence[PlannedCopy],
        *,
        max_attempts: int,
        listed_since: float | None = None,
    ) -> UpsertCounts:
        """Record a batch of planned copies.

        `listed_since`: when this plan began listing the destination; a job finished since
        may be missing from the listing only because the listing came first, and is left done.

        A new key becomes a pending job. A known key is reopened when it was done or skipped
        (the destination no longer matches), archived (its restore may have finished), or
        failed with attempts left or a changed source;
        a job still pending or in progress keeps its state and any open upload.

        A done job of an unchanged source whose destination holds the source's ETag with
        other bytes, or that comes back with `unstorable`, is skipped with the reason, and
        stays skipped until the source changes: copying it again would change nothing. One
        that is now absent is left as it is and returned in `to_look`.
        """
        if not copies:
            return UpsertCounts()
        now = time.time()
        new = reopened = unchanged = exhausted = queued_bytes = stored_not = 0
        to_look: list[PlannedCopy] = []
        with self._tx() as db:
            for pair in sorted({c.pair for c in copies}):
                batch = [c for c in copies if c.pair == pair]
                existing = self._existing(db, run_id, pair, [c.src.key for c in batch])
                fresh: list[object] = []  # the new jobs' values, row after row
                for copy in batch:
                    src = copy.src
                    old = existing.get(src.key)
                    if old is None:
                        fresh += (
                            run_id,
                            pair,
                            src.key,
                            copy.dst_key,
                            src.size,
                            src.etag,
                            src.last_modified,
                            src.version_id,
                            copy.reason,
                            generation,
                            now,
                            src.storage_class,
                            src.restore,
                        )
                        new += 1
                        queued_bytes += src.size
                        continue
                    job_id, state, attempts, size, etag, reason, finished_at = old
                    changed = size != src.size or etag != src.etag
                    # A finished copy of an unchanged source that the destination does not
                    # show as written: copying it again would change nothing.
                    why: str | None = None
                    if (
                        state == "done"
                        and not changed
                        and listed_since is not None
                        and finished_at is not None
                        and finished_at >= listed_since
                    ):
                        # Copied while this plan listed the destination (a job carried over
                        # from a stopped run): the listing may predate the copy.
                        unchanged += 1
                        db.execute(_SEEN, (generation, job_id))
                        continue
                    if state == "done" and not changed:
                        if copy.unstorable:
                            why = copy.unstorable
                        elif copy.dst is not None and kept_without_bytes(src, copy.dst):
                            why = emptied_reason(src, copy.dst)
                        elif copy.absent and not copy.looked:
                            # Renamed by the store, or deleted since? Only a HEAD can tell.
                            to_look.append(copy)
                            db.execute(_SEEN, (generation, job_id))
                            continue
                    elif state == "skipped" and not changed and is_unstorable(reason):
                        unchanged += 1  # recorded once, and kept until the source changes
                        db.execute(_SEEN, (generation, job_id))
                        continue
                    if why is not None:
                        stored_not += 1
                        db.execute(
                            "UPDATE jobs SET seen_generation=?, dst_key=?, state='skipped', "
                            "reason=?, finished_at=? WHERE id=?",
                            (generation, copy.dst_key, why, now, job_id),
                        )
                        continue
                    # An archived source is looked at again by every pass: its restore may
                    # have finished.
                    reopen = state in ("done", "skipped", "archived") or (
                        state == "failed" and (changed or attempts < max_attempts)
                    )
                    if reopen:
                        reopened += 1
                        queued_bytes += src.size
                    elif state == "failed":
                        exhausted += 1
                    else:
                        unchanged += 1
                    # A restore asked for is the old version's: a changed source needs its own.
                    db.execute(
                        "UPDATE jobs SET seen_generation=?, dst_key=?, size=?, etag=?, "
                        "last_modified=?, version_id=?, storage_class=?, restore=?, "
                        "restore_requested=CASE WHEN ? THEN NULL ELSE restore_requested END, "
                        "state=CASE WHEN ? THEN 'pending' ELSE state END, "
                        "reason=CASE WHEN ? THEN ? ELSE reason END, "
                        "attempts=CASE WHEN ? OR state IN ('done','skipped','archived') THEN 0 "
                        "ELSE attempts END, "
                        "visible_at=CASE WHEN ? THEN 0 ELSE visible_at END "
                        "WHERE id=?",
                        (
                            generation,
                            copy.dst_key,
                            src.size,
                            src.etag,
                            src.last_modified,
                            src.version_id,
                            src.storage_class,
                            src.restore,
                            changed,
                            reopen,
                            reopen,
                            copy.reason,
                            changed,
                            reopen,
                            job_id,
                        ),
                    )
                _insert_jobs(db, fresh)
        return UpsertCounts(
            new, reopened, unchanged, exhausted, queued_bytes, stored_not, tuple(to_look)
        )

    @staticmethod
    def _existing(
        db: Connection, run_id: int, pair: int, keys: list[str]
    ) -> dict[str, tuple[int, str, int, int, str | None, str | None, float | None]]:
        out: dict[str, tuple[int, str, int, int, str | None, str | None, float | None]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(
                f"SELECT src_key, id, state, attempts, size, etag, reason, finished_at FROM jobs "
                f"WHERE run_id=? AND pair=? AND src_key IN ({marks})",
                (run_id, pair, *chunk),
            ):
                out[row[0]] = (row[1], row[2], row[3], row[4], row[5], row[6], row[7])
        return out


_INSERT_JOBS = (
    "INSERT INTO jobs (run_id, pair, src_key, dst_key, size, etag, last_modified, version_id, "
    "state, reason, seen_generation, created_at, storage_class, restore) VALUES "
)
_JOB_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)"
_JOB_VALUES = 13  # the values of one row of _JOB_ROW
_ROWS_PER_INSERT = 500


def _insert_jobs(db: Connection, values: list[object]) -> None:
    """Insert new pending jobs, given their values row after row (as `_JOB_ROW` takes them).

    Many rows go in one statement: the sqlite3 module hands the interpreter to other threads
    around every statement it runs, and the listing threads of a plan take it each time, so
    an INSERT per job made the planning thread wait after every job.
    """
    per = min(_ROWS_PER_INSERT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _JOB_VALUES)
    step = per * _JOB_VALUES
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        rows = len(chunk) // _JOB_VALUES
        db.execute(_INSERT_JOBS + ",".join([_JOB_ROW] * rows), chunk)
