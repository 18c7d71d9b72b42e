"""The merge of two sorted listings, on plain lists."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest

from s3longbow.errors import FatalError
from s3longbow.model import ObjectInfo
from s3longbow.plan.diff import Action, Decision, comparator, diff, map_key, settle
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.verdicts import NOT_REPLACED


def objs(*items: tuple[str, int]) -> list[ObjectInfo]:
    return [ObjectInfo(key=k, size=s) for k, s in items]


def test_missing_different_and_same_objects() -> None:
    src = objs(("a", 1), ("b", 2), ("c", 3), ("d", 4))
    dst = objs(("b", 2), ("c", 30), ("z", 9))
    got = [(d.action, d.src.key) for d in diff(src, dst, src_prefix="", dst_prefix="")]
    assert got == [
        (Action.COPY, "a"),
        (Action.SAME, "b"),
        (Action.COPY, "c"),
        (Action.COPY, "d"),
    ]


def test_prefix_is_replaced_exactly_without_normalisation() -> None:
    keys = ["p//x", "p/./y", "p/a b+c%20", "p/é/ü", "p/" + "k" * 1022]
    src = [ObjectInfo(k, 1) for k in sorted(keys)]
    out = list(diff(src, [], src_prefix="p", dst_prefix="/q/"))
    assert [d.dst_key for d in out] == ["/q/" + k[1:] for k in sorted(keys)]
    assert map_key("p//x", "p/", "") == "/x"


def test_destination_prefix_is_compared_on_the_suffix() -> None:
    src = objs(("src/a", 1), ("src/b", 2))
    dst = objs(("dst/a", 1), ("dst/b", 5))
    got = [d.action for d in diff(src, dst, src_prefix="src/", dst_prefix="dst/")]
    assert got == [Action.SAME, Action.COPY]


def test_ignored_and_unsupported_keys() -> None:
    rules = IgnoreRules(["bkt/*.tmp", "bkt/logs/*"])
    src = objs(("a.tmp", 1), ("dir/", 0), ("keep", 1), ("logs/x", 1))
    out = list(
        diff(
            src,
            [],
            src_prefix="",
            dst_prefix="",
            ignored=lambda k: rules.matches("bkt", k),
            unsupported=lambda k: "marker" if k.endswith("/") else None,
        )
    )
    assert [d.action for d in out] == [
        Action.IGNORED,
        Action.UNSUPPORTED,
        Action.COPY,
        Action.IGNORED,
    ]


def test_ignore_patterns_match_bucket_and_key_as_the_original_did() -> None:
    rules = IgnoreRules(["*.jpg", "bkt/dir/"])
    assert rules.matches("any", "x/y.jpg")
    assert rules.matches("bkt", "dir/")
    assert not rules.matches("bkt", "dir/file")
    assert not rules.matches("other", "dir/")
    assert not IgnoreRules([])


def test_out_of_order_listing_stops_the_plan() -> None:
    with pytest.raises(FatalError, match="not in the expected key order"):
        list(diff(objs(("b", 1), ("a", 1)), [], src_prefix="", dst_prefix=""))
    with pytest.raises(FatalError, match="destination"):
        list(diff(objs(("a", 1), ("c", 1)), objs(("b", 1), ("a", 1)), src_prefix="", dst_prefix=""))
    # Past the last source key, while looking for extras; and a key listed twice.
    with pytest.raises(FatalError, match="destination"):
        list(
            diff(
                objs(("a", 1)),
                objs(("a", 1), ("c", 1), ("b", 1)),
                src_prefix="",
                dst_prefix="",
                extra=lambda obj: None,
            )
        )
    with pytest.raises(FatalError, match="destination"):
        list(diff(objs(("c", 1)), objs(("a", 1), ("a", 1)), src_prefix="", dst_prefix=""))
    # Judged by the listings' own order where one is given: "a/b" < "a-c" folder by folder.
    from s3longbow.plan.order import SEGMENTS, order_key

    by_segments = order_key(SEGMENTS)
    in_order = objs(("a/b", 1), ("a-c", 1))
    assert len(list(diff(in_order, [], src_prefix="", dst_prefix="", order=by_segments))) == 2
    with pytest.raises(FatalError, match="destination"):
        list(
            diff(
                objs(("z", 1)),
                objs(("a-c", 1), ("a/b", 1)),
                src_prefix="",
                dst_prefix="",
                order=by_segments,
            )
        )


def test_merge_is_streaming() -> None:
    # A generator that would take forever to materialise must still yield decisions lazily.
    def endless():
        i = 0
        while True:
            yield ObjectInfo(f"{i:012d}", 1)
            i += 1

    out = diff(endless(), iter([]), src_prefix="", dst_prefix="")
    first = [next(out) for _ in range(3)]
    assert [d.src.key for d in first] == ["000000000000", "000000000001", "000000000002"]


def test_segment_ordered_listings_merge_and_resort() -> None:
    from s3longbow.plan.order import SEGMENTS, order_key, resorted

    keys = ["a", "b-c", "b.x", "b/1", "b/2", "b0"]
    seg = sorted(keys, key=order_key(SEGMENTS))
    assert seg == ["a", "b/1", "b/2", "b-c", "b.x", "b0"]
    src = [ObjectInfo(k, 1) for k in seg]
    # The destination lists in byte order; re-sorted on disk, it merges with a segment source.
    dst = resorted([ObjectInfo(k, 1) for k in sorted(keys) if k != "b.x"], SEGMENTS)
    out = list(diff(src, dst, src_prefix="", dst_prefix="", order=order_key(SEGMENTS)))
    assert [(d.src.key, d.action) for d in out if d.action is Action.COPY] == [("b.x", Action.COPY)]
    # Merged in the wrong order, the same listings would raise instead of guessing.
    with pytest.raises(FatalError):
        list(diff(src, [], src_prefix="", dst_prefix=""))


def test_destination_objects_without_a_source_are_reported_as_extra() -> None:
    extras: list[str] = []
    src = objs(("b", 1), ("d", 1))
    dst = objs(("a", 1), ("b", 1), ("c", 1), ("e", 1), ("f", 1))
    out = list(diff(src, dst, src_prefix="", dst_prefix="", extra=lambda o: extras.append(o.key)))
    assert [d.action for d in out] == [Action.SAME, Action.COPY]
    assert extras == ["a", "c", "e", "f"]


def test_a_destination_object_whose_source_is_left_out_is_no_extra() -> None:
    # Left out by the ignore patterns or the filters, a source still has its destination copy:
    # that copy is neither compared nor reported as extra (so never deleted).
    extras: list[str] = []
    src = objs(("a", 1), ("b", 500), ("c.tmp", 1), ("d", 1))
    dst = objs(("a", 1), ("b", 7), ("c.tmp", 9), ("d", 2), ("e", 1))
    out = list(
        diff(
            src,
            dst,
            src_prefix="",
            dst_prefix="",
            ignored=lambda k: k.endswith(".tmp"),
            filtered=lambda o, k: "too large" if o.size > 100 else None,
            extra=lambda o: extras.append(o.key),
        )
    )
    assert [(d.src.key, d.action, d.reason) for d in out] == [
        ("a", Action.SAME, "already at destination"),
        ("b", Action.FILTERED, "too large"),
        ("c.tmp", Action.IGNORED, "matches an ignore pattern"),
        ("d", Action.COPY, "size differs (1 at source, 2 at destination)"),
    ]
    assert extras == ["e"]


def test_filters_see_the_key_after_the_prefix() -> None:
    seen: list[str] = []
    src = objs(("in/a", 1), ("in/b/c", 1))
    list(
        diff(
            src,
            [],
            src_prefix="in/",
            dst_prefix="out/",
            filtered=lambda o, k: seen.append(k),  # type: ignore[func-returns-value]
        )
    )
    assert seen == ["a", "b/c"]


# -- compare modes -------------------------------------------------------------------------

MD5_A, MD5_B = "a" * 32, "b" * 32


def _pair(
    src_etag: str, dst_etag: str, *, src_time: float = 1.0, dst_time: float = 2.0
) -> tuple[ObjectInfo, ObjectInfo]:
    return (
        ObjectInfo("k", 10, src_etag, last_modified=src_time),
        ObjectInfo("k", 10, dst_etag, last_modified=dst_time),
    )


def test_size_mode_ignores_etags_and_times() -> None:
    rule = comparator("size")
    assert rule(*_pair(MD5_A, MD5_B, src_time=9.0)) is None
    assert rule(ObjectInfo("k", 1), ObjectInfo("k", 2)) is not None


@pytest.mark.parametrize(
    ("src", "dst", "differs"),
    [
        (MD5_A, MD5_A, False),
        (MD5_A, MD5_B, True),
        (f"{MD5_A}-3", f"{MD5_B}-3", True),  # same layout: comparable
        (f"{MD5_A}-3", f"{MD5_B}-4", False),  # other part count: not comparable
        (MD5_A, f"{MD5_B}-2", False),  # one PUT against multipart: not comparable
        ("opaque", MD5_B, False),
    ],
)
def test_etag_mode_compares_only_comparable_etags(src: str, dst: str, differs: bool) -> None:
    assert (comparator("etag")(*_pair(src, dst)) is not None) is differs


def test_etag_mode_falls_back_to_size_where_etags_describe_no_content() -> None:
    assert comparator("etag", content_etags=False)(*_pair(MD5_A, MD5_B)) is None
    multipart = _pair(f"{MD5_A}-3", f"{MD5_B}-3")
    assert comparator("etag", multipart_etags=False)(*multipart) is None


def test_mtime_mode_copies_a_newer_source() -> None:
    rule = comparator("mtime")
    assert rule(*_pair(MD5_A, MD5_A, src_time=5.0, dst_time=2.0)) == (
        "source is newer than the destination"
    )
    assert rule(*_pair(MD5_A, MD5_B, src_time=1.0, dst_time=2.0)) is None


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown compare mode"):
        comparator("checksum")


def test_version_mode_copies_a_current_version_other_than_the_one_copied() -> None:
    copied = {"k": "v1"}
    rule = comparator("version", copied_version=copied.get)
    src = ObjectInfo("k", 10, MD5_A, version_id="v2")
    dst = ObjectInfo("k", 10, MD5_A)
    assert rule(src, dst) == "version v2 is current, v1 was copied"
    assert rule(ObjectInfo("k", 10, MD5_A, version_id="v1"), dst) is None
    assert rule(ObjectInfo("new", 10, MD5_A, version_id="v9"), dst) is None  # no record: size


def test_settle_keeps_the_order_and_makes_each_answer_its_decisions_own() -> None:
    answers: dict[str, Future[str | None]] = {k: Future() for k in ("b", "c")}
    made = [
        Decision(Action.COPY, ObjectInfo("a", 1, MD5_A), "a", "missing at destination"),
        Decision(Action.COPY, ObjectInfo("b", 1, MD5_A), "b", "", pending=answers["b"]),
        Decision(Action.NOT_REPLACED, ObjectInfo("c", 1, MD5_A), "c", "", pending=answers["c"]),
        Decision(Action.COPY, ObjectInfo("d", 1, MD5_A), "d", "missing at destination"),
    ]
    settled = settle(iter(made), window=8)
    assert next(settled).src.key == "a"  # nothing before it waits
    answers["c"].set_result("source is newer than the destination")
    answers["b"].set_result(None)
    rest = list(settled)
    assert [d.src.key for d in rest] == ["b", "c", "d"]
    assert (rest[0].action, rest[0].reason) == (Action.SAME, "already at destination")
    assert rest[1].action is Action.NOT_REPLACED
    assert rest[1].reason == f"{NOT_REPLACED}: source is newer than the destination"
    assert all(d.pending is None for d in rest)


def test_settle_reads_no_further_ahead_than_its_window() -> None:
    read: list[str] = []
    waiting: Future[str | None] = Future()

    def produced() -> Iterator[Decision]:
        for key in "abcdef":
            read.append(key)
            if key == "c":
                waiting.set_result("size differs")  # answered as the third is read
            pending = waiting if key == "a" else None
            yield Decision(Action.COPY, ObjectInfo(key, 1, MD5_A), key, "", pending=pending)

    settled = settle(produced(), window=2)
    assert next(settled).src.key == "a"
    assert read == ["a", "b", "c"]  # the one waited for, and two more at most


def test_mtime_rule_defers_only_what_needs_a_lookup() -> None:
    deferred: list[Callable[[], str | None]] = []

    def defer(judge: Callable[[], str | None]) -> Future[str | None]:
        deferred.append(judge)
        answer: Future[str | None] = Future()
        answer.set_result(judge())
        return answer

    rule = comparator("mtime", stated_mtimes=(lambda obj: 1.0, None), defer=defer)
    # Older by the listing: decided at once, no lookup.
    assert rule(*_pair(MD5_A, MD5_A, src_time=1.0, dst_time=2.0)) is None
    assert not deferred
    answer = rule(*_pair(MD5_A, MD5_A, src_time=5.0, dst_time=2.0))
    assert isinstance(answer, Future) and answer.result() is None  # states 1.0: not newer
    assert len(deferred) == 1
