"""Keys a destination acknowledges but does not keep as written.

Some stores accept a PUT, reply with the MD5 of the bytes (so the copy looks verified), and
then keep the object under another name (SeaweedFS folds `a//b` into `a/b` and drops a
leading `/`) or without its bytes (a non-empty `folder/` becomes an empty directory). Copying
such a key again changes nothing, so a rerun that finds a verified copy in that state records
it once as a key the destination cannot store, and `verify` explains it the same way.

A job planned from an inventory report whose source was deleted since the report is recorded
as such (skipped, with `SOURCE_GONE` at the head of its reason), not as a failure.
"""

from __future__ import annotations

from s3longbow.model import ObjectInfo

UNSTORABLE = "the destination cannot store this key"
RENAMED = (
    "it is not listed under its exact name, though the store answers for that name (it may "
    "rename keys such as a//b or /a)"
)
EMPTIED = (
    "it is listed with {found} bytes and the source's ETag, not {size} (the store may keep "
    "keys such as folder/ as empty directories)"
)


# Why a job planned from an inventory report ended without a copy: its source was deleted
# after the report was made.
SOURCE_GONE = "source gone since inventory"


# Why a job ended without a copy under --no-overwrite: the destination had the key already.
NOT_REPLACED = "exists, not replaced"


def not_replaced_reason(where: str) -> str:
    """The reason recorded for a key the destination got while the run was copying it."""
    return f"{NOT_REPLACED}: {where} appeared at the destination during the copy"


def gone_reason(snapshot: str, where: str) -> str:
    """The reason recorded for a source deleted since `snapshot` ("the inventory of ...")."""
    return f"{SOURCE_GONE}: {where} is not in the bucket now; it was in {snapshot}"


def renamed_reason() -> str:
    """Why a finished copy is absent from the listing while its name still answers."""
    return f"{UNSTORABLE}: after it was copied {RENAMED}"


def emptied_reason(src: ObjectInfo, dst: ObjectInfo) -> str:
    """Why a finished copy is listed with the source's fingerprint but other bytes."""
    return f"{UNSTORABLE}: after it was copied " + EMPTIED.format(found=dst.size, size=src.size)


def is_unstorable(reason: str | None) -> bool:
    """Whether a recorded reason says the destination cannot store the key."""
    return reason is not None and reason.startswith(UNSTORABLE)


def kept_without_bytes(src: ObjectInfo, dst: ObjectInfo) -> bool:
    """The destination lists the source's own ETag with another size: an ETag is a digest of
    the bytes, so it holds the fingerprint of bytes it does not keep."""
    return dst.etag is not None and dst.etag == src.etag and dst.size != src.size
