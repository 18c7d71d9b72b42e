"""Ports of the job layer that the transfer engine and the worker use."""

from __future__ import annotations

from typing import Protocol

from s3longbow.model import Job, ObjectInfo


class UploadLedger(Protocol):
    """Where the engine records an open upload and each part it sent, so a later attempt can
    tell which parts on the destination are valid (same size and checksum as sent)."""

    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> None: ...

    def record_part(self, job: Job, upload_id: str, number: int, size: int, etag: str) -> None: ...

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]: ...

    def update_source(self, job: Job, info: ObjectInfo) -> None: ...
