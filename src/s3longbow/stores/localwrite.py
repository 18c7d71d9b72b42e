"""Putting a written file in place in a directory store: over the old one, or only where none
is (--no-overwrite), across a mount inside the root, and the errors a write can end in."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from s3longbow.errors import FatalError, LongbowError, NotReplacedError, PermanentError
from s3longbow.verdicts import not_replaced_reason


def replace_across_devices(tmp: Path, path: Path) -> None:
    """A file system mounted inside the root: stage the file beside its target instead."""
    staged = path.parent / f".{path.name[:200]}.longbow-{uuid.uuid4().hex}"
    try:
        shutil.copyfile(tmp, staged)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def link_new(tmp: Path, path: Path) -> None:
    """Put `tmp` in place under `path` only where nothing has that name (atomically)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise NotReplacedError(not_replaced_reason(str(path))) from None


def write_error(root: Path, path: Path, exc: OSError) -> LongbowError:
    """What a failed write under `root` means for the run."""
    # A full disk fails every job the same way: stop the run rather than fail them all.
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return FatalError(
            f"the destination {root} is full: cannot write {path} ({exc.strerror})",
            hint="free some space (or raise the quota) and run the same command again",
        )
    hint = (
        "check the permissions and mount options of the destination directory"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        else None
    )
    return PermanentError(f"cannot write {path}: {exc.strerror}", hint=hint)


__all__ = ["link_new", "replace_across_devices", "write_error"]
