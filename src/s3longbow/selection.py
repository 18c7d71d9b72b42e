"""Which objects a run takes, as settings: the filter rules in the order they are tried, the
list of keys, and the size and age bounds; and the reading of their values from flags, config
files, filter files and key lists (rclone's units, durations, dates and `+`/`-` lines).

The pattern language the rules are written in is `s3longbow.plan.filters`'s; this module
only carries the patterns, each with where it was written, so an error can name it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s3longbow.errors import ConfigError

# rclone's size units: binary multiples, a bare number counts in KiB.
_SIZE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_FILTER_SIZE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(?:(b)|([kmgtp])(?:ib|i|b)?)?$", re.IGNORECASE)
# rclone's duration units; a month is 30 days and a year 365, as rclone counts them.
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,
    "y": 365 * 86400,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d|w|M|y)")
_BARE_NUMBER = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)$")

# A file given as "-" on the command line is standard input, as in rclone.
STDIN = Path("-")

SIZE_HINT = (
    "write a number with a unit, as rclone does: 100B, 10K, 10M, 1.5G (a bare number is KiB)"
)
DURATION_HINT = "write a duration such as 90s, 30m, 2h or 1h30m (a bare number is seconds)"
AGE_HINT = (
    "write a duration such as 90s, 30m, 2h, 7d, 2w, 1h30m, or a date or time such as "
    "2024-05-01 or 2024-05-01T12:00:00Z"
)


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One include or exclude rule.

    Attributes:
        include: True for `+` (take what matches), False for `-` (leave it out).
        pattern: The pattern as written (rclone's glob dialect).
        origin: Where it was written, for errors: `--include`, `rules.txt:4`.
    """

    include: bool
    pattern: str
    origin: str


@dataclass(frozen=True, slots=True)
class AgeLimit:
    """An age bound as written: a duration back from when the run looks, or a moment.

    Attributes:
        text: As written (for errors and reports).
        seconds: A duration: the bound is this long before now.
        moment: A point in time, in seconds since the epoch.
    """

    text: str
    seconds: float | None = None
    moment: float | None = None

    def cutoff(self, now: float) -> float:
        """The bound as a moment, for a run that looks at `now`."""
        return self.moment if self.moment is not None else now - (self.seconds or 0.0)


@dataclass(frozen=True)
class FilterSpec:
    """What a run's filters say. Empty: every object is taken.

    Attributes:
        rules: Include and exclude rules in the order they are tried; the first that matches
            a key decides, and a key none matches is taken.
        ignore_case: The rules match keys whatever the case of their letters.
        files_from: The only keys (relative to the pair's root) that may be taken, or None.
        min_size: Objects smaller than this many bytes are left out.
        max_size: Objects larger than this many bytes are left out.
        min_age: Objects modified after this bound are left out (too young).
        max_age: Objects modified before this bound are left out (too old).
    """

    rules: tuple[FilterRule, ...] = ()
    ignore_case: bool = False
    files_from: frozenset[str] | None = field(default=None, repr=False)
    min_size: int | None = None
    max_size: int | None = None
    min_age: AgeLimit | None = None
    max_age: AgeLimit | None = None

    @property
    def by_key(self) -> bool:
        """Whether keys are filtered (rules or a key list): both sides then are."""
        return bool(self.rules) or self.files_from is not None

    @property
    def by_object(self) -> bool:
        """Whether objects are judged by their size or age (the source's only)."""
        return any(
            v is not None for v in (self.min_size, self.max_size, self.min_age, self.max_age)
        )

    def __bool__(self) -> bool:
        return self.by_key or self.by_object


def parse_filter_size(value: str | int, *, what: str = "size") -> int:
    """A size as rclone writes it: 100B, 10K, 10M, 1.5G, 2T (binary multiples; KiB, MiB and
    KB are read as K and M too); a bare number counts in KiB, as in rclone.

    Raises:
        ConfigError: The value is not such a size.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size such as 10M, got {value!r}", hint=SIZE_HINT)
    text = str(value).strip()
    match = _FILTER_SIZE.match(text)
    if not match:
        raise ConfigError(f"{what}: {value!r} is not a size", hint=SIZE_HINT)
    unit = (match.group(2) or match.group(3) or "k").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: str | int, *, what: str = "duration") -> float:
    """A duration as rclone writes it, in seconds: 90s, 30m, 2h, 7d, 2w, 1M, 1y, combined as
    1h30m; a bare number counts in seconds.

    Raises:
        ConfigError: The value is not a duration (or is no longer than nothing).
    """
    seconds = None if isinstance(value, bool) else _seconds(str(value).strip())
    if seconds is None:
        raise ConfigError(f"{what}: {value!r} is not a duration", hint=DURATION_HINT)
    if seconds <= 0:
        raise ConfigError(f"{what}: {value!r} is no time at all", hint=DURATION_HINT)
    return seconds


def _seconds(text: str) -> float | None:
    """The seconds of a duration written as rclone writes it, or None."""
    if _BARE_NUMBER.match(text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    return None


def parse_age(value: str | int, *, what: str = "age") -> AgeLimit:
    """An age as rclone writes it: a duration (90s, 30m, 2h, 7d, 2w, 1M, 1y, combined as
    1h30m; a bare number counts in seconds) or an ISO 8601 date or time (a date or time
    without a zone is UTC).

    Raises:
        ConfigError: The value is neither.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected an age such as 7d, got {value!r}", hint=AGE_HINT)
    text = str(value).strip()
    seconds = _seconds(text)
    if seconds is not None:
        return AgeLimit(text, seconds=seconds)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a duration or a date", hint=AGE_HINT) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return AgeLimit(text, moment=moment.timestamp())


def parse_rule(text: str, origin: str) -> FilterRule | None:
    """One rule as rclone writes it in `--filter` and filter files: `+ pattern` includes,
    `- pattern` excludes, `!` clears the rules so far (None).

    Raises:
        ConfigError: The text is none of these.
    """
    if text == "!":
        return None
    if text[:2] in ("+ ", "- "):
        return FilterRule(text[0] == "+", text[2:], origin)
    raise ConfigError(
        f"{origin}: {text!r} is not a rule",
        hint="write '+ pattern' to include, '- pattern' to exclude (a space after the sign), "
        "or '!' to clear the rules before it",
    )


def read_filter_file(path: Path) -> list[FilterRule | None]:
    """The rules of a filter file, rclone's `--filter-from` format: one rule a line (see
    :func:`parse_rule`); blank lines and lines starting with `#` or `;` are skipped;
    surrounding spaces are not part of a rule.

    Raises:
        ConfigError: The file cannot be read, or a line is not a rule.
    """
    return [
        parse_rule(line, f"{path}:{number}")
        for number, line in _lines(path, "filter file", "--filter-from")
    ]


def read_pattern_file(path: Path, *, include: bool) -> list[FilterRule]:
    """The patterns of an `--include-from` (`include`) or `--exclude-from` file, one a line,
    read as rclone reads them: surrounding spaces dropped, blank lines and lines starting
    with `#` or `;` skipped.

    Raises:
        ConfigError: The file cannot be read.
    """
    flag = "--include-from" if include else "--exclude-from"
    return [
        FilterRule(include, line, f"{path}:{number}")
        for number, line in _lines(path, "pattern file", flag)
    ]


def read_files_from(path: Path, *, raw: bool = False) -> set[str]:
    """The keys of a `--files-from` list, one a line, relative to the pair's root: surrounding
    spaces and leading `/` are removed, blank lines and lines starting with `#` or `;` are
    skipped, as rclone reads such a list. `raw` (`--files-from-raw`): each line is a key as
    it is, spaces, `#` and all; only a leading `/` and a line's end (`\n`, `\r\n`) go.

    Raises:
        ConfigError: The file cannot be read.
    """
    if raw:
        return {line.lstrip("/") for line in _raw_lines(path)} - {""}
    return {line.lstrip("/") for _, line in _lines(path, "key list", "--files-from")}


def _raw_lines(path: Path) -> list[str]:
    data = _read(path, "key list", "--files-from-raw", raw=True)
    return [line.removesuffix("\r") for line in data.split("\n")]


def _read(path: Path, what: str, flag: str, *, raw: bool = False) -> str:
    """A file's text ("-": standard input); `raw`: its bytes decoded, every line end kept
    as written (text mode would turn a lone carriage return, which a key may hold, into a
    line end)."""
    try:
        if path == STDIN:
            return sys.stdin.buffer.read().decode() if raw else sys.stdin.read()
        return path.read_bytes().decode() if raw else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what} {path}: {exc.strerror or exc}",
            hint=f"check the path given to {flag} (or {flag[2:].replace('-', '_')} in a "
            "config file, where it is relative to that file)",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None


def _lines(path: Path, what: str, flag: str) -> Iterable[tuple[int, str]]:
    text = _read(path, what, flag)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and line[0] not in "#;":
            yield number, line


def build_filters(
    *,
    include: Sequence[str] = (),
    include_from: Sequence[Path] = (),
    exclude: Sequence[str] = (),
    exclude_from: Sequence[Path] = (),
    filter: Sequence[str] = (),  # noqa: A002 - the flag's and config key's name
    filter_from: Sequence[Path] = (),
    files_from: Sequence[Path] = (),
    files_from_raw: Sequence[Path] = (),
    ignore_case: bool = False,
    min_size: int | None = None,
    max_size: int | None = None,
    min_age: AgeLimit | None = None,
    max_age: AgeLimit | None = None,
    now: float | None = None,
) -> FilterSpec:
    """The filters these values say, in rclone's order: every `--include` and the lines of
    each `--include-from` file, every `--exclude` and the lines of each `--exclude-from`
    file, every `--filter` rule, then the rules of each `--filter-from` file; when any
    include was given, a last rule leaves out every key no rule took (as rclone adds `- **`).
    Files are read here; "-" is standard input, read once.

    Args:
        now: When the run looks (seconds since the epoch), to check that the age bounds leave
            something; None: they are not compared.

    Raises:
        ConfigError: A file cannot be read or holds a bad line, standard input is named twice,
            a rule is malformed, or the bounds exclude everything.
    """
    files = (*include_from, *exclude_from, *filter_from, *files_from, *files_from_raw)
    named = [p for p in files if p == STDIN]
    if len(named) > 1:
        raise ConfigError(
            "standard input ('-') is named by more than one filter file option: it can be "
            "read once",
            hint="give '-' to one of --include-from, --exclude-from, --filter-from, "
            "--files-from and --files-from-raw; write the others' lines to files",
        )
    rules: list[FilterRule] = [FilterRule(True, p, "--include") for p in include]
    for path in include_from:
        rules += read_pattern_file(path, include=True)
    rules += [FilterRule(False, p, "--exclude") for p in exclude]
    for path in exclude_from:
        rules += read_pattern_file(path, include=False)
    given = [parse_rule(text, "--filter") for text in filter]
    for path in filter_from:
        given += read_filter_file(path)
    for rule in given:
        if rule is None:
            rules.clear()
        else:
            rules.append(rule)
    if include or include_from:
        rules.append(FilterRule(False, "/**", "--include (every key no rule took)"))
    keys: set[str] | None = None
    for path in files_from:
        keys = (keys or set()) | read_files_from(path)
    for path in files_from_raw:
        keys = (keys or set()) | read_files_from(path, raw=True)
    if min_size is not None and max_size is not None and min_size > max_size:
        raise ConfigError(
            f"--min-size ({min_size} bytes) is above --max-size ({max_size} bytes): "
            "no object could be taken",
            hint="lower --min-size or raise --max-size",
        )
    if min_age is not None and max_age is not None and now is not None:
        if min_age.cutoff(now) < max_age.cutoff(now):
            raise ConfigError(
                f"--min-age {min_age.text} and --max-age {max_age.text} leave no time between "
                "them: no object could be taken",
                hint="--min-age leaves out what is younger, --max-age what is older; the "
                "min-age must be the shorter",
            )
    return FilterSpec(
        rules=tuple(rules),
        ignore_case=ignore_case,
        files_from=None if keys is None else frozenset(keys),
        min_size=min_size,
        max_size=max_size,
        min_age=min_age,
        max_age=max_age,
    )


# Config-file keys of the filters, at the top level of a sync or cluster config file.
FILTER_KEYS = (
    "include",
    "include_from",
    "exclude",
    "exclude_from",
    "filter",
    "filter_from",
    "files_from",
    "files_from_raw",
    "ignore_case",
    "min_size",
    "max_size",
    "min_age",
    "max_age",
)


# The config file's filter keys that name files (relative to the config file), and examples
# of the keys that hold patterns or rules.
_FILE_KEYS = ("include_from", "exclude_from", "filter_from", "files_from", "files_from_raw")
_EXAMPLES = {
    "include": 'e.g. include = ["*.jpg", "docs/**"]',
    "exclude": 'e.g. exclude = ["*.tmp", "cache/"]',
    "filter": 'e.g. filter = ["- thumbs/", "+ *.jpg", "- **"]',
}


def filters_in_file(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """The filter keys of a config file, checked and in the form `build_filters` takes: lists
    of patterns, paths relative to the file, sizes in bytes, parsed ages.

    Raises:
        ConfigError: A key holds a value of the wrong kind (naming the file and the key).
    """
    out: dict[str, Any] = {}
    for key in ("include", "exclude", "filter", *_FILE_KEYS):
        if key in raw:
            value = raw[key]
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                raise ConfigError(
                    f"config file {path}: {key} must be a string or a list of strings",
                    hint=_EXAMPLES.get(key)
                    or f'e.g. {key} = "{key.replace("_", "-")}.txt" (relative to this file)',
                )
            if key in _FILE_KEYS:
                out[key] = tuple((path.parent / Path(v).expanduser()).resolve() for v in items)
            else:
                out[key] = tuple(items)
    if "ignore_case" in raw:
        if not isinstance(raw["ignore_case"], bool):
            raise ConfigError(
                f"config file {path}: ignore_case must be true or false",
                hint="e.g. ignore_case = true",
            )
        out["ignore_case"] = raw["ignore_case"]
    for key in ("min_size", "max_size"):
        if key in raw:
            out[key] = _in_file(path, parse_filter_size, raw[key], key)
    for key in ("min_age", "max_age"):
        if key in raw:
            out[key] = _in_file(path, parse_age, raw[key], key)
    return out


def _in_file(path: Path, parse: Any, value: Any, key: str) -> Any:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ConfigError(f'config file {path}: {key} must be a string such as "10M" or "7d"')
    try:
        return parse(value, what=key)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc.message}", hint=exc.hint) from None


__all__ = [
    "AGE_HINT",
    "DURATION_HINT",
    "FILTER_KEYS",
    "SIZE_HINT",
    "STDIN",
    "AgeLimit",
    "FilterRule",
    "FilterSpec",
    "build_filters",
    "filters_in_file",
    "parse_age",
    "parse_duration",
    "parse_filter_size",
    "parse_rule",
    "read_files_from",
    "read_filter_file",
    "read_pattern_file",
]
