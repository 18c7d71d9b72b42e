"""S3 Inventory reports: their manifest (`manifest.json`) and their data files (CSV, ORC or
Parquet), read into the objects a listing would give. Pure: bytes and local files in, objects
out; fetching them is :mod:`s3longbow.plan.inventory_listing`'s.

A report lists a bucket as S3 saw it when the report began: one manifest names its source
bucket, the data files' format, their columns (`fileSchema`) and each data file with its size
and MD5. CSV data files are gzip-compressed, carry no header (the columns are the schema's, in
its order) and URL-encode keys (a space as "+"); ORC and Parquet files name their columns
themselves (in snake case: `last_modified_date` for `LastModifiedDate`) and hold keys as they
are. A report of every version has `IsLatest` and `IsDeleteMarker` columns: only the current
version of each key is kept, and a key whose current version is a delete marker is left out,
as a listing leaves it out.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote_plus

from s3longbow.errors import ConfigError
from s3longbow.model import ObjectInfo

CSV, ORC, PARQUET = "CSV", "ORC", "Parquet"
FORMATS = (CSV, ORC, PARQUET)
# The columns planning needs: without them an object cannot be compared or copied.
REQUIRED_FIELDS = ("Key", "Size")
# Columns read from ORC and Parquet files (by their snake-case names).
_COLUMNAR_FIELDS = {
    "key": "Key",
    "size": "Size",
    "e_tag": "ETag",
    "last_modified_date": "LastModifiedDate",
    "storage_class": "StorageClass",
    "is_latest": "IsLatest",
    "is_delete_marker": "IsDeleteMarker",
}
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_INSTALL_HINT = "install the inventory extra: pip install 's3longbow[inventory]' (pyarrow)"
# Rows converted from Arrow to Python at once (a whole ORC stripe could be millions).
_ARROW_ROWS = 8192


class InventoryError(ConfigError):
    """An inventory report that cannot be used: its manifest or a data file is unreadable,
    damaged, or describes something else than the pair's source."""


@dataclass(frozen=True, slots=True)
class DataFile:
    """One data file a manifest names, in the bucket the manifest is in."""

    key: str
    size: int
    md5: str  # lowercase hex


@dataclass(frozen=True, slots=True)
class Manifest:
    """A report's manifest.

    Attributes:
        source_bucket: The bucket the report lists.
        destination_bucket: Where S3 delivered it (an ARN, as the manifest writes it).
        version: The manifest format's version.
        created: When S3 began listing the bucket, in seconds since the epoch.
        file_format: "CSV", "ORC" or "Parquet".
        fields: The columns of the data files, in their order, named as CSV schemas name
            them ("Key", "Size", "LastModifiedDate", ...).
        files: The data files.
    """

    source_bucket: str
    destination_bucket: str
    version: str
    created: float
    file_format: str
    fields: tuple[str, ...]
    files: tuple[DataFile, ...]

    @property
    def snapshot(self) -> str:
        """How a copy names the listing it was planned from (see `snapshot_name`)."""
        return snapshot_name(self.created)

    @property
    def has_versions(self) -> bool:
        """The report lists every version (not only current ones)."""
        return "IsLatest" in self.fields


def snapshot_name(created: float) -> str:
    """ "the inventory of <when S3 began the report>", in UTC to the minute (as S3 names
    reports): how a copy names the listing it was planned from."""
    return "the inventory of " + datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M UTC")


def field_name(name: str) -> str:
    """One spelling for a column: CSV schemas write `LastModifiedDate`, ORC and Parquet ones
    `last_modified_date` (and `e_tag` for `ETag`)."""
    if name.islower() or "_" in name:
        return "".join(part[:1].upper() + part[1:] for part in name.split("_"))
    return name


def parse_manifest(body: bytes, where: str) -> Manifest:
    """Read a `manifest.json`.

    Args:
        body: The file's bytes.
        where: Where it was read from (for messages).

    Raises:
        InventoryError: It is not JSON, lacks a field, names an unknown format, a schema
            without Key or Size, or a malformed data file entry.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InventoryError(
            f"inventory manifest {where} is not JSON ({exc})",
            hint="give the manifest.json of an S3 Inventory report",
        ) from None
    if not isinstance(data, dict):
        raise InventoryError(f"inventory manifest {where} is not a JSON object")

    def text(name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise InventoryError(
                f"inventory manifest {where} has no {name}",
                hint="give the manifest.json of an S3 Inventory report, unchanged",
            )
        return value

    file_format = _file_format(text("fileFormat"), where)
    fields = schema_fields(text("fileSchema"), file_format)
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise InventoryError(
            f"inventory manifest {where}: its data files have no {' or '.join(missing)} "
            f"column (schema: {text('fileSchema')})",
            hint="include the Size field in the inventory configuration (Key is always there) "
            "and use a report made after that",
        )
    created_ms = text("creationTimestamp")
    if not created_ms.isdigit():
        raise InventoryError(
            f"inventory manifest {where}: creationTimestamp {created_ms!r} is not a time in "
            "milliseconds since the epoch"
        )
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise InventoryError(f"inventory manifest {where} lists no data files")
    return Manifest(
        source_bucket=text("sourceBucket"),
        destination_bucket=str(data.get("destinationBucket") or ""),
        version=str(data.get("version") or ""),
        created=int(created_ms) / 1000,
        file_format=file_format,
        fields=fields,
        files=tuple(_data_file(entry, i, where) for i, entry in enumerate(files)),
    )


def _file_format(value: str, where: str) -> str:
    for known in FORMATS:
        if value.lower() == known.lower():
            return known
    raise InventoryError(
        f"inventory manifest {where}: unknown fileFormat {value!r}",
        hint=f"S3 Inventory writes {', '.join(FORMATS)}",
    )


def _data_file(entry: object, index: int, where: str) -> DataFile:
    if isinstance(entry, dict):
        key, size, md5 = entry.get("key"), entry.get("size"), entry.get("MD5checksum")
        if (
            isinstance(key, str)
            and key
            and isinstance(size, int)
            and not isinstance(size, bool)
            and size >= 0
            and isinstance(md5, str)
            and _MD5.match(md5)
        ):
            return DataFile(key, size, md5.lower())
    raise InventoryError(
        f"inventory manifest {where}: files[{index}] needs a key, a size in bytes and an "
        "MD5checksum of 32 hex digits",
        hint="give the manifest.json of an S3 Inventory report, unchanged",
    )


def schema_fields(schema: str, file_format: str) -> tuple[str, ...]:
    """The column names of a `fileSchema`, in order.

    CSV: "Bucket, Key, Size, ..."; ORC: "struct<bucket:string,key:string,...>"; Parquet:
    "message s3.inventory { required binary bucket (UTF8); ... }".
    """
    if file_format == CSV:
        names = [name.strip() for name in schema.split(",")]
    elif file_format == ORC:
        inner = schema.strip().removeprefix("struct<").removesuffix(">")
        names = [column.split(":", 1)[0].strip() for column in inner.split(",")]
    else:
        inner = schema[schema.find("{") + 1 : schema.rfind("}")] if "{" in schema else schema
        names = []
        for declaration in inner.split(";"):
            words = [w for w in declaration.split() if not w.startswith("(")]
            if words:
                names.append(words[-1])
    return tuple(field_name(name) for name in names if name)


def read_data_file(
    path: Path, manifest: Manifest, *, prefix: str, where: str
) -> Iterator[ObjectInfo]:
    """The objects under `prefix` that a data file lists (their current versions).

    Args:
        path: The data file, already fetched and checked against its MD5.
        manifest: Its report's manifest (format and columns).
        prefix: Only keys starting with it are kept.
        where: The data file's location (for messages).

    Raises:
        InventoryError: A row does not fit the schema, or the file is not of its format.
    """
    if manifest.file_format == CSV:
        with path.open("rb") as raw:
            yield from _read_csv(_maybe_gzip(raw), manifest.fields, prefix, where)
    elif manifest.file_format == PARQUET:
        yield from _read_columnar(_parquet_batches(path, where), prefix, where)
    else:
        yield from _read_columnar(_orc_batches(path, where), prefix, where)


def _maybe_gzip(raw: IO[bytes]) -> IO[bytes]:
    # S3 writes CSV reports gzip-compressed; a plain one (decompressed by hand) reads too.
    magic = raw.read(2)
    raw.seek(0)
    return cast(IO[bytes], gzip.GzipFile(fileobj=raw)) if magic == b"\x1f\x8b" else raw


def _read_csv(
    stream: IO[bytes], fields: tuple[str, ...], prefix: str, where: str
) -> Iterator[ObjectInfo]:
    column = {name: i for i, name in enumerate(fields)}
    key_at, size_at = column["Key"], column["Size"]
    etag_at = column.get("ETag")
    modified_at = column.get("LastModifiedDate")
    class_at = column.get("StorageClass")
    latest_at = column.get("IsLatest")
    marker_at = column.get("IsDeleteMarker")
    width = len(fields)
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    rows = csv.reader(text)
    try:
        for row in rows:
            if len(row) != width:
                raise ValueError(f"{len(row)} columns, the manifest's schema has {width}")
            if marker_at is not None and row[marker_at] == "true":
                continue
            if latest_at is not None and row[latest_at] == "false":
                continue
            key = unquote_plus(row[key_at], errors="strict")
            if not key.startswith(prefix):
                continue
            yield ObjectInfo(
                key,
                int(row[size_at]),
                _etag(row[etag_at]) if etag_at is not None else None,
                _csv_time(row[modified_at]) if modified_at is not None else None,
                None,
                (row[class_at] or None) if class_at is not None else None,
            )
    except (ValueError, csv.Error, OSError, EOFError) as exc:
        # UnicodeDecodeError is a ValueError; a damaged gzip stream an OSError or EOFError.
        raise InventoryError(
            f"inventory data file {where}, line {max(rows.line_num, 1)}: {exc}",
            hint="the report does not match its manifest: use an undamaged report",
        ) from None


def _etag(value: str | None) -> str | None:
    return (value.strip('"') or None) if value else None


def _csv_time(value: str) -> float | None:
    # "2024-05-01T10:20:30.000Z"; fromisoformat reads the "Z" since Python 3.11.
    return datetime.fromisoformat(value).timestamp() if value else None


def _pyarrow(module: str, file_format: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InventoryError(
            f"reading a {file_format} inventory needs pyarrow, which is not installed",
            hint=_INSTALL_HINT,
        ) from None


def _parquet_batches(path: Path, where: str) -> Iterator[Any]:
    parquet = _pyarrow("pyarrow.parquet", PARQUET)
    try:
        reader = parquet.ParquetFile(path)
        wanted = [n for n in reader.schema_arrow.names if n in _COLUMNAR_FIELDS]
        yield from reader.iter_batches(batch_size=_ARROW_ROWS, columns=wanted)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise InventoryError(
            f"inventory data file {where} is not readable Parquet: {exc}"
        ) from None


def _orc_batches(path: Path, where: str) -> Iterator[Any]:
    orc = _pyarrow("pyarrow.orc", ORC)
    try:
        reader = orc.ORCFile(path)
        wanted = [n for n in reader.schema.names if n in _COLUMNAR_FIELDS]
        for stripe in range(reader.nstripes):
            batch = reader.read_stripe(stripe, columns=wanted)
            for start in range(0, batch.num_rows, _ARROW_ROWS):
                yield batch.slice(start, _ARROW_ROWS)
    except (OSError, ValueError) as exc:
        raise InventoryError(f"inventory data file {where} is not readable ORC: {exc}") from None


def _read_columnar(batches: Iterator[Any], prefix: str, where: str) -> Iterator[ObjectInfo]:
    for batch in batches:
        columns = {
            _COLUMNAR_FIELDS[name]: batch.column(i).to_pylist()
            for i, name in enumerate(batch.schema.names)
            if name in _COLUMNAR_FIELDS
        }
        if "Key" not in columns or "Size" not in columns:
            raise InventoryError(
                f"inventory data file {where} has no key or size column "
                f"(it has {', '.join(batch.schema.names)})",
                hint="the report does not match its manifest: use an undamaged report",
            )
        none = [None] * batch.num_rows
        keys, sizes = columns["Key"], columns["Size"]
        etags = columns.get("ETag", none)
        times = columns.get("LastModifiedDate", none)
        classes = columns.get("StorageClass", none)
        latest = columns.get("IsLatest", none)
        markers = columns.get("IsDeleteMarker", none)
        for i, key in enumerate(keys):
            if markers[i] or latest[i] is False or key is None or not key.startswith(prefix):
                continue
            if sizes[i] is None:
                raise InventoryError(f"inventory data file {where}: {key!r} has no size")
            yield ObjectInfo(
                key, int(sizes[i]), _etag(etags[i]), _arrow_time(times[i]), None, classes[i]
            )


def _arrow_time(value: datetime | int | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, int):  # milliseconds, as the Parquet schema declares
        return value / 1000
    if value.tzinfo is None:  # S3 writes UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


__all__ = [
    "CSV",
    "FORMATS",
    "ORC",
    "PARQUET",
    "DataFile",
    "InventoryError",
    "Manifest",
    "field_name",
    "parse_manifest",
    "read_data_file",
    "schema_fields",
    "snapshot_name",
]
