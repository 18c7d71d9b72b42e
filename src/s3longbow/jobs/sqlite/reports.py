"""Reports of the job database: totals by state, verification methods, failed jobs, keys the
destination cannot store, archived sources, and single jobs by key."""

from __future__ import annotations

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
