"""What the engine writes besides the bytes, on stores in memory: the source's class kept or
not, Object Lock where the destination has it (and counted where it has not), the run's own
metadata and content types, and writes that never replace an object (--no-overwrite)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from s3longbow import retry
from s3longbow.config import MiB
from s3longbow.errors import NotReplacedError
from s3longbow.model import ObjectLock, ObjectProperties
from s3longbow.stores.base import Capabilities
from tests.memstore import MemoryStore
from tests.unit.test_engine import PART, SETTINGS, rig

LOCK = ObjectLock(mode="GOVERNANCE", retain_until="2031-01-01T00:00:00Z", legal_hold=True)
SIZES = {"single": MiB, "parts": 12 * MiB}


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(retry, "backoff_delay", lambda attempt: 0.0)
    yield


def stored(store: MemoryStore, key: str):  # type: ignore[no-untyped-def]
    return store.versions[key][-1]


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("server", [False, True], ids=["streamed", "server"])
def test_keep_writes_each_copy_in_its_source_s_class(size: int, server: bool) -> None:
    endpoint = "e" if server else None
    settings = dataclasses.replace(SETTINGS, storage_class="KEEP")
    r = rig(MemoryStore("src", endpoint=endpoint), MemoryStore("dst", endpoint=endpoint), settings)
    r.src.add("ia", os.urandom(size), storage_class="STANDARD_IA")
    r.src.add("std", os.urandom(size))
    r.copy(r.src.job("ia"))
    r.copy(r.src.job("std"))
    assert stored(r.dst, "ia").storage_class == "STANDARD_IA"
    assert stored(r.dst, "std").storage_class is None  # STANDARD: none named


def test_a_class_given_is_every_copy_s_class() -> None:
    r = rig(settings=dataclasses.replace(SETTINGS, storage_class="GLACIER"))
    r.src.add("ia", os.urandom(MiB), storage_class="STANDARD_IA")
    r.copy(r.src.job("ia"))
    assert stored(r.dst, "ia").storage_class == "GLACIER"


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("server", [False, True], ids=["streamed", "server"])
def test_a_lock_is_written_where_the_destination_has_object_lock(size: int, server: bool) -> None:
    endpoint = "e" if server else None
    r = rig(
        MemoryStore("src", endpoint=endpoint), MemoryStore("d", endpoint=endpoint, object_lock=True)
    )
    r.src.add("locked", os.urandom(size), properties=ObjectProperties(lock=LOCK))
    r.src.add("free", os.urandom(size))
    r.copy(r.src.job("locked"))
    r.copy(r.src.job("free"))
    assert stored(r.dst, "locked").properties.lock == LOCK
    assert stored(r.dst, "free").properties.lock is None
    assert r.stats.snapshot().locks_not_kept == ()


def test_without_object_lock_the_copy_goes_on_without_it_and_is_counted_once() -> None:
    r = rig()
    for key in ("a", "b"):
        r.src.add(key, os.urandom(MiB), properties=ObjectProperties(lock=LOCK))
        r.copy(r.src.job(key))
        assert stored(r.dst, key).properties.lock is None
    r.src.add("free", os.urandom(MiB))
    r.copy(r.src.job("free"))
    assert r.stats.snapshot().locks_not_kept == ((r.dst.describe(), 2),)
    assert r.dst.lock_asked == 2  # only for objects with a lock


def test_a_lock_a_multipart_start_did_not_keep_is_set_afterwards() -> None:
    class ForgetsLocks(MemoryStore):
        def create_upload(self, key: str, **kw):  # type: ignore[no-untyped-def, override]
            props = kw.pop("properties", None)
            kept = dataclasses.replace(props, lock=None) if props else None
            return super().create_upload(key, properties=kept, **kw)

    r = rig(dst=ForgetsLocks("dst", object_lock=True))
    r.src.add("big", os.urandom(12 * MiB), properties=ObjectProperties(lock=LOCK))
    r.copy(r.src.job("big"))
    assert r.dst.count("set-lock") == 1
    assert stored(r.dst, "big").properties.lock == LOCK


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("server", [False, True], ids=["streamed", "server"])
def test_the_run_s_metadata_and_content_types_are_written(size: int, server: bool) -> None:
    endpoint = "e" if server else None
    settings = dataclasses.replace(
        SETTINGS,
        content_type_map=(("json", "application/json"),),
        set_metadata=(("owner", "ops"),),
    )
    r = rig(MemoryStore("src", endpoint=endpoint), MemoryStore("dst", endpoint=endpoint), settings)
    props = ObjectProperties(content_type="binary/octet-stream", metadata=(("Owner", "x"),))
    r.src.add("data.json", os.urandom(size), properties=props)
    r.copy(r.src.job("data.json"))
    written = stored(r.dst, "data.json").properties
    assert written.content_type == "application/json"
    assert written.metadata == (("owner", "ops"),)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("server", [False, True], ids=["streamed", "server"])
def test_no_overwrite_never_replaces_a_key_that_appears_meanwhile(size: int, server: bool) -> None:
    endpoint = "e" if server else None
    settings = dataclasses.replace(SETTINGS, no_overwrite=True)
    r = rig(MemoryStore("src", endpoint=endpoint), MemoryStore("dst", endpoint=endpoint), settings)
    r.src.add("k", os.urandom(size))
    job = r.src.job("k")  # planned while the destination had no "k"
    r.dst.add("k", b"someone else's")
    with pytest.raises(NotReplacedError, match="exists, not replaced"):
        r.copier.copy(job)
    assert r.dst.data("k") == b"someone else's"
    r.src.add("new", os.urandom(size))
    r.copy(r.src.job("new"))  # a key nobody wrote is copied as ever


def test_a_customer_key_on_either_side_proves_no_copy_by_etags() -> None:
    keyed = Capabilities(write_etags_md5=False, customer_key=True)
    r = rig(MemoryStore("src", endpoint="e"), MemoryStore("dst", endpoint="e", capabilities=keyed))
    r.src.add("obj", os.urandom(MiB))
    result = r.copy(r.src.job("obj"))
    assert not result.verified and "customer key" in result.verify
    src = MemoryStore("src", capabilities=keyed)
    r = rig(src, MemoryStore("dst"))
    src.add("obj", os.urandom(MiB))
    result = r.copy(src.job("obj"))
    assert not result.verified and "no usable checksum" in result.verify
    src.add("summed", os.urandom(PART * 3), checksum="CRC32C")
    result = r.copy(src.job("summed"))
    assert (result.verified, result.verify) == (True, "source-crc32c")
