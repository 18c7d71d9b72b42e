"""Archived sources: how S3's answers are classed (archived, never a permission problem), what a
HEAD shows, and what the engine does with an archived object, from its listing or from a
refused read, with and without restores asked for (stores in memory)."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3longbow.config import MiB, TransferSettings
from s3longbow.errors import (
    ArchivedError,
    FatalError,
    PermanentError,
    TransientError,
)
from s3longbow.model import (
    ALLOWED_TRANSITIONS,
    FINAL_STATES,
    Bytes,
    Job,
    JobState,
    ObjectDetails,
    RestoreStatus,
    needs_restore,
)
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import Restorable, RestoreAnswer
from s3longbow.stores.s3.errors import error_from_response, translate
from s3longbow.stores.s3.headers import archived_by_headers
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.engine import Copier
from tests.memstore import MemoryLedger, MemoryStore, SerialExecutor

INVALID_STATE = "The operation is not valid for the object's storage class"
EXPIRY = "Fri, 23 Dec 2033 00:00:00 GMT"
IT_ARCHIVED = {
    "x-amz-storage-class": "INTELLIGENT_TIERING",
    "x-amz-archive-status": "ARCHIVE_ACCESS",
}

# -- what S3's answers mean ------------------------------------------------------------------


def test_a_refused_read_of_an_archived_object_is_archived_not_a_permission_problem() -> None:
    for code in ("InvalidObjectState", "ObjectNotInActiveTierError"):
        error = error_from_response(code, 403, INVALID_STATE, "reading s3://b/k", source=True)
        assert type(error) is ArchivedError
        assert "archived" in error.message
        assert error.hint is not None and "--restore-days" in error.hint
        assert "permission" not in error.hint


def test_a_fatal_check_does_not_turn_an_archived_read_into_a_stop() -> None:
    error = error_from_response(
        "InvalidObjectState", 403, INVALID_STATE, "reading", source=True, fatal=True
    )
    assert isinstance(error, ArchivedError) and not isinstance(error, FatalError)


def test_access_denied_and_writes_keep_their_meaning() -> None:
    denied = error_from_response("AccessDenied", 403, "Access Denied", "reading", source=True)
    assert type(denied) is PermanentError and "permissions" in (denied.hint or "")
    # Not a read of the source: no object of ours is archived there.
    written = error_from_response("InvalidObjectState", 403, INVALID_STATE, "writing")
    assert type(written) is PermanentError


def test_botocore_s_copy_refusal_is_classed_the_same() -> None:
    exc = ClientError(
        {
            "Error": {"Code": "ObjectNotInActiveTierError", "Message": "not in the active tier"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "CopyObject",
    )
    assert isinstance(translate(exc, "copying", source=True), ArchivedError)


@pytest.mark.parametrize(
    ("headers", "archived"),
    [
        ({"x-amz-storage-class": "GLACIER"}, True),
        ({"x-amz-storage-class": "DEEP_ARCHIVE", "x-amz-restore": 'ongoing-request="true"'}, True),
        (
            {
                "x-amz-storage-class": "GLACIER",
                "x-amz-restore": f'ongoing-request="false", expiry-date="{EXPIRY}"',
            },
            False,
        ),
        (
            {
                "x-amz-storage-class": "INTELLIGENT_TIERING",
                "x-amz-archive-status": "ARCHIVE_ACCESS",
            },
            True,
        ),
        ({"x-amz-storage-class": "INTELLIGENT_TIERING"}, False),
        ({"x-amz-storage-class": "GLACIER_IR"}, False),
        ({}, False),
    ],
)
def test_what_a_head_shows(headers: dict[str, str], archived: bool) -> None:
    assert archived_by_headers(headers) is archived


def test_what_a_listing_shows() -> None:
    assert needs_restore("GLACIER", None)
    assert needs_restore("DEEP_ARCHIVE", RestoreStatus.IN_PROGRESS)
    assert not needs_restore("GLACIER", RestoreStatus.RESTORED)
    assert not needs_restore("GLACIER_IR", None)
    assert not needs_restore(None, None)


def test_archived_is_a_final_state_a_planning_pass_reopens() -> None:
    assert JobState.ARCHIVED in FINAL_STATES
    assert JobState.ARCHIVED in ALLOWED_TRANSITIONS[JobState.IN_PROGRESS]
    assert JobState.PENDING in ALLOWED_TRANSITIONS[JobState.ARCHIVED]


# -- the engine ------------------------------------------------------------------------------


class ArchiveStore(MemoryStore):
    """A store in memory whose `frozen` objects refuse reads (as S3 does, InvalidObjectState)
    until a restore thaws them; it answers restores with `answer`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("archive", **kwargs)
        self.frozen: dict[str, str] = {}  # key -> storage class
        self.head_archived: set[str] = set()  # keys whose HEAD shows them archived
        self.restores: list[tuple[str, int | None, str]] = []
        self.answer = RestoreAnswer.STARTED
        self.thaw = False  # a restore makes the object readable at once

    def restore_object(
        self, key: str, *, days: int | None, tier: str, version_id: str | None = None
    ) -> RestoreAnswer:
        self._call("restore", key)
        self.restores.append((key, days, tier))
        if self.thaw:
            self.frozen.pop(key, None)
        return self.answer

    def details(
        self, key: str, etag: str | None, *, part_one: bool = False, version_id: str | None = None
    ) -> ObjectDetails:
        found = super().details(key, etag, part_one=part_one, version_id=version_id)
        return replace(
            found,
            storage_class=self.frozen.get(key),
            archived=key in self.head_archived and key in self.frozen,
        )

    def _read(
        self, key: str, start: int, length: int, etag: str | None, version_id: str | None
    ) -> bytes:
        if key in self.frozen:
            raise error_from_response(
                "InvalidObjectState", 403, INVALID_STATE, f"reading {key}", source=True
            )
        return super()._read(key, start, length, etag, version_id)


PLAIN = TransferSettings()


def copier(src: ArchiveStore, dst: MemoryStore, settings: TransferSettings = PLAIN) -> Copier:
    settings = replace(settings, part_size=5 * MiB, resumable_threshold=5 * MiB)
    return Copier(
        src,
        dst,
        ledger=MemoryLedger(),
        settings=settings,
        budget=ByteBudget(settings.memory_limit),
        part_pool=SerialExecutor(),
        stats=Stats(),
        stop=threading.Event(),
    )


def stores(data: Bytes = b"cold bytes") -> tuple[ArchiveStore, MemoryStore]:
    src, dst = ArchiveStore(), MemoryStore("dst")
    src.add("k", bytes(data))
    return src, dst


RESTORING = TransferSettings(restore_days=7, restore_tier="Bulk")


def test_the_store_in_memory_can_restore() -> None:
    assert isinstance(ArchiveStore(), Restorable)


def test_an_object_listed_archived_is_not_read_and_needs_a_restore() -> None:
    src, dst = stores()
    src.frozen["k"] = "GLACIER"
    job = src.job("k", storage_class="GLACIER")
    with pytest.raises(ArchivedError) as caught:
        copier(src, dst).copy(job)
    assert not caught.value.restoring
    assert caught.value.message == "archived (GLACIER): needs a restore before it can be read"
    assert src.calls == [] and dst.data("k") is None  # no read, no restore asked for
    assert job.restore_requested is None


def test_with_restore_days_its_restore_is_asked_for_once_and_recorded() -> None:
    src, dst = stores()
    src.frozen["k"] = "DEEP_ARCHIVE"
    job = src.job("k", storage_class="DEEP_ARCHIVE")
    with pytest.raises(ArchivedError) as caught:
        copier(src, dst, RESTORING).copy(job)
    assert caught.value.restoring
    assert caught.value.message == "archived (DEEP_ARCHIVE): restore requested (Bulk, 7 day(s))"
    assert src.restores == [("k", 7, "Bulk")]
    assert src.count("get") == 0
    assert job.restore_requested is not None


def test_a_restore_already_under_way_is_what_was_wanted() -> None:
    src, dst = stores()
    src.frozen["k"] = "GLACIER"
    src.answer = RestoreAnswer.IN_PROGRESS
    job = src.job("k", storage_class="GLACIER")
    with pytest.raises(ArchivedError) as caught:
        copier(src, dst, RESTORING).copy(job)
    assert caught.value.restoring and len(src.restores) == 1


def test_a_restore_found_ready_is_copied_at_once() -> None:
    src, dst = stores()
    src.frozen["k"] = "GLACIER"
    src.thaw, src.answer = True, RestoreAnswer.READY
    copier(src, dst, RESTORING).copy(src.job("k", storage_class="GLACIER"))
    assert dst.data("k") == b"cold bytes"
    assert len(src.restores) == 1


def test_a_listing_that_shows_the_restore_decides_without_a_request() -> None:
    src, dst = stores()
    src.frozen["k"] = "GLACIER"
    coming = src.job("k", storage_class="GLACIER", restore=RestoreStatus.IN_PROGRESS)
    with pytest.raises(ArchivedError) as caught:
        copier(src, dst, RESTORING).copy(coming)
    assert caught.value.restoring and "restore in progress" in caught.value.message
    assert src.restores == [] and src.calls == []
    assert coming.restore_requested is not None  # waited for from now on

    del src.frozen["k"]  # restored: the listing says so, and the copy goes ahead
    restored = src.job("k", storage_class="GLACIER", restore=RestoreStatus.RESTORED)
    copier(src, dst, RESTORING).copy(restored)
    assert dst.data("k") == b"cold bytes" and src.restores == []


def test_a_restore_asked_for_earlier_is_checked_by_reading() -> None:
    src, dst = stores()
    src.frozen["k"] = "GLACIER"
    earlier = src.job("k", storage_class="GLACIER", restore_requested=1_700_000_000.0)
    with pytest.raises(ArchivedError) as caught:
        copier(src, dst).copy(earlier)
    assert caught.value.restoring and "not finished yet" in caught.value.message
    assert src.count("get") == 1 and src.restores == []

    del src.frozen["k"]  # the read is the final word
    copier(src, dst).copy(replace(earlier))
    assert dst.data("k") == b"cold bytes"


def test_a_read_refused_for_an_object_the_listing_did_not_flag_is_archived() -> None:
    src, dst = stores()
    src.frozen["k"] = "INTELLIGENT_TIERING"  # an archive tier: no listing shows it
    job = src.job("k")
    with pytest.raises(ArchivedError) as caught:
        copier(src, dst).copy(job)
    assert not caught.value.restoring and caught.value.message.startswith("archived")
    assert src.restores == []

    # Asked to restore, the tier's object is restored with no days (it stays restored).
    with pytest.raises(ArchivedError) as caught:
        copier(src, dst, RESTORING).copy(src.job("k"))
    assert caught.value.restoring
    assert src.restores == [("k", None, "Bulk")]


def test_a_head_that_shows_an_archive_tier_starts_no_upload() -> None:
    src, dst = stores(bytes(6 * MiB))  # over the threshold: a copy in parts, after a HEAD
    src.frozen["k"] = "INTELLIGENT_TIERING"
    src.head_archived.add("k")
    with pytest.raises(ArchivedError):
        copier(src, dst).copy(src.job("k"))
    assert src.count("get") == 0 and dst.uploads == {}
    assert [op for op, _ in src.calls] == ["details"]


def test_expedited_is_not_asked_of_deep_archive() -> None:
    src, dst = stores()
    src.frozen["k"] = "DEEP_ARCHIVE"
    with pytest.raises(ArchivedError):
        copier(src, dst, replace(RESTORING, restore_tier="Expedited")).copy(
            src.job("k", storage_class="DEEP_ARCHIVE")
        )
    src.frozen["j"] = "GLACIER"
    src.add("j", b"x")
    with pytest.raises(ArchivedError):
        copier(src, dst, replace(RESTORING, restore_tier="Expedited")).copy(
            src.job("j", storage_class="GLACIER")
        )
    assert src.restores == [("k", 7, "Standard"), ("j", 7, "Expedited")]


def test_a_store_that_says_it_reads_yet_refused_a_read_is_tried_again() -> None:
    src, dst = stores()
    src.frozen["k"] = "GLACIER"
    src.answer = RestoreAnswer.READY  # but the object stays frozen
    job = src.job("k")  # not flagged by its listing: the read is refused first
    with pytest.raises(TransientError):
        copier(src, dst, RESTORING).copy(job)


def test_a_changed_source_is_not_taken_for_an_archived_one() -> None:
    src, dst = stores()
    job: Job = src.job("k")
    src.add("k", b"new bytes!")  # the pinned read fails (412): restarted, never restored
    copier(src, dst, RESTORING).copy(job)
    assert dst.data("k") == b"new bytes!" and src.restores == []
