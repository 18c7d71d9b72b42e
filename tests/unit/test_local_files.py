"""The pure parts of local folders as first-class sides: the mtime metadata's form (rclone's),
the part sizes tried for a multipart ETag, a file judged against an object in every form its
ETag can take (a store in memory for the object, a real folder for the file), and
--compare mtime with stated times."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3longbow.config import MiB, load_config_file
from s3longbow.model import ObjectInfo
from s3longbow.mtimes import format_mtime, parse_mtime, stated_mtime
from s3longbow.plan.diff import comparator
from s3longbow.stores.local import LocalStore
from s3longbow.transfer.sizing import part_count
from s3longbow.verify import Verdict, file_proof, part_sizes_for

from ..memstore import MemoryStore


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_354_040_105_123_456_789, "1354040105.123456789"),
        (1_700_000_000_000_000_000, "1700000000"),
        (1_700_000_000_500_000_000, "1700000000.5"),
        (1_000, "0.000001"),
        (-1_500_000_000, "-1.5"),
    ],
)
def test_mtime_text_is_rclones_form_and_reads_back_exactly(ns: int, text: str) -> None:
    assert format_mtime(ns) == text
    assert parse_mtime(text) == ns


def test_mtime_text_in_other_forms_states_nothing() -> None:
    assert parse_mtime("1354040105.1234567899") == 1_354_040_105_123_456_789  # 9 decimals kept
    for text in ("", "yesterday", "2017-09-24 19:53:52 +0000", "1e9", "1.2.3"):
        assert parse_mtime(text) is None
    assert stated_mtime((("Other", "1"), ("MTime", "12.5"))) == 12_500_000_000
    assert stated_mtime((("other", "1"),)) is None


def test_part_sizes_tried_all_give_the_etags_part_count() -> None:
    size = 12 * MiB + 5
    sizes = part_sizes_for(size, 3, 8 * MiB)
    assert 5 * MiB in sizes  # another tool's, in 5 MiB parts
    assert all(part_count(size, p) == 3 for p in sizes)
    assert sizes[0] == 5 * MiB  # rclone's; this tool's 8 MiB would make 2 parts
    assert part_sizes_for(100 * MiB, 10, 8 * MiB)[0] == 10 * MiB
    assert part_sizes_for(20 * MiB, 3, 8 * MiB)[0] == 8 * MiB  # this tool's own, first


def _file(folder: Path, key: str, data: bytes) -> ObjectInfo:
    path = folder / key
    path.write_bytes(data)
    info = LocalStore(folder).head(key)
    assert info is not None
    return info


@pytest.mark.parametrize("layout_visible", [True, False])
def test_a_file_is_judged_against_a_multipart_etag(tmp_path: Path, layout_visible: bool) -> None:
    data = os.urandom(11 * MiB + 3)
    bucket = MemoryStore(layout_visible=layout_visible)
    bucket.add("k", data, part_sizes=[6 * MiB, 5 * MiB + 3])  # 6 MiB parts: not usual
    obj = bucket.head("k")
    assert obj is not None and obj.etag is not None and obj.etag.endswith("-2")
    folder = LocalStore(tmp_path)
    file = _file(tmp_path, "k", data)

    verdict, reason = file_proof(file, obj, folder, bucket, 8 * MiB)
    # With the layout told, its part size is used; hidden, 6 MiB is among the sizes tried
    # (the smallest whole MiB that makes two parts).
    assert (verdict, reason) == (Verdict.MATCH, "")

    changed = _file(tmp_path, "k", data[:-1] + bytes([data[-1] ^ 1]))
    verdict, reason = file_proof(obj, changed, bucket, folder, 8 * MiB)
    if layout_visible:
        assert verdict is Verdict.DIFFERENT and "parts of 6291456 bytes" in reason
    else:
        # No part size tried reproduces it: a hidden layout cannot tell that apart from a
        # changed file.
        assert verdict is Verdict.UNVERIFIABLE and "no usual part size" in reason


def test_a_file_is_judged_against_a_plain_and_an_encrypted_object(tmp_path: Path) -> None:
    data = os.urandom(5000)
    bucket = MemoryStore()
    bucket.add("plain", data)
    bucket.add("sealed", data, encrypted=True, checksum="CRC32C")
    bucket.add("bare", data, encrypted=True)
    folder = LocalStore(tmp_path)
    file = _file(tmp_path, "f", data)

    def judge(key: str) -> tuple[Verdict, str]:
        obj = bucket.head(key)
        assert obj is not None
        return file_proof(file, obj, folder, bucket, 8 * MiB)

    assert judge("plain") == (Verdict.MATCH, "")
    assert judge("sealed") == (Verdict.MATCH, "")  # by its CRC32C: the ETag is no MD5
    verdict, reason = judge("bare")
    assert verdict is Verdict.UNVERIFIABLE and "encrypted" in reason

    file = _file(tmp_path, "f", b"x" + data[1:])
    verdict, reason = judge("plain")
    assert verdict is Verdict.DIFFERENT and "MD5" in reason
    verdict, reason = judge("sealed")
    assert verdict is Verdict.DIFFERENT and "CRC32C" in reason


def test_two_files_compare_their_md5s(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    same = (_file(tmp_path / "a", "k", b"one"), _file(tmp_path / "b", "k", b"one"))
    assert file_proof(*same, a, b, 8 * MiB) == (Verdict.MATCH, "")
    other = _file(tmp_path / "b", "k", b"two")
    assert file_proof(same[0], other, a, b, 8 * MiB)[0] is Verdict.DIFFERENT


def test_compare_mtime_takes_the_stated_time_where_the_listing_says_newer() -> None:
    stated = {"src/a": 100.0, "dst/a": 100.0, "dst/b": 50.0}
    asked: list[str] = []

    def lookup(obj: ObjectInfo) -> float | None:
        asked.append(obj.key)
        return stated.get(obj.key)

    newer = comparator("mtime", stated_mtimes=(lookup, lookup))
    # Listed as newer (uploaded later than the file changed), stated as the same time.
    assert (
        newer(
            ObjectInfo("src/a", 1, last_modified=900.0), ObjectInfo("dst/a", 1, last_modified=100.0)
        )
        is None
    )
    # Stated older at the destination: newer.
    reason = newer(
        ObjectInfo("src/b", 1, last_modified=900.0), ObjectInfo("dst/b", 1, last_modified=60.0)
    )
    assert reason == "source is newer than the destination"
    # Listed as not newer: no lookup at all.
    asked.clear()
    assert (
        newer(
            ObjectInfo("src/c", 1, last_modified=10.0), ObjectInfo("dst/c", 1, last_modified=20.0)
        )
        is None
    )
    assert asked == []
    # Without lookups, the listed times decide as before.
    plain = comparator("mtime")
    assert plain(ObjectInfo("a", 1, last_modified=900.0), ObjectInfo("a", 1, last_modified=100.0))


def test_preserve_mtime_is_a_config_file_key(tmp_path: Path) -> None:
    path = tmp_path / "longbow.toml"
    path.write_text("preserve_mtime = true\n")
    assert load_config_file(path)["transfer"] == {"preserve_mtime": True}
