"""`longbow verify`: compare two sides by streaming both listings; optionally re-read data.

Sizes and content ETags decide where they can: two plain MD5 ETags, or two equal ETags, are a
proof either way. Where they cannot (multipart ETags with other part layouts, encrypted
sources), the additional checksums both sides report decide when they are of one algorithm
and one form (a HEAD each); anything else (a local file) is unverifiable unless `deep` reads
both objects and compares their MD5s.

A missing key is looked up with a HEAD: a store that answers for a name its listing lacks
keeps the object under another name (it cannot store this key), which is said so.

The ignore patterns and the filters leave objects out as they do for `sync`: what they leave
out is neither compared nor reported missing or extra.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from s3longbow.config import Settings
from s3longbow.errors import ObjectError
from s3longbow.model import ObjectInfo
from s3longbow.pairs import PairRuntime, open_pairs
from s3longbow.plan.diff import Action, diff
from s3longbow.plan.filters import Filters, relative_key
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.listing import list_concurrently, read_ahead
from s3longbow.plan.order import order_key, resorted
from s3longbow.plan.planner import unless_left_out
from s3longbow.plan.unstorable import answers_for
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.proof import is_md5_etag
from s3longbow.verdicts import EMPTIED, RENAMED, UNSTORABLE, kept_without_bytes

_CHUNK = 8 * 1024 * 1024
MAX_LISTED = 100_000  # keys kept per category for the report; counts are always complete


class Verdict(enum.StrEnum):
    MATCH = "match"
    MISSING = "missing"
    EXTRA = "extra"
    DIFFERENT = "different"
    UNVERIFIABLE = "unverifiable"


@dataclass
class VerifyReport:
    """Counts per verdict, and the keys that did not match (with why)."""

    counts: dict[str, int] = field(default_factory=lambda: {v.value: 0 for v in Verdict})
    keys: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: {v.value: [] for v in Verdict if v is not Verdict.MATCH}
    )
    deep: bool = False
    ignored: int = 0
    filtered: int = 0  # source objects the filters left out (not compared)
    elapsed: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, verdict: Verdict, key: str, reason: str = "") -> None:
        with self._lock:
            self.counts[verdict.value] += 1
            if verdict is not Verdict.MATCH and len(self.keys[verdict.value]) < MAX_LISTED:
                self.keys[verdict.value].append((key, reason))

    @property
    def ok(self) -> bool:
        return all(n == 0 for v, n in self.counts.items() if v != Verdict.MATCH.value)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "deep": self.deep,
            "counts": self.counts,
            "ignored": self.ignored,
            "filtered": self.filtered,
            "elapsed_seconds": round(self.elapsed, 3),
            **{
                verdict: [{"key": k, "reason": r} for k, r in items]
                for verdict, items in self.keys.items()
            },
        }


def compare(
    src: ObjectInfo, dst: ObjectInfo, src_store: ObjectStore, dst_store: ObjectStore
) -> tuple[Verdict, str]:
    """Judge one pair of objects from their listings alone."""
    if kept_without_bytes(src, dst):
        return Verdict.DIFFERENT, f"{UNSTORABLE}: " + EMPTIED.format(found=dst.size, size=src.size)
    if src.size != dst.size:
        return Verdict.DIFFERENT, f"size {src.size} at source, {dst.size} at destination"
    if not (src_store.capabilities.content_etag and dst_store.capabilities.content_etag):
        return Verdict.UNVERIFIABLE, "a local file has no content fingerprint"
    if src.etag and src.etag == dst.etag:
        return Verdict.MATCH, ""
    if is_md5_etag(src.etag) and is_md5_etag(dst.etag):
        return Verdict.DIFFERENT, f"MD5 {src.etag} at source, {dst.etag} at destination"
    return Verdict.UNVERIFIABLE, f"ETags {src.etag} and {dst.etag} are not comparable"


def closer_look(
    src: ObjectInfo, dst: ObjectInfo, src_store: ObjectStore, dst_store: ObjectStore
) -> tuple[Verdict, str] | None:
    """Judge a pair the listings could not (or judged by ETags) from a HEAD of each side:
    the additional checksums decide where they are of one algorithm and one form; ETags of
    an encrypted object prove nothing either way. None: only the data can tell."""
    if "MD5" in (src_store.capabilities.checksums, dst_store.capabilities.checksums):
        return None
    a_props = src_store.details(src.key, src.etag).properties
    b_props = dst_store.details(dst.key, dst.etag).properties
    a, b = a_props.checksum, b_props.checksum
    if a is not None and b is not None and (a.algorithm, a.parts) == (b.algorithm, b.parts):
        if a.value == b.value:
            return Verdict.MATCH, ""
        return Verdict.DIFFERENT, f"checksum {a} at source, {b} at destination"
    if a_props.encrypted or b_props.encrypted:
        return Verdict.UNVERIFIABLE, "encrypted with KMS or a customer key: its ETag is no MD5"
    return None


def content_md5(store: ObjectStore, obj: ObjectInfo) -> str:
    """MD5 of an object's bytes, read in pinned ranges."""
    digest = hashlib.md5()
    for start in range(0, obj.size, _CHUNK):
        digest.update(store.get_range(obj.key, start, min(_CHUNK, obj.size - start), etag=obj.etag))
    return digest.hexdigest()


def verify(settings: Settings, *, deep: bool = False) -> VerifyReport:
    """Compare every pair's source and destination; nothing is written anywhere."""
    started = time.monotonic()
    report = VerifyReport(deep=deep)
    ignore = IgnoreRules(settings.ignore_patterns)
    filters = Filters(settings.filters, now=time.time())
    with open_pairs(settings, read_only=True) as pairs:
        with ThreadPoolExecutor(settings.transfer.workers) as pool:
            for pair in pairs:
                _verify_pair(pair, ignore, filters, report, pool, deep=deep)
    report.elapsed = time.monotonic() - started
    return report


def _verify_pair(
    pair: PairRuntime,
    ignore: IgnoreRules,
    filters: Filters,
    report: VerifyReport,
    pool: ThreadPoolExecutor,
    *,
    deep: bool,
) -> None:
    src_order = pair.src_store.capabilities.listing_order
    dst_listing: Iterable[ObjectInfo] = list_concurrently(pair.dst_store, pair.dst_prefix)
    if pair.dst_store.capabilities.listing_order != src_order:
        dst_listing = read_ahead(resorted(dst_listing, src_order))
    pending = []

    def look_closer(src: ObjectInfo, dst: ObjectInfo, verdict: Verdict, reason: str) -> None:
        try:
            judged = closer_look(src, dst, pair.src_store, pair.dst_store)
        except ObjectError:
            judged = None
        if judged is not None:
            verdict, reason = judged
        if verdict is Verdict.UNVERIFIABLE and deep:
            deep_compare(src, dst, reason)
        else:
            report.add(verdict, src.key, reason)

    def missing(src: ObjectInfo, dst_key: str) -> None:
        reason = f"{dst_key} is missing"
        if answers_for(pair.dst_store, dst_key):
            reason += f"; {UNSTORABLE}: {RENAMED}"
        report.add(Verdict.MISSING, src.key, reason)

    def deep_compare(src: ObjectInfo, dst: ObjectInfo, reason: str) -> None:
        try:
            a = content_md5(pair.src_store, src)
            b = content_md5(pair.dst_store, dst)
        except ObjectError as exc:
            report.add(Verdict.UNVERIFIABLE, src.key, f"{reason}; reading failed: {exc}")
            return
        if a == b:
            report.add(Verdict.MATCH, src.key)
        else:
            report.add(Verdict.DIFFERENT, src.key, f"content MD5 {a} at source, {b} at destination")

    def ignored(key: str) -> bool:
        return bool(ignore) and ignore.matches(pair.ignore_bucket, key)

    def filtered(obj: ObjectInfo, suffix: str) -> str | None:
        return filters.excludes(relative_key(pair.src_prefix, suffix), obj)

    decisions = diff(
        list_concurrently(pair.src_store, pair.src_prefix),
        dst_listing,
        src_prefix=pair.src_prefix,
        dst_prefix=pair.dst_prefix,
        differs=lambda s, d: None,  # every present pair is judged below
        ignored=ignored,
        filtered=filtered if filters else None,
        order=order_key(src_order),
        # What the ignore patterns and the key filters leave out is not an extra either.
        extra=unless_left_out(
            pair,
            ignored,
            filters,
            lambda obj: report.add(Verdict.EXTRA, obj.key, "not at the source"),
        ),
    )

    def submit(task: Callable[..., None], *args: object) -> None:
        pending.append(pool.submit(task, *args))
        if len(pending) > 1000:  # keep the queue of lookups bounded
            pending.pop(0).result()

    for decision in decisions:
        if decision.action is Action.FILTERED:
            report.filtered += 1
        elif decision.action in (Action.IGNORED, Action.UNSUPPORTED):
            report.ignored += 1
        elif decision.dst is None:
            # Only keys that are listed with their reason are worth a HEAD.
            if len(report.keys[Verdict.MISSING.value]) + len(pending) < MAX_LISTED:
                submit(missing, decision.src, decision.dst_key)
            else:
                report.add(Verdict.MISSING, decision.src.key, f"{decision.dst_key} is missing")
        else:
            verdict, reason = compare(decision.src, decision.dst, pair.src_store, pair.dst_store)
            # Sizes that differ settle it; anything else may be settled by checksums.
            settled = decision.src.size != decision.dst.size or verdict is Verdict.MATCH
            if not settled:
                submit(look_closer, decision.src, decision.dst, verdict, reason)
            else:
                report.add(verdict, decision.src.key, reason)
    for future in pending:
        future.result()
