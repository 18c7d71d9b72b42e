"""Planning passes that resume: the ranges of each pair's key space a pass lists, with how far
each got, so a pass stopped half way (a killed process) goes on where each range stopped."""

from __future__ import annotations

import json
import time

from s3longbow.jobs.base import ListedRange

from .file import SqliteFile

# A listing_ranges row as _RANGE_COLUMNS selects it.
_RANGE_COLUMNS = "id, after, until, position, done, counts"
_RangeRow = tuple[int, str | None, str | None, str | None, int, str]


class ListingRanges(SqliteFile):
    """Planning passes, resumed or begun, and the ranges each lists."""

    def begin_plan(self, run_id: int, options: str | None = None) -> int:
        """Start a new planning pass; returns its generation number. `options`: what the
        pass's decisions depend on (see `resume_plan`)."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET generation = generation + 1, plan_complete = 0, "
                "plan_options = ?, updated_at = ? WHERE id = ?",
                (options, time.time(), run_id),
            )
            row = db.execute("SELECT generation FROM runs WHERE id=?", (run_id,)).fetchone()
            # Orphans are found afresh by every planning pass, and so are its ranges.
            db.execute("DELETE FROM extras WHERE run_id=?", (run_id,))
            db.execute("DELETE FROM listing_ranges WHERE run_id=?", (run_id,))
        return int(row[0])

    def resume_plan(self, run_id: int, options: str) -> tuple[int, bool]:
        """The planning pass to go on with: the run's last one when it stopped before its
        end, with the same `options` (what its decisions depend on: the comparison, the
        ignore rules, whether orphans are looked for), having recorded its ranges; otherwise
        a new one. Returns (generation, resumed)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT generation, plan_complete, plan_options FROM runs WHERE id=?",
                (run_id,),
            ).fetchone()
            generation, complete, recorded = int(row[0]), bool(row[1]), row[2]
            listed = self._conn.execute(
                "SELECT 1 FROM listing_ranges WHERE run_id=? AND generation=? LIMIT 1",
                (run_id, generation),
            ).fetchone()
        if generation > 0 and not complete and recorded == options and listed is not None:
            return generation, True
        return self.begin_plan(run_id, options), False

    def listed_ranges(self, run_id: int, generation: int, pair: int) -> list[ListedRange]:
        """The ranges of a pair in a pass, lowest first."""
        with self._lock:
            rows: list[_RangeRow] = self._conn.execute(
                f"SELECT {_RANGE_COLUMNS} FROM listing_ranges "
                "WHERE run_id=? AND generation=? AND pair=? ORDER BY id",
                (run_id, generation, pair),
            ).fetchall()
        ranges = [
            ListedRange(id_, after, until, position, bool(done), json.loads(counts))
            for id_, after, until, position, done, counts in rows
        ]
        return sorted(ranges, key=lambda r: (r.after is not None, r.after or ""))

    def add_listed_range(
        self, run_id: int, generation: int, pair: int, after: str | None, until: str | None
    ) -> int:
        """Record a new range of a pair; returns its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO listing_ranges (run_id, generation, pair, after, until) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, generation, pair, after, until),
            )
        return int(cur.lastrowid or 0)

    def split_listed_range(self, range_id: int, boundary: str) -> int:
        """End a range at `boundary` and record (boundary, its old end] as a new range of the
        same pass, in one transaction; returns the new range's id."""
        with self._tx() as db:
            row = db.execute(
                "SELECT run_id, generation, pair, until FROM listing_ranges WHERE id=?",
                (range_id,),
            ).fetchone()
            run_id, generation, pair, until = row
            db.execute("UPDATE listing_ranges SET until=? WHERE id=?", (boundary, range_id))
            cur = db.execute(
                "INSERT INTO listing_ranges (run_id, generation, pair, after, until) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, generation, pair, boundary, until),
            )
        return int(cur.lastrowid or 0)

    def checkpoint_range(
        self, range_id: int, position: str | None, counts: dict[str, int], *, done: bool
    ) -> None:
        """Record how far a range was planned, with its counts so far."""
        with self._tx() as db:
            db.execute(
                "UPDATE listing_ranges SET position=?, counts=?, done=? WHERE id=?",
                (position, json.dumps(counts), int(done), range_id),
            )

    def forget_ranges(self, run_id: int, generation: int, pair: int) -> None:
        """Drop a pair's ranges in a pass."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM listing_ranges WHERE run_id=? AND generation=? AND pair=?",
                (run_id, generation, pair),
            )


class PassRanges:
    """The range ledger (`jobs.base.RangeLedger`) of one planning pass of a run.

    Args:
        db: The job database.
        run_id: The run.
        generation: The pass.
    """

    def __init__(self, db: ListingRanges, run_id: int, generation: int) -> None:
        self.db = db
        self.run_id = run_id
        self.generation = generation

    def ranges(self, pair: int) -> list[ListedRange]:
        return self.db.listed_ranges(self.run_id, self.generation, pair)

    def add_range(self, pair: int, after: str | None, until: str | None) -> int:
        return self.db.add_listed_range(self.run_id, self.generation, pair, after, until)

    def split_range(self, range_id: int, boundary: str) -> int:
        return self.db.split_listed_range(range_id, boundary)

    def checkpoint(
        self, range_id: int, position: str | None, counts: dict[str, int], *, done: bool
    ) -> None:
        self.db.checkpoint_range(range_id, position, counts, done=done)

    def forget(self, pair: int) -> None:
        self.db.forget_ranges(self.run_id, self.generation, pair)


__all__ = ["ListingRanges", "PassRanges"]
