"""Telling a key the destination cannot store from one that is plainly missing or changed."""

from __future__ import annotations

from s3longbow.errors import ObjectError
from s3longbow.model import ObjectInfo
from s3longbow.plan.unstorable import answers_for
from s3longbow.verdicts import (
    emptied_reason,
    is_unstorable,
    kept_without_bytes,
    renamed_reason,
)


class _Heads:
    """A destination whose HEAD finds some names (folded ones included), fails for others."""

    def __init__(self, found: set[str], broken: set[str]) -> None:
        self.found, self.broken = found, broken

    def head(self, key: str) -> ObjectInfo | None:
        if key in self.broken:
            raise ObjectError(f"{key}: access denied")
        return ObjectInfo(key, 1) if key in self.found else None


def test_a_name_that_answers_though_unlisted_is_one_the_store_renames() -> None:
    store = _Heads(found={"a//b"}, broken={"denied"})
    assert answers_for(store, "a//b")  # type: ignore[arg-type]
    assert not answers_for(store, "deleted")  # type: ignore[arg-type]
    assert not answers_for(store, "denied")  # type: ignore[arg-type]  # no proof: missing


def test_the_source_etag_with_other_bytes_is_a_fingerprint_without_its_bytes() -> None:
    src = ObjectInfo("body/", 10, "0123456789abcdef0123456789abcdef")
    assert kept_without_bytes(src, ObjectInfo("body/", 0, src.etag))
    assert not kept_without_bytes(src, ObjectInfo("body/", 3, "another"))  # overwritten
    assert not kept_without_bytes(src, ObjectInfo("body/", 10, src.etag))  # the copy itself
    assert not kept_without_bytes(src, ObjectInfo("body/", 0, None))


def test_reasons_are_recognised_by_their_common_start() -> None:
    src = ObjectInfo("body/", 10, "e")
    assert is_unstorable(renamed_reason()) and is_unstorable(emptied_reason(src, src))
    assert not is_unstorable("no longer needed: the source is gone or the destination matches")
    assert not is_unstorable(None)
