"""The data plane's protocol: the narrow calls that carry an object's bytes, its listing
pages and its HEADs, and start and finish its multipart uploads. The store speaks to its
endpoint's data through these alone, so their implementation can change without the store
(or anything above it) changing; :class:`s3longbow.stores.s3.lean.S3DataPlane` is the one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from s3longbow.model import Bytes
from s3longbow.stores.s3.connection import Body, RangeBody
from s3longbow.stores.s3.wire import ListPage


class DataPlane(Protocol):
    """One endpoint's data calls (see S3DataPlane for what each does and raises)."""

    @property
    def signer_name(self) -> str: ...

    @property
    def clock_offset(self) -> float: ...

    @property
    def relays(self) -> bool: ...

    def get_range(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
        into: bytearray | None = None,
        each: Callable[[memoryview], None] | None = None,
    ) -> Bytes: ...

    def get_object(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> tuple[bytes | bytearray, dict[str, str]]: ...

    def open_range(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
        whole: bool = False,
    ) -> RangeBody | None: ...

    def put_object(
        self,
        bucket: str,
        key: str,
        data: Body,
        *,
        md5_b64: str,
        storage_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str: ...

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        data: Body,
        *,
        md5_b64: str | None,
        headers: dict[str, str] | None = None,
    ) -> str: ...

    def head_object(
        self,
        bucket: str,
        key: str,
        *,
        etag: str | None = None,
        part_number: int | None = None,
        version_id: str | None = None,
    ) -> dict[str, str] | None: ...

    def head_bucket(self, bucket: str) -> tuple[int, dict[str, str]]: ...

    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str: ...

    def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        algorithm: str | None = None,
        part_checksums: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str: ...

    def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        start_after: str | None = None,
        marker: str | None = None,
        max_keys: int = 1000,
        restore_status: bool = False,
    ) -> ListPage: ...

    def close(self) -> None: ...
