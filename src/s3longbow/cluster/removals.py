"""Objects removed at the source (ObjectRemoved and lifecycle expiration events): the copy is
deleted only when allowed and when the source is really gone, and each removal is recorded in
the job table as done, skipped or failed, with the reason."""

from __future__ import annotations

import logging

from s3longbow.errors import LongbowError, PermanentError
from s3longbow.model import JobState

from .dynamodb import JobTable
from .jobitems import ItemKind
from .messages import RemovalSpec
from .metrics import ClusterCounters
from .stores import StoreCache

log = logging.getLogger(__name__)


def apply_removal(
    removal: RemovalSpec,
    *,
    message_id: str,
    table: JobTable,
    stores: StoreCache,
    delete_removed: bool,
    counters: ClusterCounters,
) -> bool:
    """Apply one removal: delete the destination copy only when `delete_removed` allows it and
    the source is really gone (the event may be older than a new object under the same key).

    Returns:
        False when the message must come back: the removal could not be applied, or its
        failure could not be recorded, now.
    """
    fields = {
        "src_bucket": removal.src_bucket,
        "src_key": removal.src_key,
        "dst_bucket": removal.dst_bucket,
        "dst_key": removal.dst_key,
        "event": removal.event,
        "version_id": removal.version_id,
        "message_id": message_id,
    }
    try:
        if not delete_removed:
            state, reason = (
                JobState.SKIPPED,
                f"the source object was removed ({removal.event}); delete_removed is off, "
                "so the destination copy is kept",
            )
        elif stores.source(removal.src_bucket).head(removal.src_key):
            state, reason = (
                JobState.SKIPPED,
                f"removal event ({removal.event}) ignored: the source object exists again",
            )
        else:
            stores.destination(removal.dst_bucket).delete_object(removal.dst_key)
            state, reason = (
                JobState.DONE,
                f"destination copy deleted: the source object was removed ({removal.event})",
            )
        table.record(removal.id, ItemKind.REMOVE, state, reason, **fields)
    except PermanentError as exc:
        counters.add(errors=1)
        try:
            table.record(removal.id, ItemKind.REMOVE, JobState.FAILED, str(exc), **fields)
        except LongbowError as again:
            log.warning("could not record the removal of %s: %s", removal.src_key, again)
            return False
        return True
    except LongbowError as exc:
        log.warning("removal of %s failed: %s; the message comes back", removal.dst_key, exc)
        counters.add(errors=1)
        return False
    counters.add(
        removals_applied=int(state is JobState.DONE),
        removals_skipped=int(state is JobState.SKIPPED),
    )
    log.info(
        "%s: %s",
        removal.src_key,
        reason,
        extra={"fields": {"event": "removal", "state": state.value, **fields}},
    )
    return True


__all__ = ["apply_removal"]
