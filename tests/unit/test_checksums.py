"""S3 additional checksums computed as S3 computes them (values cross-checked on SeaweedFS)."""

from __future__ import annotations

import os

import pytest

from s3longbow import checksums
from s3longbow.model import Checksum

DATA = b"hello world" * 1000


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("CRC32", "iH6F8A=="),
        ("CRC32C", "ROPt5Q=="),
        ("CRC64NVME", "Fg5AiE8Eaws="),
        ("SHA256", "NMeTyb60RAz8O63Wl3YHEhUvy+CJBaaiE3s4lf13Gd8="),
    ],
)
def test_checksum_of_bytes_matches_what_s3_reports(algorithm: str, expected: str) -> None:
    assert checksums.checksum_b64(algorithm, DATA) == expected


def test_composite_is_the_checksum_of_the_part_checksums() -> None:
    parts = [b"a" * 5 * 1024 * 1024, b"b" * 100]
    values = [checksums.checksum_b64("CRC32C", p) for p in parts]
    assert checksums.composite("CRC32C", values) == Checksum("CRC32C", "Drnouw==", parts=2)


@pytest.mark.parametrize("algorithm", checksums.CRC_ALGORITHMS)
def test_part_crcs_combine_into_the_crc_of_all_bytes(algorithm: str) -> None:
    parts = [os.urandom(n) for n in (1, 1000, 65536, 7)]
    combined = checksums.full_object(
        algorithm, [(checksums.checksum_b64(algorithm, p), len(p)) for p in parts]
    )
    assert combined.value == checksums.checksum_b64(algorithm, b"".join(parts))


def test_hashes_have_no_full_object_form() -> None:
    with pytest.raises(ValueError, match="no full-object form"):
        checksums.full_object("SHA256", [("AAAA", 3)])


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("abc=", None, Checksum("CRC32", "abc=")),
        ("abc=-3", "COMPOSITE", Checksum("CRC32", "abc=", parts=3)),
        ("abc=", "FULL_OBJECT", Checksum("CRC32", "abc=")),
        ("abc=", "COMPOSITE", None),  # no part count: cannot be reproduced
        ("", None, None),
    ],
)
def test_parse(text: str, kind: str | None, expected: Checksum | None) -> None:
    assert checksums.parse("CRC32", text, kind) == expected


def test_from_headers_and_names() -> None:
    headers = {"x-amz-checksum-sha256": "xyz=", "x-amz-checksum-type": "FULL_OBJECT"}
    assert checksums.from_headers(headers) == Checksum("SHA256", "xyz=")
    assert checksums.from_headers({}) is None
    assert checksums.normalise_algorithm("crc-32c") == "CRC32C"
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        checksums.normalise_algorithm("md4")


@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_a_running_checksum_fed_in_pieces_equals_the_checksum_of_the_whole(
    algorithm: str,
) -> None:
    data = os.urandom(300_001)
    running = checksums.Running((algorithm,))
    view = memoryview(bytearray(data))
    for start in range(0, len(data), 65_536):
        running.update(view[start : start + 65_536])
    assert running.b64() == {algorithm: checksums.checksum_b64(algorithm, data)}
