"""Sources that must be restored before they can be read: objects in S3 Glacier Flexible
Retrieval or Glacier Deep Archive, and objects in an archive tier of Intelligent-Tiering.

What the listing said decides first, with no request: an object of an archive class with no
readable restored copy is archived, and one whose restore is under way waits for it. With
restore days set, the restore of such an object is asked for (at most once an attempt: a
restore already under way is what was wanted), and one found readable already is copied at
once. A read refused for the object's state (InvalidObjectState: an Intelligent-Tiering
archive tier, which no listing shows) means the same. A read that succeeds is the final
word: an object whose restore an earlier run asked for is read again, and copied if it can be.

Each outcome is an ArchivedError whose message is what the job's record says; `restoring`
tells a restore asked for (or under way) from one still needed.
"""

from __future__ import annotations

import logging
import time

from s3longbow.errors import ArchivedError, LongbowError, ObjectError, TransientError
from s3longbow.model import Job, RestoreStatus, needs_restore
from s3longbow.stores.base import Restorable, RestoreAnswer
from s3longbow.transfer.context import Context

log = logging.getLogger(__name__)

DEFAULT_TIER = "Standard"
# Expedited retrievals are not offered for Glacier Deep Archive.
_SLOWEST_EXPEDITED = "DEEP_ARCHIVE"
# Restored objects of its archive tiers move back to a tier that reads, with no expiry: their
# restore must name no days.
_TIERED = "INTELLIGENT_TIERING"

NEEDS_RESTORE_HINT = (
    "rerun with --restore-days N (and --restore-tier Bulk|Standard|Expedited) to ask for "
    "restores; restores take hours and are billed; then run the same command again"
)
RESTORING_HINT = (
    "run the same command again once the restores finish (minutes with Expedited, 3-5 hours "
    "with Standard, 5-12 with Bulk; up to 48 hours from Deep Archive)"
)


def before_copy(ctx: Context, job: Job) -> bool:
    """Decide from what the listing said of the source, before any read.

    Returns:
        Whether a restore was asked for here (and found the object readable: copy it).

    Raises:
        ArchivedError: The object cannot be read yet.
    """
    if not needs_restore(job.storage_class, job.restore):
        return False
    if job.restore is RestoreStatus.IN_PROGRESS:
        raise _restoring(job, job.storage_class, "restore in progress")
    if ctx.settings.restore_days is not None:
        if _ask(ctx, job, job.storage_class) in (RestoreAnswer.READY, RestoreAnswer.NOT_ARCHIVED):
            return True
        raise _asked(ctx, job, job.storage_class)
    if job.restore_requested is not None:
        return False  # an earlier run asked for its restore: a read tells whether it finished
    raise _needed(job.storage_class)


def refused(ctx: Context, job: Job, exc: ArchivedError, *, asked: bool) -> ObjectError:
    """What to raise for a read refused because the source is archived (`asked`: a restore
    was asked for already in this attempt)."""
    storage_class = job.storage_class or exc.storage_class
    if ctx.settings.restore_days is not None and not asked:
        storage_class = storage_class or _class_of(ctx, job)
        if _ask(ctx, job, storage_class) in (RestoreAnswer.READY, RestoreAnswer.NOT_ARCHIVED):
            # The store says it reads, after refusing a read: try again in a while.
            return TransientError(f"{exc.message}; the store says a restored copy is readable")
        return _asked(ctx, job, storage_class)
    if job.restore_requested is not None or asked:
        return _restoring(job, storage_class, "restore requested, not finished yet")
    return _needed(storage_class)


def _ask(ctx: Context, job: Job, storage_class: str | None) -> RestoreAnswer:
    """Ask the source to restore the job's object; remember when in the job."""
    store = ctx.src
    if not isinstance(store, Restorable):
        return RestoreAnswer.NOT_ARCHIVED  # a store with no archive tiers: nothing to wait for
    days, tier = _terms(ctx, storage_class)
    answer = store.restore_object(job.src_key, days=days, tier=tier, version_id=job.version_id)
    log.info("%s: restore asked for (%s): %s", job.src_key, tier, answer.value)
    if answer is RestoreAnswer.STARTED or job.restore_requested is None:
        job.restore_requested = time.time()
    return answer


def _terms(ctx: Context, storage_class: str | None) -> tuple[int | None, str]:
    """The days (none for an Intelligent-Tiering archive tier: its restored objects stay)
    and the tier of a restore."""
    tier = ctx.settings.restore_tier or DEFAULT_TIER
    if tier == "Expedited" and storage_class == _SLOWEST_EXPEDITED:
        tier = DEFAULT_TIER
    days = None if storage_class == _TIERED else ctx.settings.restore_days
    return days, tier


def _class_of(ctx: Context, job: Job) -> str | None:
    """The source's storage class from a HEAD, for a job whose listing did not name it (the
    restore of an archive class needs days; that of an Intelligent-Tiering tier must not)."""
    try:
        return ctx.src.details(job.src_key, job.etag, version_id=job.version_id).storage_class
    except LongbowError:
        return None


def _label(storage_class: str | None) -> str:
    return f"archived ({storage_class})" if storage_class else "archived"


def _needed(storage_class: str | None) -> ArchivedError:
    return ArchivedError(
        f"{_label(storage_class)}: needs a restore before it can be read",
        storage_class=storage_class,
        hint=NEEDS_RESTORE_HINT,
    )


def _restoring(job: Job, storage_class: str | None, what: str) -> ArchivedError:
    if job.restore_requested is None:
        job.restore_requested = time.time()  # found under way: waited for from now
    return ArchivedError(
        f"{_label(storage_class)}: {what}",
        storage_class=storage_class,
        restoring=True,
        hint=RESTORING_HINT,
    )


def _asked(ctx: Context, job: Job, storage_class: str | None) -> ArchivedError:
    days, tier = _terms(ctx, storage_class)
    terms = f"{tier}, {days} day(s)" if days is not None else tier
    return _restoring(job, storage_class, f"restore requested ({terms})")


__all__ = [
    "NEEDS_RESTORE_HINT",
    "RESTORING_HINT",
    "before_copy",
    "refused",
]
