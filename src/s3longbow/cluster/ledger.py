"""The UploadLedger of a cluster worker: a job's open upload and the parts it sent, in the
job table (the job queue inherits it)."""

from __future__ import annotations

from s3longbow.model import Job, ObjectInfo

from .dynamodb import JobTable, persist


class TableLedger:
    """Uploads and parts of the jobs a worker runs, recorded in the job table (every write
    conditional on the job's claim, see `JobTable`)."""

    table: JobTable

    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> None:
        persist(lambda: self.table.set_upload(job, upload_id, part_size, upload_etag))
        job.upload_id, job.part_size, job.upload_etag = upload_id, part_size, upload_etag

    def record_part(
        self,
        job: Job,
        upload_id: str,
        number: int,
        size: int,
        etag: str,
        *,
        checksum: str | None = None,
    ) -> None:
        self.table.record_part(job, upload_id, number, size, etag, checksum=checksum)

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        return self.table.recorded_parts(job, upload_id)

    def update_source(self, job: Job, info: ObjectInfo) -> None:
        persist(lambda: self.table.update_source(job, info))
        job.size, job.etag = info.size, info.etag
        job.last_modified, job.version_id = info.last_modified, info.version_id
        job.upload_id = job.part_size = job.upload_etag = None
        job.restarts += 1


__all__ = ["TableLedger"]
