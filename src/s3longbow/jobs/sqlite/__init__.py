"""The embedded job database: one SQLite file (WAL) holding runs, jobs and the parts of uploads.

It is both the queue and the job table of single-machine mode. Jobs are claimed with a lease,
as an SQS message is received with a visibility timeout: a claimed job is invisible to other
claimers until its lease expires, the owner extends the lease while it works, and every state
change is a compare-and-set on (state, lease owner), so a stale owner cannot overwrite the
result of a newer one. Several processes may share one file.

Modules: `schema` (tables, version, row decoding), `file` (the connection and transactions),
`ranges` (planning passes and the ranges of key space they list), `planning` (runs, upserts),
`leases` (claims, leases, the upload ledger, final states), `reports` (totals and lists for
reports), `history` (each invocation of a run and the counters it sampled), `database` (all
of them as one `JobDatabase`) and `queue` (the JobQueue port over one run).
"""

from .database import JobDatabase
from .history import KEPT_INVOCATIONS, Invocation, InvocationSamples
from .leases import Outcome, new_owner_id
from .planning import PlannedCopy, UpsertCounts
from .queue import FINISH_BATCH, FINISH_DELAY, SqliteQueue
from .ranges import PassRanges
from .schema import SCHEMA_VERSION, Run

__all__ = [
    "FINISH_BATCH",
    "FINISH_DELAY",
    "KEPT_INVOCATIONS",
    "SCHEMA_VERSION",
    "Invocation",
    "InvocationSamples",
    "JobDatabase",
    "Outcome",
    "PassRanges",
    "PlannedCopy",
    "Run",
    "SqliteQueue",
    "UpsertCounts",
    "new_owner_id",
]
