"""S3 Inventory reports as S3 delivers them, for a given set of objects: data files in CSV
(gzip, no header, every value quoted, keys URL-encoded with "+" for a space), ORC or Parquet
(snake-case columns, keys as they are), and the `manifest.json` (with `manifest.checksum`)
that names them, published to a bucket of a local server.

A report lists its rows in no promised order; `publish_inventory` deals them out to its data
files in turn, so a report of sorted keys is unsorted across its files.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

__all__ = [
    "CURRENT_FIELDS",
    "VERSION_FIELDS",
    "InventoryRow",
    "Report",
    "data_files",
    "file_schema",
    "manifest",
    "publish_inventory",
]

# The columns of a report of current versions with the fields Longbow uses, in S3's order
# (`Bucket` and `Key` always come first; the optional ones follow in S3's fixed order).
CURRENT_FIELDS = (
    "Bucket",
    "Key",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
    "IsMultipartUploaded",
)
# A report of every version: `VersionId`, `IsLatest` and `IsDeleteMarker` after the key.
VERSION_FIELDS = (
    "Bucket",
    "Key",
    "VersionId",
    "IsLatest",
    "IsDeleteMarker",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
    "IsMultipartUploaded",
)
# Each column's snake-case name and type in ORC and Parquet files and schemas.
_COLUMNS: dict[str, tuple[str, str, str]] = {
    # CSV name: (column, ORC type, Parquet declaration)
    "Bucket": ("bucket", "string", "required binary bucket (UTF8)"),
    "Key": ("key", "string", "required binary key (UTF8)"),
    "VersionId": ("version_id", "string", "optional binary version_id (UTF8)"),
    "IsLatest": ("is_latest", "boolean", "optional boolean is_latest"),
    "IsDeleteMarker": ("is_delete_marker", "boolean", "optional boolean is_delete_marker"),
    "Size": ("size", "bigint", "optional int64 size"),
    "LastModifiedDate": (
        "last_modified_date",
        "timestamp",
        "optional int64 last_modified_date (TIMESTAMP_MILLIS)",
    ),
    "ETag": ("e_tag", "string", "optional binary e_tag (UTF8)"),
    "StorageClass": ("storage_class", "string", "optional binary storage_class (UTF8)"),
    "IsMultipartUploaded": (
        "is_multipart_uploaded",
        "boolean",
        "optional boolean is_multipart_uploaded",
    ),
}
_EXTENSIONS = {"CSV": "csv.gz", "ORC": "orc", "Parquet": "parquet"}


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """One row of a report: an object, or one version of it (a delete marker has no size)."""

    key: str
    size: int | None
    etag: str | None = None
    last_modified: float = 1_714_521_600.0  # 2024-05-01 00:00 UTC
    storage_class: str = "STANDARD"
    version_id: str | None = None
    is_latest: bool = True
    is_delete_marker: bool = False

    @property
    def multipart(self) -> bool:
        return self.etag is not None and "-" in self.etag


@dataclass(frozen=True)
class Report:
    """A published report: where its manifest is, and its data files' keys."""

    bucket: str
    manifest_key: str
    data_keys: tuple[str, ...]

    @property
    def url(self) -> str:
        """The manifest as `--src-inventory` takes it."""
        return f"s3://{self.bucket}/{self.manifest_key}"


def _values(row: InventoryRow, source_bucket: str) -> dict[str, Any]:
    return {
        "Bucket": source_bucket,
        "Key": row.key,
        "VersionId": row.version_id,
        "IsLatest": row.is_latest,
        "IsDeleteMarker": row.is_delete_marker,
        "Size": None if row.is_delete_marker else row.size,
        "LastModifiedDate": row.last_modified,
        "ETag": None if row.is_delete_marker else row.etag,
        "StorageClass": None if row.is_delete_marker else row.storage_class,
        "IsMultipartUploaded": None if row.is_delete_marker else row.multipart,
    }


def _csv_text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if name == "LastModifiedDate":
        return _csv_time(value)
    if name == "Key":
        return quote_plus(value, safe="/")
    return str(value)


@functools.lru_cache(maxsize=1024)
def _csv_time(value: float) -> str:
    # To the millisecond, as S3 writes it (cached: a report of millions repeats its times).
    when = datetime.fromtimestamp(round(value, 3), UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def data_files(
    rows: Iterable[InventoryRow],
    *,
    source_bucket: str,
    file_format: str = "CSV",
    fields: Sequence[str] = CURRENT_FIELDS,
    files: int = 1,
) -> list[bytes]:
    """The bytes of `files` data files listing `rows` with the columns `fields`, the rows
    dealt out to the files in turn (CSV rows are written as they come: millions fit)."""
    if file_format != "CSV":
        piles: list[list[InventoryRow]] = [[] for _ in range(files)]
        for i, row in enumerate(rows):
            piles[i % files].append(row)
        return [_columnar(pile, source_bucket, file_format, fields) for pile in piles]
    buffers = [io.BytesIO() for _ in range(files)]
    packed = [gzip.GzipFile(fileobj=b, mode="wb", mtime=0) for b in buffers]
    texts = [io.TextIOWrapper(p, encoding="utf-8", newline="") for p in packed]
    writers = [csv.writer(t, quoting=csv.QUOTE_ALL, lineterminator="\n") for t in texts]
    for i, row in enumerate(rows):
        values = _values(row, source_bucket)
        writers[i % files].writerow([_csv_text(name, values[name]) for name in fields])
    for text in texts:
        text.flush()
        text.detach().close()
    return [b.getvalue() for b in buffers]


def _columnar(
    rows: list[InventoryRow], source_bucket: str, file_format: str, fields: Sequence[str]
) -> bytes:
    import pyarrow as pa  # only ORC and Parquet reports need it

    types = {
        "string": pa.string(),
        "boolean": pa.bool_(),
        "bigint": pa.int64(),
        "timestamp": pa.timestamp("ms"),
    }
    columns = {}
    for name in fields:
        column, orc_type, _ = _COLUMNS[name]
        values = [_values(row, source_bucket)[name] for row in rows]
        if orc_type == "timestamp":
            values = [None if v is None else int(v * 1000) for v in values]
        columns[column] = pa.array(values, type=types[orc_type])
    table = pa.table(columns)
    buffer = io.BytesIO()
    if file_format == "ORC":
        from pyarrow import orc

        orc.write_table(table, buffer, compression="zlib")
    else:
        from pyarrow import parquet

        parquet.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


def file_schema(file_format: str, fields: Sequence[str]) -> str:
    """The manifest's `fileSchema` for these columns, as S3 writes it for each format."""
    if file_format == "CSV":
        return ", ".join(fields)
    if file_format == "ORC":
        return "struct<" + ",".join(f"{_COLUMNS[n][0]}:{_COLUMNS[n][1]}" for n in fields) + ">"
    return "message s3.inventory { " + " ".join(f"{_COLUMNS[n][2]};" for n in fields) + "}"


def manifest(
    *,
    source_bucket: str,
    inventory_bucket: str,
    file_format: str,
    fields: Sequence[str],
    files: Sequence[tuple[str, bytes]],
    created: float,
) -> dict[str, Any]:
    """A `manifest.json`'s content for data files given as (key, bytes)."""
    return {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{inventory_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(created * 1000)),
        "fileFormat": file_format,
        "fileSchema": file_schema(file_format, fields),
        "files": [
            {"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()}
            for key, body in files
        ],
    }


def publish_inventory(
    client: Any,
    bucket: str,
    rows: Iterable[InventoryRow],
    *,
    source_bucket: str,
    file_format: str = "CSV",
    files: int = 1,
    versions: bool = False,
    fields: Sequence[str] | None = None,
    config_id: str = "longbow",
    created: float = 1_714_521_600.0,
    manifest_changes: dict[str, Any] | None = None,
) -> Report:
    """Write a report of `rows` to `bucket` where S3 would deliver it, and return it.

    Args:
        client: A boto3 S3 client of the server holding `bucket`.
        bucket: The bucket the report is delivered to.
        rows: What the report lists, dealt out to `files` data files in turn.
        source_bucket: The bucket the report says it lists.
        file_format: "CSV", "ORC" or "Parquet".
        files: How many data files.
        versions: A report of every version (VERSION_FIELDS), not of current ones
            (CURRENT_FIELDS).
        fields: Other columns than those.
        config_id: The inventory configuration's name (a part of every key).
        created: When the report began (seconds since the epoch).
        manifest_changes: Fields of the manifest to replace (to make a bad one).
    """
    if fields is None:
        fields = VERSION_FIELDS if versions else CURRENT_FIELDS
    base = f"inventory/{source_bucket}/{config_id}"
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H-%MZ")
    bodies = [
        (f"{base}/data/{uuid.uuid4()}.{_EXTENSIONS[file_format]}", body)
        for body in data_files(
            rows, source_bucket=source_bucket, file_format=file_format, fields=fields, files=files
        )
    ]
    for key, body in bodies:
        client.put_object(Bucket=bucket, Key=key, Body=body)
    content = manifest(
        source_bucket=source_bucket,
        inventory_bucket=bucket,
        file_format=file_format,
        fields=fields,
        files=bodies,
        created=created,
    )
    content.update(manifest_changes or {})
    text = json.dumps(content, indent=4).encode()
    manifest_key = f"{base}/{stamp}/manifest.json"
    client.put_object(Bucket=bucket, Key=manifest_key, Body=text)
    client.put_object(
        Bucket=bucket,
        Key=f"{base}/{stamp}/manifest.checksum",
        Body=hashlib.md5(text).hexdigest().encode(),
    )
    return Report(bucket, manifest_key, tuple(key for key, _ in bodies))
