"""S3 additional checksums (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256), computed as S3 does.

A source whose ETag is not the MD5 of its bytes (KMS or customer-key encryption, some
providers) can still be proven through the checksum it carries: the checksum of all its bytes
(single PUT, or a multipart object with a full-object CRC), or a composite checksum (the
checksum of its parts' checksums, "value-N"), which needs the source's own part boundaries.
CRCs of parts are combined in part order without holding the parts' bytes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import zlib
from collections.abc import Callable, Sequence

from s3longbow.model import Bytes, Checksum

CRC_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")
HASH_ALGORITHMS = ("SHA1", "SHA256")
ALGORITHMS = CRC_ALGORITHMS + HASH_ALGORITHMS

_CrcFunctions = tuple[Callable[[Bytes, int], int], Callable[[int, int, int], int], int]


@functools.cache
def _crcs() -> dict[str, _CrcFunctions]:
    """algorithm: (CRC of bytes continuing a previous CRC, combine(crc1, crc2, len2), digest
    size). awscrt is loaded on the first CRC: its import costs ~50 ms of every start-up, and
    most runs compute none."""
    from awscrt import checksums as crt

    return {
        "CRC32": (zlib.crc32, crt.combine_crc32, 4),
        "CRC32C": (crt.crc32c, crt.combine_crc32c, 4),
        "CRC64NVME": (crt.crc64nvme, crt.combine_crc64nvme, 8),
    }


_HASH = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256}


def normalise_algorithm(name: str) -> str:
    """The canonical spelling of an algorithm name ("crc32c" -> "CRC32C")."""
    upper = name.strip().upper().replace("-", "")
    if upper not in ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {name!r} (known: {', '.join(ALGORITHMS)})")
    return upper


def digest(algorithm: str, data: Bytes) -> bytes:
    """The raw checksum of `data`."""
    if algorithm in CRC_ALGORITHMS:
        step, _, size = _crcs()[algorithm]
        return step(data, 0).to_bytes(size, "big")
    return _HASH[algorithm](data).digest()


class Running:
    """Checksums of bytes fed piece by piece, in order. Fed each piece as it arrives from the
    network, a CRC reads it while it is still in the CPU's cache: over a part already in
    memory it costs several times more, bound by memory bandwidth."""

    def __init__(self, algorithms: Sequence[str]) -> None:
        self._crcs = {a: 0 for a in algorithms if a in CRC_ALGORITHMS}
        self._crc_functions = _crcs() if self._crcs else {}
        self._hashes = {a: _HASH[a]() for a in algorithms if a in _HASH}

    def update(self, piece: Bytes) -> None:
        for algorithm, value in self._crcs.items():
            self._crcs[algorithm] = self._crc_functions[algorithm][0](piece, value)
        for hashed in self._hashes.values():
            hashed.update(piece)

    def b64(self) -> dict[str, str]:
        """algorithm -> base64 checksum of everything fed so far."""
        functions = self._crc_functions
        sums = {a: encode(v.to_bytes(functions[a][2], "big")) for a, v in self._crcs.items()}
        sums.update((a, encode(h.digest())) for a, h in self._hashes.items())
        return sums


def encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum_b64(algorithm: str, data: Bytes) -> str:
    """The base64 checksum of `data`, as S3 sends it in x-amz-checksum-* headers."""
    return encode(digest(algorithm, data))


def composite(algorithm: str, part_values: Sequence[str]) -> Checksum:
    """The composite checksum of a multipart object from its parts' base64 checksums."""
    joined = b"".join(base64.b64decode(v) for v in part_values)
    return Checksum(algorithm, checksum_b64(algorithm, joined), parts=len(part_values))


def full_object(algorithm: str, parts: Sequence[tuple[str, int]]) -> Checksum:
    """The CRC of all the bytes from the parts' base64 CRCs and sizes, in part order."""
    if algorithm not in CRC_ALGORITHMS:
        raise ValueError(f"{algorithm} has no full-object form for multipart objects")
    _, combine, size = _crcs()[algorithm]
    crc: int | None = None
    for value, length in parts:
        part_crc = int.from_bytes(base64.b64decode(value), "big")
        crc = part_crc if crc is None else combine(crc, part_crc, length)
    return Checksum(algorithm, encode((crc or 0).to_bytes(size, "big")))


def parse(algorithm: str, text: str, kind: str | None = None) -> Checksum | None:
    """A checksum as a response states it ("value" or "value-N", and x-amz-checksum-type)."""
    value, _, count = text.strip().partition("-")
    if not value:
        return None
    if count.isdigit():
        return Checksum(algorithm, value, parts=int(count))
    if (kind or "").upper() == "COMPOSITE":
        return None  # a composite checksum without its part count cannot be reproduced
    return Checksum(algorithm, value)


def from_headers(headers: dict[str, str]) -> Checksum | None:
    """The object checksum among response headers (names in lower case)."""
    for algorithm in ALGORITHMS:
        text = headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if text:
            return parse(algorithm, text, headers.get("x-amz-checksum-type"))
    return None


__all__ = [
    "ALGORITHMS",
    "CRC_ALGORITHMS",
    "checksum_b64",
    "composite",
    "digest",
    "from_headers",
    "full_object",
    "normalise_algorithm",
    "parse",
]
