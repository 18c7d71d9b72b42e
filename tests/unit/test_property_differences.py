"""Which properties differ, as --update-properties decides."""

from __future__ import annotations

from s3longbow.model import Checksum, ObjectProperties
from s3longbow.transfer.properties import differences


def test_equal_properties_differ_in_nothing() -> None:
    props = ObjectProperties(content_type="text/html", metadata=(("Owner", "ops"),))
    # S3 keeps metadata names in lower case; what is not a property does not count.
    other = ObjectProperties(
        content_type="text/html",
        metadata=(("owner", "ops"),),
        checksum=Checksum("CRC32", "AAAAAA=="),
        tag_count=3,
    )
    assert differences(props, other) == []


def test_each_difference_is_named() -> None:
    src = ObjectProperties(
        content_type="text/html", cache_control="no-cache", metadata=(("a", "1"),)
    )
    dst = ObjectProperties(content_type="binary/octet-stream")
    assert differences(src, dst) == ["content_type", "cache_control", "metadata"]


def test_tags_count_only_when_both_sides_are_known() -> None:
    props = ObjectProperties()
    assert differences(props, props, (("k", "v"),), ()) == ["tags"]
    assert differences(props, props, (("k", "v"),), None) == []
    assert differences(props, props, (("a", "1"), ("b", "2")), (("b", "2"), ("a", "1"))) == []
