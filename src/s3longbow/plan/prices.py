"""The price table a pre-flight estimate reads: S3 request prices and data-transfer prices per
region, with the date they are from. The built-in table (`prices.toml` beside this module) is
approximate and dated; a file given with --price-table (or `price_table` in a config file)
replaces it whole."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3longbow.errors import ConfigError

BUILT_IN = "the built-in price table"
_FIELDS = ("currency", "write_requests", "read_requests", "internet_out", "inter_region_out")
_TOP = {"date", "sources", "notes", "regions"}
GB = 1024**3  # AWS bills transfer by the GB of 2^30 bytes


def partition(region: str) -> str:
    """The AWS partition of a region: China's regions and GovCloud are apart from the rest,
    and bytes between partitions leave AWS as to the internet."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True, slots=True)
class RegionPrices:
    """What one region charges (see prices.toml for each field's meaning).

    Attributes:
        currency: What the region bills in (USD; CNY in the China regions).
        write_requests: Per 1,000 PUT, COPY, POST and LIST requests.
        read_requests: Per 1,000 GET, HEAD and other requests.
        internet_out: Per GB out to the internet (and to another partition).
        inter_region_out: Per GB to another region of the same partition.
    """

    currency: str
    write_requests: float
    read_requests: float
    internet_out: float
    inter_region_out: float


@dataclass(frozen=True)
class PriceTable:
    """Prices by region, with the date they are from and where the table came from.

    Attributes:
        date: The day the prices are from (ISO 8601).
        origin: BUILT_IN, or the file given.
        regions: Prices by region name.
        sources: Where the prices were read.
        notes: What the table says of itself.
    """

    date: str
    origin: str
    regions: Mapping[str, RegionPrices] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    notes: str = ""

    def prices(self, region: str) -> RegionPrices | None:
        """The region's prices, or None when the table has none for it."""
        return self.regions.get(region)


def builtin_table() -> PriceTable:
    """The table shipped with the package (approximate, dated)."""
    import tomllib  # only a dry run pays for the parser's import
    from importlib import resources

    text = resources.files("s3longbow.plan").joinpath("prices.toml").read_text(encoding="utf-8")
    return parse_price_table(tomllib.loads(text), BUILT_IN)


def read_price_table(path: Path) -> PriceTable:
    """A price table from a TOML file laid out as the built-in one.

    Raises:
        ConfigError: The file cannot be read, is not TOML, or is not a price table.
    """
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read price table {path}: {exc.strerror or exc}",
            hint="check the path given to --price-table (or price_table in the config file)",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"price table {path} is not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"price table {path} is not valid TOML: {exc}") from None
    return parse_price_table(document, str(path))


def parse_price_table(document: Mapping[str, Any], origin: str) -> PriceTable:
    """Check a price table's contents and build it; `origin` names it in errors.

    Raises:
        ConfigError: A key is unknown or missing, or a value is not what it must be.
    """
    hint = "lay it out as the built-in table: date, and [regions] with currency, "
    hint += ", ".join(_FIELDS[1:]) + " for each region"
    unknown = sorted(set(document) - _TOP)
    if unknown:
        raise ConfigError(f"price table {origin}: unknown key(s) {', '.join(unknown)}", hint=hint)
    date = document.get("date")
    if isinstance(date, datetime.date):  # TOML's own date type
        date = date.isoformat()
    try:
        datetime.date.fromisoformat(str(date))
    except ValueError:
        raise ConfigError(
            f"price table {origin}: date {date!r} is not a date",
            hint='give the day the prices are from, e.g. date = "2025-01-01"',
        ) from None
    sources = document.get("sources", [])
    notes = document.get("notes", "")
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise ConfigError(f"price table {origin}: sources must be a list of strings")
    if not isinstance(notes, str):
        raise ConfigError(f"price table {origin}: notes must be a string")
    regions = document.get("regions")
    if not isinstance(regions, dict) or not regions:
        raise ConfigError(f"price table {origin}: no [regions] with prices", hint=hint)
    return PriceTable(
        date=str(date),
        origin=origin,
        regions={name: _region(origin, name, entry, hint) for name, entry in regions.items()},
        sources=tuple(sources),
        notes=notes,
    )


def _region(origin: str, name: str, entry: object, hint: str) -> RegionPrices:
    where = f"price table {origin}: region {name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table of prices", hint=hint)
    missing = [f for f in _FIELDS if f not in entry]
    unknown = sorted(set(entry) - set(_FIELDS))
    if missing or unknown:
        wrong = [f"missing {', '.join(missing)}"] if missing else []
        wrong += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise ConfigError(f"{where}: {'; '.join(wrong)}", hint=hint)
    currency = entry["currency"]
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ConfigError(f"{where}: currency {currency!r} is not a currency code (USD, CNY)")
    numbers = {}
    for name_ in _FIELDS[1:]:
        value = entry[name_]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}: {name_} {value!r} is not a price (a number, 0 or more)")
        numbers[name_] = float(value)
    return RegionPrices(currency=currency.upper(), **numbers)


__all__ = [
    "BUILT_IN",
    "GB",
    "PriceTable",
    "RegionPrices",
    "builtin_table",
    "parse_price_table",
    "partition",
    "read_price_table",
]
