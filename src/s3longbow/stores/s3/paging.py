"""Where the next page of a listing starts.

A listing goes on from the server's own continuation (a ListObjectsV2 token, or the
NextMarker of the older ListObjects form). A page that says it is truncated but gives no way
on (what a V1-only or buggy server sends) must never be taken for the last one: that would
copy part of a bucket, report it complete, and let ``--delete`` remove what is still at the
source. Such a listing goes on right after the last name it received (``start-after``, or
``marker`` for a V1 reply) only where the server lists in byte order, so that nothing can sit
between two pages; elsewhere, and when a page asked for that way brings nothing new, the
listing fails with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3longbow.errors import FatalError

_HINT = (
    "the listing cannot be completed, so nothing was copied from it or deleted; the server "
    "does not page its listings the S3 way (ListObjectsV2 continuation tokens)"
)


@dataclass(frozen=True, slots=True)
class NextPage:
    """How to ask for a page: after a continuation token, after a key (``start-after``), or
    after a marker (the older ListObjects form); nothing set asks for the first page."""

    token: str | None = None
    start_after: str | None = None
    marker: str | None = None

    @property
    def by_name(self) -> bool:
        """Asked for after a name, so the page may repeat names up to it."""
        return self.start_after is not None or self.marker is not None


FIRST = NextPage()


def next_page(
    where: str,
    *,
    truncated: bool,
    token: str | None,
    next_marker: str | None = None,
    v1: bool = False,
    last_name: str | None,
    byte_order: bool,
) -> NextPage | None:
    """Where the listing goes on after a page; None after its last page.

    Args:
        where: What is listed, for the error (e.g. "listing s3://bucket/prefix").
        truncated: The page says more follows.
        token: Its continuation token, if it gave one.
        next_marker: Its NextMarker, in the older ListObjects form.
        v1: The reply is in the older ListObjects form (it takes ``marker``, not
            ``start-after``).
        last_name: The greatest key or common prefix the page held (None if it held none).
        byte_order: The server lists in UTF-8 byte order, so "after this name" skips nothing.

    Raises:
        FatalError: The page is truncated and gives no way on that cannot skip keys.
    """
    if not truncated:
        return None
    if token:
        return NextPage(token=token)
    if v1 and next_marker:
        return NextPage(marker=next_marker)
    if last_name is None:
        raise FatalError(
            f"{where}: the server said the listing goes on but sent an empty page with no "
            "continuation token",
            hint=_HINT,
        )
    if not byte_order:
        raise FatalError(
            f"{where}: the server said the listing goes on but gave no continuation token, "
            "and it lists keys in an order where going on after the last key could skip keys",
            hint=_HINT,
        )
    return NextPage(marker=last_name) if v1 else NextPage(start_after=last_name)


def after(asked: NextPage, last: str | None) -> str | None:
    """The name a page's entries must come after: the last one handed out, when the page was
    asked for by name (a delimited listing asked to start after a common prefix repeats it);
    None when every entry of the page is new."""
    return last if asked.by_name else None


def no_progress(where: str, last: str) -> FatalError:
    """A page asked for after `last` held nothing after it: the server ignored where the page
    was to start, and asking again would loop."""
    return FatalError(
        f"{where}: the server said the listing goes on, but the page asked for after "
        f"{last!r} brought no key after it (it ignores start-after and marker)",
        hint=_HINT,
    )


__all__ = ["FIRST", "NextPage", "after", "next_page", "no_progress"]
