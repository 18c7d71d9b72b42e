"""S3 Inventory reports read into listings: the manifest (AWS's documented examples, and what
is refused), data files in each format, and a report fetched from a store in memory: checked
against its MD5s, filtered to the pair's prefix and sorted on disk into the merge's order."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.inventory import (
    CURRENT_FIELDS,
    VERSION_FIELDS,
    InventoryRow,
    data_files,
    manifest,
)
from s3longbow.model import ObjectInfo
from s3longbow.pairs import PairRuntime
from s3longbow.plan.inventory import (
    InventoryError,
    Manifest,
    field_name,
    parse_manifest,
    read_data_file,
    schema_fields,
)
from s3longbow.plan.inventory_listing import inventory_listing, inventory_snapshots
from s3longbow.stores.base import Capabilities
from s3longbow.stores.location import parse_location
from tests.memstore import MemoryStore

# AWS's documented manifests (storage-inventory-location), one per format.
AWS_CSV = {
    "sourceBucket": "example-source-bucket",
    "destinationBucket": "arn:aws:s3:::example-inventory-destination-bucket",
    "version": "2016-11-30",
    "creationTimestamp": "1514944800000",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, "
    "ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, "
    "ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, "
    "IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm, "
    "ObjectAccessControlList, ObjectOwner",
    "files": [
        {
            "key": "Inventory/example-source-bucket/2016-11-06T21-32Z/files/"
            "939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz",
            "size": 2147483647,
            "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc",
        }
    ],
}
AWS_ORC_SCHEMA = (
    "struct<bucket:string,key:string,version_id:string,is_latest:boolean,"
    "is_delete_marker:boolean,size:bigint,last_modified_date:timestamp,e_tag:string,"
    "storage_class:string,is_multipart_uploaded:boolean,replication_status:string,"
    "encryption_status:string,object_lock_retain_until_date:timestamp,object_lock_mode:string,"
    "object_lock_legal_hold_status:string,intelligent_tiering_access_tier:string,"
    "bucket_key_status:string,checksum_algorithm:string,object_access_control_list:string,"
    "object_owner:string>"
)
AWS_PARQUET_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
    "optional binary version_id (UTF8); optional boolean is_latest; optional boolean "
    "is_delete_marker; optional int64 size; optional int64 last_modified_date "
    "(TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary storage_class (UTF8); "
    "optional boolean is_multipart_uploaded; optional binary replication_status (UTF8); "
    "optional binary encryption_status (UTF8); optional int64 object_lock_retain_until_date "
    "(TIMESTAMP_MILLIS); optional binary object_lock_mode (UTF8); optional binary "
    "object_lock_legal_hold_status (UTF8); optional binary intelligent_tiering_access_tier "
    "(UTF8); optional binary bucket_key_status (UTF8); optional binary checksum_algorithm "
    "(UTF8); optional binary object_access_control_list (UTF8); optional binary object_owner "
    "(UTF8);}"
)
FORMATS = ("CSV", "ORC", "Parquet")


def _body(content: dict[str, Any]) -> bytes:
    return json.dumps(content).encode()


# -- the manifest ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_format", "schema"),
    [("CSV", AWS_CSV["fileSchema"]), ("ORC", AWS_ORC_SCHEMA), ("Parquet", AWS_PARQUET_SCHEMA)],
)
def test_aws_documented_manifests_are_read(file_format: str, schema: str) -> None:
    found = parse_manifest(_body({**AWS_CSV, "fileFormat": file_format, "fileSchema": schema}), "m")
    assert found.source_bucket == "example-source-bucket"
    assert found.file_format == file_format
    assert found.created == 1514944800.0
    assert found.snapshot == "the inventory of 2018-01-03 02:00 UTC"
    # Every format's schema names the same columns, in the same order.
    assert found.fields[:10] == (
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
    assert len(found.fields) == 20 and found.has_versions
    [data_file] = found.files
    assert data_file.size == 2147483647 and data_file.md5 == "f11166069f1990abeb9c97ace9cdfabc"


@pytest.mark.parametrize(
    ("name", "spelling"),
    [
        ("e_tag", "ETag"),
        ("key", "Key"),
        ("last_modified_date", "LastModifiedDate"),
        ("ETag", "ETag"),
    ],
)
def test_column_names_have_one_spelling(name: str, spelling: str) -> None:
    assert field_name(name) == spelling


def test_schemas_of_each_format_name_their_columns() -> None:
    assert schema_fields("Bucket, Key,Size", "CSV") == ("Bucket", "Key", "Size")
    assert schema_fields("struct<bucket:string,key:string,size:bigint>", "ORC") == (
        "Bucket",
        "Key",
        "Size",
    )
    assert schema_fields(
        "message s3.inventory { required binary key (UTF8); optional int64 size;}", "Parquet"
    ) == ("Key", "Size")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fileFormat": "XML"}, "unknown fileFormat 'XML'"),
        ({"fileSchema": "Bucket, Size, ETag"}, "no Key column"),
        ({"fileSchema": "Bucket, Key, ETag"}, "no Size column"),
        ({"sourceBucket": ""}, "has no sourceBucket"),
        ({"creationTimestamp": "yesterday"}, "not a time in milliseconds"),
        ({"files": []}, "lists no data files"),
        ({"files": [{"key": "k", "size": 1, "MD5checksum": "nope"}]}, r"files\[0\] needs"),
        ({"files": [{"key": "k", "size": -1, "MD5checksum": "0" * 32}]}, r"files\[0\] needs"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        parse_manifest(_body({**AWS_CSV, **change}), "s3://inv/manifest.json")


def test_a_manifest_that_is_not_json_is_refused() -> None:
    with pytest.raises(InventoryError, match="is not JSON") as refused:
        parse_manifest(b"<xml/>", "s3://inv/manifest.json")
    assert refused.value.hint and "manifest.json" in refused.value.hint


# -- data files -----------------------------------------------------------------------------


def _manifest(file_format: str, fields: tuple[str, ...] = CURRENT_FIELDS) -> Manifest:
    content = manifest(
        source_bucket="src",
        inventory_bucket="inv",
        file_format=file_format,
        fields=fields,
        files=[("data/1", b"")],
        created=1_714_521_600,
    )
    return parse_manifest(_body(content), "m")


def _read(
    tmp_path: Path,
    rows: list[InventoryRow],
    file_format: str,
    *,
    prefix: str = "",
    fields: tuple[str, ...] = CURRENT_FIELDS,
) -> list[ObjectInfo]:
    [body] = data_files(rows, source_bucket="src", file_format=file_format, fields=fields)
    path = tmp_path / "data"
    path.write_bytes(body)
    return list(read_data_file(path, _manifest(file_format, fields), prefix=prefix, where="f"))


AWKWARD = ["dir/a b+c%d.txt", "dir/ü/漢字", "dir/q?x=1&y#z", "dir/trailing/", "other/x"]


@pytest.mark.parametrize("file_format", FORMATS)
def test_a_data_file_lists_its_objects_exactly(tmp_path: Path, file_format: str) -> None:
    rows = [
        InventoryRow(key, 10 + i, f"{i:032x}", 1_700_000_000.5 + i, "STANDARD_IA")
        for i, key in enumerate(AWKWARD)
    ]
    found = _read(tmp_path, rows, file_format, prefix="dir/")
    assert found == [
        ObjectInfo(key, 10 + i, f"{i:032x}", 1_700_000_000.5 + i, None, "STANDARD_IA")
        for i, key in enumerate(AWKWARD[:-1])
    ]


def test_csv_keys_are_url_decoded(tmp_path: Path) -> None:
    # As S3 writes them: a space as "+", a "+" and a "%" escaped.
    line = '"src","dir/a+b%2Bc%25d.txt","3","2024-05-01T00:00:00.000Z","abc","STANDARD","false"\n'
    (tmp_path / "d").write_bytes(gzip.compress(line.encode()))
    [found] = read_data_file(tmp_path / "d", _manifest("CSV"), prefix="", where="f")
    assert found.key == "dir/a b+c%d.txt" and found.size == 3 and found.etag == "abc"
    assert found.last_modified == 1_714_521_600.0


@pytest.mark.parametrize("file_format", FORMATS)
def test_only_current_versions_that_are_no_delete_markers_are_kept(
    tmp_path: Path, file_format: str
) -> None:
    rows = [
        InventoryRow("kept", 5, "e2", version_id="v2"),
        InventoryRow("kept", 4, "e1", version_id="v1", is_latest=False),
        InventoryRow("deleted", None, version_id="m1", is_delete_marker=True),
        InventoryRow("deleted", 7, "e3", version_id="v0", is_latest=False),
        InventoryRow("null-version", 1, "e4", version_id="null"),
    ]
    found = _read(tmp_path, rows, file_format, fields=VERSION_FIELDS)
    assert [(o.key, o.size, o.etag, o.version_id) for o in found] == [
        ("kept", 5, "e2", None),  # the copy reads the current version, pinned by its ETag
        ("null-version", 1, "e4", None),
    ]


def test_a_row_that_does_not_fit_the_schema_is_refused_with_its_line(tmp_path: Path) -> None:
    lines = '"src","a","1","","","",""\n"src","b","2"\n'
    (tmp_path / "d").write_bytes(gzip.compress(lines.encode()))
    with pytest.raises(InventoryError, match="line 2: 3 columns, the manifest's schema has 7"):
        list(read_data_file(tmp_path / "d", _manifest("CSV"), prefix="", where="f"))


def test_a_data_file_not_of_its_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").write_bytes(b"not parquet at all")
    with pytest.raises(InventoryError, match="not readable Parquet"):
        list(read_data_file(tmp_path / "d", _manifest("Parquet"), prefix="", where="f"))


# -- a report fetched from a store ----------------------------------------------------------


def _pair(store: MemoryStore, *, src: str = "s3://src/dir/", order: str = "bytes") -> PairRuntime:
    dst = MemoryStore("dst", capabilities=Capabilities(listing_order=order))  # type: ignore[arg-type]
    return PairRuntime(
        0,
        parse_location(src),
        parse_location("s3://dst/"),
        MemoryStore("src"),
        dst,
        parse_location("s3://inv/report/manifest.json"),
        store,
    )


def _publish(
    store: MemoryStore,
    rows: list[InventoryRow],
    *,
    files: int = 3,
    source_bucket: str = "src",
    file_format: str = "CSV",
) -> list[str]:
    bodies = data_files(rows, source_bucket="src", file_format=file_format, files=files)
    named = [(f"report/data/{i}", body) for i, body in enumerate(bodies)]
    for key, body in named:
        store.add(key, body)
    content = manifest(
        source_bucket=source_bucket,
        inventory_bucket="inv",
        file_format=file_format,
        fields=CURRENT_FIELDS,
        files=named,
        created=1_714_521_600,
    )
    store.add("report/manifest.json", _body(content))
    return [key for key, _ in named]


KEYS = ["dir/b", "dir/a/z", "dir/a-c", "dir/a/b", "elsewhere/x", "dir/c", "dir/a0"]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("bytes", ["dir/a-c", "dir/a/b", "dir/a/z", "dir/a0", "dir/b", "dir/c"]),
        ("segments", ["dir/a/b", "dir/a/z", "dir/a-c", "dir/a0", "dir/b", "dir/c"]),
    ],
)
def test_a_report_comes_out_under_the_prefix_in_the_merge_s_order(
    tmp_path: Path, order: str, expected: list[str]
) -> None:
    store = MemoryStore("inv")
    _publish(store, [InventoryRow(k, len(k), "e") for k in KEYS])
    found = list(inventory_listing(_pair(store), order, folder=tmp_path))  # type: ignore[arg-type]
    assert [o.key for o in found] == expected
    assert list(tmp_path.iterdir()) == []  # the data files and the sort are cleaned up


def test_a_data_file_that_fails_its_md5_stops_the_listing(tmp_path: Path) -> None:
    store = MemoryStore("inv")
    keys = _publish(store, [InventoryRow(k, 1, "e") for k in KEYS])
    damaged = bytearray(store.data(keys[1]) or b"")
    damaged[-1] ^= 1  # the same size, one bit off
    store.add(keys[1], bytes(damaged))
    with pytest.raises(InventoryError, match="fails its MD5 check"):
        next(inventory_listing(_pair(store), "bytes", folder=tmp_path))


def test_a_data_file_of_another_size_or_missing_stops_the_listing(tmp_path: Path) -> None:
    store = MemoryStore("inv")
    keys = _publish(store, [InventoryRow(k, 1, "e") for k in KEYS])
    store.add(keys[0], b"short")
    with pytest.raises(InventoryError, match="its manifest says"):
        next(inventory_listing(_pair(store), "bytes", folder=tmp_path))
    store.delete_object(keys[0])
    with pytest.raises(InventoryError, match="does not exist"):
        next(inventory_listing(_pair(store), "bytes", folder=tmp_path))


def test_a_report_of_another_bucket_is_refused_before_any_data_file_is_read() -> None:
    store = MemoryStore("inv")
    _publish(store, [InventoryRow("dir/a", 1, "e")], source_bucket="someone-else")
    with pytest.raises(InventoryError, match="lists bucket 'someone-else', not the source"):
        inventory_snapshots([_pair(store)])
    assert store.count("get") == 1  # the manifest only


def test_a_missing_manifest_is_refused() -> None:
    with pytest.raises(InventoryError, match="manifest mem://inv/report/manifest.json does not"):
        inventory_snapshots([_pair(MemoryStore("inv"))])


def test_a_key_listed_twice_is_refused(tmp_path: Path) -> None:
    store = MemoryStore("inv")
    _publish(store, [InventoryRow("dir/a", 1, "e"), InventoryRow("dir/a", 1, "e")], files=2)
    with pytest.raises(InventoryError, match="lists 'dir/a' twice"):
        list(inventory_listing(_pair(store), "bytes", folder=tmp_path))


def test_each_pair_with_a_report_is_named_by_it() -> None:
    store = MemoryStore("inv")
    _publish(store, [InventoryRow("dir/a", 1, "e")])
    assert inventory_snapshots([_pair(store)]) == {0: "the inventory of 2024-05-01 00:00 UTC"}
