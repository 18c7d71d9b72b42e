"""Reports of the job database: totals by state, verification methods, failed jobs and their
reasons, keys the destination cannot store, archived sources, the slowest and largest copies,
and single jobs by key."""

from __future__ import annotations

from typing import Literal

from s3longbow.model import Job, JobState
from s3longbow.verdicts import NOT_REPLACED, SOURCE_GONE, UNSTORABLE

from .file import SqliteFile
from .schema import JOB_COLUMNS, JobRow, job_from_row


class Reports(SqliteFile):
    """Read-only queries for the end-of-run report and `longbow status`."""

    def totals(self, run_id: int) -> dict[str, tuple[int, int]]:
        """Jobs and bytes by state: state -> (count, bytes)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM jobs WHERE run_id=? "
                "GROUP BY state",
                (run_id,),
            ).fetchall()
        out = {state.value: (0, 0) for state in JobState}
        out.update({r[0]: (int(r[1]), int(r[2])) for r in rows})
        return out

    def verification(self, run_id: int) -> dict[str, int]:
        """Done jobs by verification method or reason: text -> count."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT CASE WHEN verified=1 THEN 'verified: ' ELSE 'unverified: ' END || "
                "COALESCE(verify, ''), COUNT(*) FROM jobs WHERE run_id=? AND state='done' "
                "GROUP BY 1",
                (run_id,),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def failed_jobs(self, run_id: int, limit: int = 1000) -> list[tuple[str, str, str]]:
        """(source key, destination key, reason) of failed jobs."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT src_key, dst_key, COALESCE(reason, '') FROM jobs WHERE run_id=? "
                "AND state='failed' ORDER BY id LIMIT ?",
                (run_id, limit),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def failure_groups(
        self, run_id: int, *, groups: int = 50, keys: int = 20
    ) -> list[tuple[str, int, int, list[str]]]:
        """Failed jobs grouped by their reason, the commonest first: (reason, jobs, bytes,
        the source keys of the first `keys` of them), for the first `groups` reasons."""
        with self._lock:
            rows: list[tuple[str, int, int]] = self._conn.execute(
                "SELECT COALESCE(reason, ''), COUNT(*), COALESCE(SUM(size), 0) FROM jobs "
                "WHERE run_id=? AND state='failed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
                (run_id, groups),
            ).fetchall()
            out = []
            for reason, count, nbytes in rows:
                listed = self._conn.execute(
                    "SELECT src_key FROM jobs WHERE run_id=? AND state='failed' "
                    "AND COALESCE(reason, '')=? ORDER BY id LIMIT ?",
                    (run_id, reason, keys),
                ).fetchall()
                out.append((reason, int(count), int(nbytes), [r[0] for r in listed]))
        return out

    def copied_jobs(
        self,
        run_id: int,
        *,
        by: Literal["duration", "size"],
        since: float | None = None,
        until: float | None = None,
        limit: int = 10,
    ) -> list[tuple[str, str, int, float]]:
        """(source key, destination key, bytes, seconds) of the done jobs that took longest
        (from their last claim to their end) or are largest, finished between `since` and
        `until` (either None: unbounded)."""
        order = "finished_at - started_at DESC" if by == "duration" else "size DESC"
        with self._lock:
            rows = self._conn.execute(
                "SELECT src_key, dst_key, size, finished_at - started_at FROM jobs "
                "WHERE run_id=? AND state='done' AND started_at IS NOT NULL "
                "AND finished_at >= ? AND finished_at <= ? "
                f"ORDER BY {order}, id LIMIT ?",
                (
                    run_id,
                    float("-inf") if since is None else since,
                    float("inf") if until is None else until,
                    limit,
                ),
            ).fetchall()
        return [(r[0], r[1], int(r[2]), max(0.0, float(r[3]))) for r in rows]

    def unstorable_jobs(self, run_id: int, limit: int = 100_000) -> list[tuple[str, str, str]]:
        """(source key, destination key, reason) of the keys the last planning pass found the
        destination unable to store (earlier findings of keys since ignored, deleted or
        stored after all are left out)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT src_key, dst_key, reason FROM jobs WHERE run_id=? AND state='skipped' "
                "AND seen_generation=(SELECT generation FROM runs WHERE id=?) "
                "AND substr(reason, 1, ?)=? ORDER BY id LIMIT ?",
                (run_id, run_id, len(UNSTORABLE), UNSTORABLE, limit),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def gone_jobs(self, run_id: int, limit: int = 100_000) -> list[tuple[str, str, str]]:
        """(source key, destination key, reason) of the keys the last planning pass took from
        an inventory report that the source no longer had when they were to be copied."""
        return self._skipped_for(run_id, SOURCE_GONE, limit)

    def not_replaced_jobs(self, run_id: int, limit: int = 100_000) -> list[tuple[str, str, str]]:
        """The same for the keys that appeared at the destination while they were being
        copied, and were left as they were (--no-overwrite)."""
        return self._skipped_for(run_id, NOT_REPLACED, limit)

    def _skipped_for(self, run_id: int, prefix: str, limit: int) -> list[tuple[str, str, str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT src_key, dst_key, reason FROM jobs WHERE run_id=? AND state='skipped' "
                "AND seen_generation=(SELECT generation FROM runs WHERE id=?) "
                "AND substr(reason, 1, ?)=? ORDER BY id LIMIT ?",
                (run_id, run_id, len(prefix), prefix, limit),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def archived_jobs(self, run_id: int, limit: int = 100_000) -> list[tuple[str, str, str, bool]]:
        """(source key, destination key, reason, whether a restore was asked for or is under
        way) of the jobs whose sources are archived."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT src_key, dst_key, COALESCE(reason, ''), restore_requested IS NOT NULL "
                "FROM jobs WHERE run_id=? AND state='archived' ORDER BY id LIMIT ?",
                (run_id, limit),
            ).fetchall()
        return [(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def copied_version(self, run_id: int, pair: int, src_key: str) -> str | None:
        """The source version id the run last copied for a key (None: no done job knows)."""
        row: tuple[str | None] | None = self._one(
            "SELECT version_id FROM jobs WHERE run_id=? AND pair=? AND src_key=? AND state='done'",
            (run_id, pair, src_key),
        )
        return str(row[0]) if row and row[0] else None

    def job(self, run_id: int, src_key: str, pair: int = 0) -> Job | None:
        row: JobRow | None = self._one(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE run_id=? AND pair=? AND src_key=?",
            (run_id, pair, src_key),
        )
        return job_from_row(row) if row else None
