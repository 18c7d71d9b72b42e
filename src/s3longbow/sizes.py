"""Sizes and rates as people write them ("16MiB", "10MB", "200MiB/s") and read them."""

from __future__ import annotations

import re

from s3longbow.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_UNITS = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kb": 1000,
    "kib": KiB,
    "m": MiB,
    "mb": 1000**2,
    "mib": MiB,
    "g": GiB,
    "gb": 1000**3,
    "gib": GiB,
    "t": 1024 * GiB,
    "tb": 1000**4,
    "tib": 1024 * GiB,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int, *, what: str = "size") -> int:
    """Parse a byte count such as 8388608, "8MiB", "8M" or "10MB" (decimal units).

    Raises:
        ConfigError: The value is not a non-negative size.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size such as 8MiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{what}: a size cannot be negative ({value})")
        return value
    match = _SIZE_RE.match(str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise ConfigError(
            f"{what}: {value!r} is not a size",
            hint="write a number of bytes or a number with a unit: 8MiB, 512KiB, 1GiB, 10MB",
        )
    return int(float(match.group(1)) * _UNITS[unit])


def parse_rate(value: str | int, *, what: str = "rate") -> int:
    """Parse a rate in bytes per second: "200MiB/s", "50MB/s" or a size ("200MiB")."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.lower().endswith("/s"):
        text = text[:-2]
    return parse_size(text, what=what)


def format_size(n: float) -> str:
    """Render a byte count for people: 8.0 MiB, 1.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop always returns


__all__ = ["GiB", "KiB", "MiB", "format_size", "parse_rate", "parse_size"]
