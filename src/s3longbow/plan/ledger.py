"""The job database as a planning sink (`longbow sync`): copies become jobs of the run,
orphans are recorded for --delete, and each range's listing is checkpointed so a stopped
planning pass resumes where it stopped."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from concurrent.futures import Executor

from s3longbow.config import Settings
from s3longbow.jobs.base import RangeLedger
from s3longbow.jobs.sqlite import PassRanges, PlannedCopy, SqliteQueue, UpsertCounts
from s3longbow.model import ObjectInfo
from s3longbow.pairs import PairRuntime
from s3longbow.plan.diff import Decision
from s3longbow.plan.tally import PlanSink
from s3longbow.plan.unstorable import answers_for
from s3longbow.progress.stats import Stats
from s3longbow.transfer.properties import PropertyUpdater
from s3longbow.verdicts import renamed_reason


class LedgerSink(PlanSink):
    """A sync's planning sink: copies become jobs of the run (new, reopened or left done),
    destination objects the source lacks are recorded for --delete, and objects already
    present go to the property updater (--update-properties).

    The listing of each range is checkpointed in the database, and a planning pass that
    stopped before its end (with the same `options`) is resumed rather than begun again:
    finished ranges are not listed again, and the jobs, orphans and counts they found stand.
    Not with `updater`, whose checks run after the checkpoints (a resumed pass would skip
    those a stopped process had not made).

    Args:
        jobs: The run's job queue (its database and run id; workers are woken through it).
        stats: The run's counters (work added).
        checker: Threads that look up finished copies a listing lacks.
        max_attempts: Attempts per job.
        extras: Record destination objects the source lacks (--delete).
        updater: Checks and fixes the properties of objects already present.
        options: What the pass's decisions depend on; a stopped pass with other options is
            not resumed.
    """

    def __init__(
        self,
        jobs: SqliteQueue,
        stats: Stats,
        checker: Executor,
        *,
        max_attempts: int,
        extras: bool = False,
        updater: PropertyUpdater | None = None,
        options: str = "",
    ) -> None:
        self.jobs = jobs
        self.db, self.run_id = jobs.db, jobs.run_id
        self.stats = stats
        self.checker = checker
        self.max_attempts = max_attempts
        self.wants_extras = extras
        self.wants_same = updater is not None
        self.updater = updater
        self.listed_since = time.time()  # copies finished after this may postdate the listings
        self.resumed = False
        if updater is None:
            self.generation, self.resumed = self.db.resume_plan(self.run_id, options)
        else:
            self.generation = self.db.begin_plan(self.run_id, options)
        self._ledger = (
            PassRanges(self.db, self.run_id, self.generation) if updater is None else None
        )

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        planned = [
            PlannedCopy(pair.index, d.src, d.dst_key, d.reason, dst=d.dst, absent=d.dst is None)
            for d in batch
        ]
        counts = self._upsert(planned)
        if counts.to_look:  # rare: only finished copies missing from the listing
            self._upsert(list(self.checker.map(functools.partial(_look, pair), counts.to_look)))
        self.jobs.new_work.set()

    def same(self, pair: PairRuntime, batch: list[Decision]) -> None:
        if self.updater is not None:
            self.updater.submit(pair, [(d.src, d.dst) for d in batch if d.dst is not None])

    def extras(self, pair: PairRuntime, batch: list[ObjectInfo]) -> None:
        self.db.add_extras(self.run_id, pair.index, batch)

    def copied_version(self, pair: PairRuntime, key: str) -> str | None:
        return self.db.copied_version(self.run_id, pair.index, key)

    def range_ledger(self) -> RangeLedger | None:
        return self._ledger

    def finish(self) -> int:
        """Close the planning pass; returns how many earlier jobs are no longer needed."""
        return self.db.finish_plan(self.run_id, self.generation)

    def _upsert(self, planned: list[PlannedCopy]) -> UpsertCounts:
        counts = self.db.upsert_jobs(
            self.run_id,
            self.generation,
            planned,
            max_attempts=self.max_attempts,
            listed_since=self.listed_since,
        )
        self.stats.add_work(counts.new + counts.reopened, counts.queued_bytes)
        return counts


def _look(pair: PairRuntime, copy: PlannedCopy) -> PlannedCopy:
    """A finished copy the listing lacks: a store that still answers for its name keeps it
    under another one; one that does not lost it (deleted since)."""
    if answers_for(pair.dst_store, copy.dst_key):
        return dataclasses.replace(copy, unstorable=renamed_reason())
    return dataclasses.replace(copy, looked=True)


def plan_options(settings: Settings) -> str:
    """What a planning pass's decisions depend on, beyond the pairs: a stopped pass is
    resumed only by a run with the same."""
    t = settings.transfer
    f = settings.filters
    # The filters as given (an age as written, not the time it resolves to); a key list by
    # its digest, not its keys.
    listed = "\n".join(sorted(f.files_from)) if f.files_from is not None else None
    # Case ignored joins the tuple only when set: the passes of earlier runs keep their value.
    cased = () if not f.ignore_case else ("ignore case",)
    filters = repr((f.rules, f.min_size, f.max_size, f.min_age, f.max_age, listed, *cased))
    return json.dumps(
        {
            "compare": t.planning_compare,
            # Excluded objects among the extras change the value; without them it stays as
            # passes planned before recorded it.
            "extras": "with excluded" if settings.delete_excluded else settings.delete,
            "ignore": list(settings.ignore_patterns),
            "properties": t.update_properties,
            "filters": hashlib.sha256(filters.encode()).hexdigest(),
            "inventories": [pair.src_inventory for pair in settings.pairs],
        },
        sort_keys=True,
    )


__all__ = ["LedgerSink", "plan_options"]
