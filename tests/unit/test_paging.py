"""Where a listing goes on after each page: the table of what servers send and what follows."""

from __future__ import annotations

import pytest

from s3longbow.errors import FatalError
from s3longbow.stores.s3 import paging
from s3longbow.stores.s3.paging import NextPage, next_page

W = "listing s3://b/p"


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        # the last page, whatever else it says
        ({"truncated": False, "token": "t", "last_name": "k"}, None),
        ({"truncated": False, "token": None, "last_name": None}, None),
        # the server's own continuation
        ({"truncated": True, "token": "t", "last_name": "k"}, NextPage(token="t")),
        (
            {
                "truncated": True,
                "token": None,
                "v1": True,
                "next_marker": "m",
                "last_name": "k",
                "byte_order": False,
            },
            NextPage(marker="m"),
        ),
        # no way on: after the last name, in byte order only
        ({"truncated": True, "token": None, "last_name": "k"}, NextPage(start_after="k")),
        ({"truncated": True, "token": None, "v1": True, "last_name": "k"}, NextPage(marker="k")),
    ],
)
def test_where_a_listing_goes_on(page: dict[str, object], expected: NextPage | None) -> None:
    options = {"byte_order": True, **page}
    assert next_page(W, **options) == expected  # type: ignore[arg-type]


def test_a_truncated_page_without_a_token_out_of_byte_order_fails() -> None:
    with pytest.raises(FatalError, match="could skip keys") as info:
        next_page(W, truncated=True, token=None, last_name="k", byte_order=False)
    assert "nothing was copied from it or deleted" in (info.value.hint or "")


def test_an_empty_truncated_page_without_a_token_fails() -> None:
    with pytest.raises(FatalError, match="empty page"):
        next_page(W, truncated=True, token=None, last_name=None, byte_order=True)


def test_names_already_handed_out_are_dropped_only_from_pages_asked_by_name() -> None:
    assert paging.after(NextPage(token="t"), "k") is None
    assert paging.after(NextPage(start_after="k"), "k") == "k"
    assert paging.after(NextPage(marker="k"), None) is None
    assert "brought no key after it" in paging.no_progress(W, "k").message
