"""Frozen settings: defaults < config file (TOML) < command-line flags; sizes like "16MiB"."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3longbow.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# S3's multipart limits: parts between 5 MiB and 5 GiB (the last may be smaller), 10,000 at most.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

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


def format_size(n: float) -> str:
    """Render a byte count for people: 8.0 MiB, 1.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop always returns


@dataclass(frozen=True)
class SideSettings:
    """How to reach one side (source or destination) of a migration.

    Credentials come from the profile, the LONGBOW_{SRC,DST}_* environment variables or the
    default credential chain; never from a file the tool writes.
    """

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    path_style: bool = False
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TransferSettings:
    """Knobs of the transfer engine. Memory in flight is at most `memory_limit` bytes of buffers."""

    workers: int = 16
    part_threads: int = 4
    part_size: int = 8 * MiB
    resumable_threshold: int = 5 * MiB
    memory_limit: int = 160 * MiB
    storage_class: str | None = None
    copy_tags: bool = True
    max_attempts: int = 3
    part_attempts: int = 5
    lease_seconds: float = 120.0

    def validate(self) -> None:
        """Reject settings that cannot work, with the fix in the message."""
        for name in ("workers", "part_threads", "max_attempts", "part_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1")
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"part-size {format_size(self.part_size)} is outside S3's limits",
                hint="choose a part size between 5MiB and 5GiB",
            )
        if self.resumable_threshold < 0:
            raise ConfigError("resumable-threshold cannot be negative")
        if self.resumable_threshold > MAX_PART_SIZE:
            raise ConfigError(
                "resumable-threshold is above 5GiB, the largest single PUT S3 accepts",
                hint="choose a threshold of at most 5GiB",
            )
        if self.memory_limit < self.part_size:
            raise ConfigError(
                "memory-limit is smaller than one part",
                hint=f"raise memory-limit to at least {format_size(self.part_size)}",
            )


@dataclass(frozen=True)
class PairSettings:
    """One source location copied to one destination location."""

    src: str
    dst: str


@dataclass(frozen=True)
class Settings:
    """Everything one `longbow sync` needs."""

    pairs: tuple[PairSettings, ...]
    source: SideSettings = SideSettings()
    destination: SideSettings = SideSettings()
    transfer: TransferSettings = TransferSettings()
    ignore_patterns: tuple[str, ...] = ()
    db_path: Path = field(default_factory=lambda: default_db_path())


def default_db_path() -> Path:
    """Where the job database lives unless --db says otherwise."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "longbow" / "jobs.db"


_SIDE_KEYS = {f.name for f in dataclasses.fields(SideSettings)} - {
    "access_key_id",
    "secret_access_key",
    "session_token",
}
_TRANSFER_KEYS = {f.name for f in dataclasses.fields(TransferSettings)}
_SIZE_KEYS = {"part_size", "resumable_threshold", "memory_limit"}
_TOP_KEYS = {"source", "destination", "pairs", "ignore_file", "db"} | _TRANSFER_KEYS


def load_config_file(path: Path) -> dict[str, Any]:
    """Read and check a TOML config file; return its contents normalised.

    The file may hold transfer settings at the top level, `[source]` and `[destination]` tables
    and any number of `[[pairs]]` with `src` and `dst`.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}",
            hint=f"known settings: {', '.join(sorted(_TOP_KEYS))}",
        )
    out: dict[str, Any] = {}
    for side in ("source", "destination"):
        table = raw.get(side, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [{side}] must be a table")
        bad = sorted(set(table) - _SIDE_KEYS)
        if bad:
            raise ConfigError(
                f"config file {path}: unknown key(s) in [{side}]: {', '.join(bad)}",
                hint=f"known keys: {', '.join(sorted(_SIDE_KEYS))}; credentials belong in a "
                "profile or the environment, not in this file",
            )
        for key, value in table.items():
            expected: type = bool if key == "path_style" else str
            if not isinstance(value, expected):
                raise ConfigError(
                    f"config file {path}: [{side}] {key} must be a {expected.__name__}"
                )
        out[side] = table
    pairs = raw.get("pairs", [])
    if not isinstance(pairs, list):
        raise ConfigError(f"config file {path}: pairs must be an array of tables ([[pairs]])")
    out["pairs"] = []
    for i, pair in enumerate(pairs, 1):
        if (
            not isinstance(pair, dict)
            or set(pair) != {"src", "dst"}
            or not all(isinstance(v, str) and v for v in pair.values())
        ):
            raise ConfigError(
                f"config file {path}: pair {i} must have exactly the strings src and dst",
                hint='e.g. [[pairs]]\\nsrc = "s3://source-bucket/prefix/"\\n'
                'dst = "s3://destination-bucket/prefix/"',
            )
        out["pairs"].append(PairSettings(src=pair["src"], dst=pair["dst"]))
    transfer: dict[str, Any] = {}
    for key in _TRANSFER_KEYS & set(raw):
        value = raw[key]
        if key in _SIZE_KEYS:
            transfer[key] = parse_size(value, what=key.replace("_", "-"))
        elif key == "storage_class":
            if not isinstance(value, str):
                raise ConfigError(f"config file {path}: storage_class must be a string")
            transfer[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"config file {path}: {key} must be a number")
            transfer[key] = value
    out["transfer"] = transfer
    if "ignore_file" in raw:
        out["ignore_file"] = (path.parent / str(raw["ignore_file"])).resolve()
    if "db" in raw:
        out["db"] = (path.parent / str(raw["db"])).resolve()
    return out


def side_from_environment(prefix: str, base: SideSettings) -> SideSettings:
    """Add static keys from LONGBOW_{prefix}_ACCESS_KEY_ID and friends, when they are set."""
    env = os.environ
    key = env.get(f"LONGBOW_{prefix}_ACCESS_KEY_ID")
    secret = env.get(f"LONGBOW_{prefix}_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        raise ConfigError(
            f"LONGBOW_{prefix}_ACCESS_KEY_ID and LONGBOW_{prefix}_SECRET_ACCESS_KEY must be set "
            "together",
        )
    if not key:
        return base
    return dataclasses.replace(
        base,
        access_key_id=key,
        secret_access_key=secret,
        session_token=env.get(f"LONGBOW_{prefix}_SESSION_TOKEN") or None,
    )


def load_ignore_file(path: Path) -> tuple[str, ...]:
    """Read shell-style patterns, one a line; blank lines and lines starting with # are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read ignore file {path}: {exc.strerror or exc}",
            hint="check the path given to --ignore-file",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"ignore file {path} is not UTF-8 text") from None
    return tuple(
        line.rstrip("\r\n")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


__all__ = [
    "GiB",
    "KiB",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "MiB",
    "PairSettings",
    "Settings",
    "SideSettings",
    "TransferSettings",
    "default_db_path",
    "format_size",
    "load_config_file",
    "load_ignore_file",
    "parse_size",
    "side_from_environment",
]
