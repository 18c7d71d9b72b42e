"""Modification times as user metadata: `x-amz-meta-mtime`, in the form rclone (and
python-swiftclient before it) writes: seconds since the epoch in fixed point, with up to nine
decimals and no trailing zeros ("1354040105.123456789", "1700000000"). Held here as whole
nanoseconds, so a time read from a file, written as metadata and applied to another file comes
back exactly."""

from __future__ import annotations

import re
from collections.abc import Iterable

# The user metadata name (S3 keeps names in lower case; x-amz-meta- is the header's prefix).
MTIME_METADATA = "mtime"

_FIXED_POINT = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")
_NS = 1_000_000_000


def format_mtime(ns: int) -> str:
    """A time in nanoseconds since the epoch as metadata text (rclone's form)."""
    if ns < 0:
        return "-" + format_mtime(-ns)
    seconds, fraction = divmod(ns, _NS)
    decimals = f"{fraction:09d}".rstrip("0")
    return f"{seconds}.{decimals}" if decimals else str(seconds)


def parse_mtime(text: str) -> int | None:
    """Nanoseconds since the epoch from metadata text (None when it is not in that form;
    decimals past the ninth are dropped, as rclone drops them)."""
    match = _FIXED_POINT.match(text.strip())
    if match is None:
        return None
    sign, seconds, decimals = match.groups()
    ns = int(seconds) * _NS + int((decimals or "")[:9].ljust(9, "0"))
    return -ns if sign else ns


def stated_mtime(metadata: Iterable[tuple[str, str]]) -> int | None:
    """The modification time an object's user metadata states, in nanoseconds (None where it
    states none, or one in another form)."""
    for name, value in metadata:
        if name.lower() == MTIME_METADATA:
            return parse_mtime(value)
    return None


__all__ = ["MTIME_METADATA", "format_mtime", "parse_mtime", "stated_mtime"]
