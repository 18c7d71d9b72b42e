"""The transfer engine on stores in memory, with part tasks run inline: the path each object
takes, resume, repair, every verdict, cancellation and a source that changes mid-copy."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from s3longbow import retry
from s3longbow.config import MiB, TransferSettings
from s3longbow.errors import PermanentError, SourceChangedError, SourceGoneError
from s3longbow.model import Job, JobResult
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import RELAY_BUFFER, Capabilities
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.engine import Attempt, Copier, Interrupted, VerificationError
from tests.memstore import MemoryLedger, MemoryStore, SerialExecutor, md5_hex

PART = 5 * MiB  # the smallest part S3 takes: three parts make a 12 MiB object
SETTINGS = TransferSettings(
    part_size=PART,
    resumable_threshold=PART,
    memory_limit=4 * PART,
    part_threads=2,
    part_attempts=2,
)
AUTO = Capabilities(checksums="auto")
KMS = Capabilities(write_etags_md5=False)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(retry, "backoff_delay", lambda attempt: 0.0)
    yield


def data(size: int) -> bytes:
    return os.urandom(size)


@dataclass
class Rig:
    src: MemoryStore
    dst: MemoryStore
    ledger: MemoryLedger
    stats: Stats
    stop: threading.Event
    copier: Copier

    def copy(self, job: Job, attempt: Attempt | None = None) -> JobResult:
        result = self.copier.copy(job, attempt)
        assert self.dst.data(job.dst_key) == self.src.data(job.src_key)
        return result


def rig(
    src: MemoryStore | None = None,
    dst: MemoryStore | None = None,
    settings: TransferSettings = SETTINGS,
    budget: ByteBudget | None = None,
) -> Rig:
    src = src or MemoryStore("src")
    dst = dst or MemoryStore("dst")
    ledger, stats, stop = MemoryLedger(), Stats(), threading.Event()
    copier = Copier(
        src,
        dst,
        ledger=ledger,
        settings=settings,
        budget=budget or ByteBudget(settings.memory_limit),
        part_pool=SerialExecutor(),
        stats=stats,
        stop=stop,
    )
    return Rig(src, dst, ledger, stats, stop, copier)


def verdict(result: JobResult) -> tuple[bool, str]:
    return result.verified, result.verify


# -- the path each object takes ---------------------------------------------------------------


def test_zero_bytes_go_in_one_put() -> None:
    r = rig()
    r.src.add("empty", b"")
    result = r.copy(r.src.job("empty"))
    assert verdict(result) == (True, "source-md5")
    assert r.dst.calls == [("put", "empty")]


def test_a_small_object_goes_in_one_put_proven_by_its_content_md5() -> None:
    r = rig()
    r.src.add("small", data(MiB))
    result = r.copy(r.src.job("small"))
    assert verdict(result) == (True, "source-md5")
    assert r.src.count("details") == 0  # the GET's headers were enough
    assert r.dst.calls == [("put", "small")]
    assert result.bytes_sent == MiB


def test_a_small_object_is_relayed_between_plain_http_endpoints() -> None:
    r = rig(MemoryStore("src", relays=True), MemoryStore("dst", relays=True))
    r.src.add("obj", data(2 * MiB))
    result = r.copy(r.src.job("obj"))
    assert verdict(result) == (True, "source-md5")
    assert r.src.calls == [("open", "obj")]


class CountedBudget(ByteBudget):
    """A budget that keeps what each acquire asked for."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.asked: list[int] = []

    def acquire(self, nbytes: int) -> int:
        self.asked.append(nbytes)
        return super().acquire(nbytes)


def counted_rig(src: MemoryStore, dst: MemoryStore) -> tuple[Rig, CountedBudget]:
    budget = CountedBudget(SETTINGS.memory_limit)
    return rig(src, dst, budget=budget), budget


def test_a_relayed_object_holds_only_the_relay_s_buffer_of_memory() -> None:
    r, budget = counted_rig(MemoryStore("src", relays=True), MemoryStore("dst", relays=True))
    r.src.add("obj", data(3 * MiB))
    r.copy(r.src.job("obj"))
    assert budget.asked == [RELAY_BUFFER]
    assert budget._used == 0  # everything given back


def test_an_object_the_reply_shows_cannot_be_relayed_takes_its_size_before_its_read() -> None:
    # An ETag like an MD5 plans a relay; the reply shows a KMS-encrypted source, whose bytes
    # must be hashed here: the relay's share is given back, then the object's size taken.
    r, budget = counted_rig(MemoryStore("src", relays=True), MemoryStore("dst", relays=True))
    r.src.add("kms", data(3 * MiB), checksum="CRC32", encrypted=True)
    result = r.copy(r.src.job("kms"))
    assert verdict(result) == (True, "source-crc32")
    assert budget.asked == [RELAY_BUFFER, 3 * MiB]
    assert budget._used == 0


def test_a_relayed_put_the_destination_cannot_prove_goes_through_memory() -> None:
    r = rig(MemoryStore("src", relays=True), MemoryStore("dst", relays=True))
    r.dst.etag_rewrite = lambda etag: "not-an-md5"
    r.src.add("obj", data(2 * MiB))
    result = r.copy(r.src.job("obj"))
    # The relayed copy was deleted; the retry read the bytes and checked their MD5 here.
    assert verdict(result) == (True, "source-md5")
    assert [op for op, _ in r.src.calls] == ["open", "get"]
    assert not r.copier.context.learned.relays


def test_a_large_object_goes_in_parts_of_ours_proven_by_its_md5() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    result = r.copy(r.src.job("big"))
    assert verdict(result) == (True, "source-md5")
    assert r.dst.count("upload-part") == 3
    assert r.dst.guards == ["md5"] * 3
    assert result.bytes_sent == 12 * MiB


def test_parts_go_under_a_crc_alone_where_the_destination_takes_checksums() -> None:
    r = rig(dst=MemoryStore("dst", capabilities=AUTO))
    r.src.add("big", data(12 * MiB))
    assert verdict(r.copy(r.src.job("big"))) == (True, "source-md5")
    assert r.dst.guards == ["crc"] * 3


def test_a_crc_the_destination_does_not_confirm_turns_parts_to_md5s() -> None:
    r = rig(dst=MemoryStore("dst", capabilities=AUTO, confirms_checksums=False))
    r.src.add("one", data(12 * MiB))
    r.src.add("two", data(12 * MiB))
    assert verdict(r.copy(r.src.job("one"))) == (True, "source-md5")
    # The unconfirmed part went again with its MD5, and so did every later part.
    assert r.dst.guards == ["crc", "md5", "md5", "md5"]
    r.dst.guards.clear()
    assert verdict(r.copy(r.src.job("two"))) == (True, "source-md5")
    assert r.dst.guards == ["md5"] * 3


def test_a_multipart_source_is_copied_with_its_own_parts() -> None:
    r = rig()
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    job = r.src.job("mp")
    result = r.copy(job)
    assert verdict(result) == (True, "source-etag")
    assert result.dst_etag == job.etag
    assert r.src.count("details-part-1") == 1


def test_a_multipart_source_s_parts_are_relayed() -> None:
    r = rig(MemoryStore("src", relays=True), MemoryStore("dst", relays=True))
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    result = r.copy(r.src.job("mp"))
    assert verdict(result) == (True, "source-etag")
    assert r.src.count("open") == 3 and r.src.count("get") == 0
    assert r.dst.guards == ["none"] * 3


def test_the_server_copies_where_one_endpoint_holds_both_sides() -> None:
    r = rig(MemoryStore("src", endpoint="e"), MemoryStore("dst", endpoint="e"))
    r.src.add("obj", data(MiB))
    result = r.copy(r.src.job("obj"))
    assert verdict(result) == (True, "source-md5")
    assert "copied on the server" in result.notes
    assert r.dst.calls[0] == ("copy", "obj") and r.src.count("get") == 0


def test_the_server_copies_a_multipart_source_part_by_part() -> None:
    r = rig(MemoryStore("src", endpoint="e"), MemoryStore("dst", endpoint="e"))
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    job = r.src.job("mp")
    result = r.copy(job)
    assert verdict(result) == (True, "source-etag")
    assert r.dst.count("upload-part-copy") == 3 and result.dst_etag == job.etag


def test_an_open_upload_of_other_settings_is_aborted_before_one_put() -> None:
    r = rig()
    r.src.add("small", data(MiB))
    job = r.src.job("small", upload_id="old", part_size=PART, upload_etag="x")
    r.copy(job)
    assert r.dst.calls == [("abort", "small"), ("put", "small")]
    assert job.upload_id is None


# -- resume -----------------------------------------------------------------------------------


def fail_reads_at(store: MemoryStore, offset: int) -> None:
    def hook(key: str, start: int) -> None:
        if start == offset:
            store.on_read = None
            raise PermanentError("the read broke")

    store.on_read = hook


def test_a_copy_resumes_from_the_parts_recorded() -> None:
    r = rig()
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    job = r.src.job("mp")
    fail_reads_at(r.src, 2 * PART)
    with pytest.raises(PermanentError):
        r.copier.copy(job)
    assert job.upload_id is not None  # left open to resume
    r.src.calls.clear()
    result = r.copy(job)
    # The ETags of the parts prove them: the two sent before are neither read nor sent again.
    assert r.src.count("get") == 1
    assert (result.bytes_sent, result.bytes_reused) == (2 * MiB, 2 * PART)
    assert verdict(result) == (True, "source-etag")


def test_parts_kept_for_the_proof_are_read_again_but_not_sent() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    job = r.src.job("big")
    fail_reads_at(r.src, 2 * PART)
    with pytest.raises(PermanentError):
        r.copier.copy(job)
    sent_before = r.dst.count("upload-part")
    r.src.calls.clear()
    result = r.copy(job)
    assert r.src.count("get") == 3  # the MD5 of all the bytes needs every part, in order
    assert r.dst.count("upload-part") == sent_before + 1
    assert (result.bytes_sent, result.bytes_reused) == (2 * MiB, 2 * PART)
    assert verdict(result) == (True, "source-md5")


def test_parts_the_ledger_never_recorded_are_kept_when_their_bytes_match() -> None:
    r = rig()
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    job = r.src.job("mp")
    fail_reads_at(r.src, 2 * PART)
    with pytest.raises(PermanentError):
        r.copier.copy(job)
    r.ledger.parts.clear()  # the process died before it recorded them
    sent_before = r.dst.count("upload-part")
    result = r.copy(job)
    assert r.dst.count("upload-part") == sent_before + 1
    assert (result.bytes_sent, result.bytes_reused) == (2 * MiB, 2 * PART)
    assert job.upload_id is not None
    assert sorted(r.ledger.recorded_parts(job, job.upload_id)) == [1, 2, 3]


def test_an_unrecorded_part_whose_bytes_differ_is_sent_again() -> None:
    r = rig()
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    job = r.src.job("mp")
    fail_reads_at(r.src, 2 * PART)
    with pytest.raises(PermanentError):
        r.copier.copy(job)
    r.ledger.parts.clear()
    assert job.upload_id is not None
    # Part 2 on the destination is not what the source holds (another writer's).
    r.dst.upload_part("mp", job.upload_id, 2, data(PART), md5_b64=None)
    result = r.copy(job)
    assert (result.bytes_sent, result.bytes_reused) == (PART + 2 * MiB, PART)
    assert verdict(result) == (True, "source-etag")


def test_an_upload_that_no_longer_fits_the_source_starts_over() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    job = r.src.job("big", upload_id="stale", part_size=8 * MiB, upload_etag="other")
    result = r.copy(job)
    assert ("abort", "big") in r.dst.calls and result.bytes_reused == 0


# -- repair -----------------------------------------------------------------------------------


def test_a_part_read_corrupted_is_found_by_the_proof_and_sent_again() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    r.src.corrupt_reads[("big", PART)] = 1  # part 2 is read wrong once
    result = r.copy(r.src.job("big"))
    assert verdict(result) == (True, "source-md5")
    assert "parts [2] were read corrupted and sent again" in result.notes
    assert r.dst.count("upload-part") == 4


def test_a_multipart_source_s_part_read_corrupted_is_sent_again() -> None:
    r = rig()
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    r.src.corrupt_reads[("mp", 2 * PART)] = 1
    result = r.copy(r.src.job("mp"))
    assert verdict(result) == (True, "source-etag")
    assert "parts [3] were read corrupted and sent again" in result.notes


@pytest.mark.parametrize("composite", [False, True], ids=["full-object", "composite"])
def test_a_part_read_corrupted_under_a_crc_proof_is_sent_again(composite: bool) -> None:
    r = rig()
    layout = [PART, PART, 2 * MiB] if composite else None
    r.src.add("big", data(12 * MiB), part_sizes=layout, checksum="CRC32", composite=composite)
    if composite:
        r.src.versions["big"][-1].etag = "opaque-3"  # proven by its checksum alone
    r.src.corrupt_reads[("big", PART)] = 1
    result = r.copy(r.src.job("big"))
    assert verdict(result) == (True, "source-crc32")
    assert "parts [2] were read corrupted and sent again" in result.notes


def test_a_proof_that_fails_again_after_the_repair_aborts_the_upload() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    r.src.corrupt_reads[("big", PART)] = 2  # wrong in the repair too
    job = r.src.job("big")
    with pytest.raises(VerificationError, match="source-md5"):
        r.copier.copy(job)
    assert r.dst.calls[-1] == ("abort", "big") and job.upload_id is None
    assert r.dst.data("big") is None


# -- verdicts ---------------------------------------------------------------------------------


def test_a_source_crc_of_all_its_bytes_proves_a_copy_in_parts() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB), checksum="CRC32")
    assert verdict(r.copy(r.src.job("big"))) == (True, "source-crc32")


def test_an_encrypted_source_s_sha256_proves_it_hashed_in_order() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB), checksum="SHA256", encrypted=True)
    assert verdict(r.copy(r.src.job("big"))) == (True, "source-sha256")


def test_an_encrypted_multipart_source_s_composite_crc_proves_it() -> None:
    r = rig()
    src_data = data(12 * MiB)
    r.src.add("mp", src_data, part_sizes=[PART, PART, 2 * MiB], checksum="CRC32C", composite=True)
    r.src.versions["mp"][-1].etag = "opaque-3"  # neither an MD5 nor md5-of-parts
    assert verdict(r.copy(r.src.job("mp"))) == (True, "source-crc32c")


def test_an_encrypted_source_without_checksum_is_unverified() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB), encrypted=True)
    result = r.copy(r.src.job("big"))
    assert verdict(result) == (
        False,
        "the source ETag is not an MD5 (encrypted or provider-specific)",
    )


def test_a_multipart_source_whose_layout_is_hidden_is_unverified() -> None:
    r = rig(MemoryStore("src", layout_visible=False))
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    assert verdict(r.copy(r.src.job("mp"))) == (
        False,
        "the source is a multipart object whose part layout the store hides",
    )


def test_a_single_put_of_an_encrypted_source_is_proven_by_its_checksum() -> None:
    r = rig()
    r.src.add("small", data(MiB), checksum="CRC64NVME", encrypted=True)
    assert verdict(r.copy(r.src.job("small"))) == (True, "source-crc64nvme")
    r.src.add("bare", data(MiB), encrypted=True)
    assert verdict(r.copy(r.src.job("bare"))) == (
        False,
        "the source ETag is not an MD5 and it carries no usable checksum",
    )


def test_a_single_put_read_wrong_against_its_checksum_is_not_written() -> None:
    r = rig(settings=TransferSettings(part_attempts=1))
    r.src.add("small", data(MiB), checksum="CRC32", encrypted=True)
    r.src.corrupt_reads[("small", 0)] = 1
    with pytest.raises(VerificationError, match="CRC32"):
        r.copier.copy(r.src.job("small"))
    assert r.dst.calls == []


def test_files_are_proven_by_being_read() -> None:
    r = rig(MemoryStore("src", capabilities=Capabilities(content_etag=False)))
    r.src.add("small", data(MiB))
    r.src.add("big", data(12 * MiB))
    assert verdict(r.copy(r.src.job("small"))) == (True, "local-read")
    assert verdict(r.copy(r.src.job("big"))) == (True, "local-read")


def test_a_put_whose_etag_is_not_the_source_s_md5_is_deleted() -> None:
    r = rig(settings=TransferSettings(part_attempts=1))
    r.dst.etag_rewrite = lambda etag: md5_hex(b"something else")
    r.src.add("small", data(MiB))
    with pytest.raises(VerificationError, match="reports ETag"):
        r.copier.copy(r.src.job("small"))
    assert r.dst.data("small") is None


def test_an_object_whose_etag_disagrees_with_its_parts_is_deleted() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    real_complete = r.dst.complete_upload

    def wrong_complete(*args: object, **kwargs: object) -> str:
        real_complete(*args, **kwargs)  # type: ignore[arg-type]
        return f"{md5_hex(b'x')}-3"

    r.dst.complete_upload = wrong_complete  # type: ignore[method-assign]
    job = r.src.job("big")
    with pytest.raises(VerificationError, match="the parts sent give"):
        r.copier.copy(job)
    assert r.dst.data("big") is None and job.upload_id is None


def test_part_etags_that_are_no_md5s_leave_a_copy_with_the_source_s_parts_unverified() -> None:
    r = rig()
    r.dst.etag_rewrite = lambda etag: f"provider-{etag[:8]}"
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    assert verdict(r.copy(r.src.job("mp"))) == (False, "the destination's part ETags are not MD5s")


def test_a_destination_that_encrypts_gets_our_md5s_on_every_part() -> None:
    r = rig(
        dst=MemoryStore("dst", capabilities=Capabilities(checksums="auto", write_etags_md5=False))
    )
    r.src.add("big", data(12 * MiB))
    assert verdict(r.copy(r.src.job("big"))) == (True, "source-md5")
    assert r.dst.guards == ["crc"] * 3  # the MD5 of all the bytes proves them


def test_a_multipart_source_copied_into_kms_is_proven_by_our_part_md5s() -> None:
    r = rig(dst=MemoryStore("dst", capabilities=KMS))
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    assert verdict(r.copy(r.src.job("mp"))) == (True, "source-etag")
    assert r.dst.data("mp") == r.src.data("mp")
    # Every part went with its Content-MD5, checked by the destination as it arrived.
    assert r.dst.guards == ["md5"] * 3


def test_a_copy_into_kms_resumes_from_the_parts_recorded_reading_them_again() -> None:
    r = rig(dst=MemoryStore("dst", capabilities=KMS))
    r.src.add("mp", data(12 * MiB), part_sizes=[PART, PART, 2 * MiB])
    job = r.src.job("mp")
    fail_reads_at(r.src, 2 * PART)
    with pytest.raises(PermanentError):
        r.copier.copy(job)
    r.src.calls.clear()
    result = r.copy(job)
    # The recorded parts are read for their MD5s (their ETags are none) but not sent again.
    assert r.src.count("get") == 3
    assert (result.bytes_sent, result.bytes_reused) == (2 * MiB, 2 * PART)
    assert verdict(result) == (True, "source-etag")
    assert r.dst.data("mp") == r.src.data("mp")


def test_a_server_copy_of_a_source_without_md5_is_unverified() -> None:
    r = rig(MemoryStore("src", endpoint="e"), MemoryStore("dst", endpoint="e"))
    r.src.add("mp", data(MiB), part_sizes=[MiB])
    r.src.versions["mp"][-1].etag = "opaque"
    assert verdict(r.copy(r.src.job("mp"))) == (
        False,
        "the source's ETag is not an MD5 to compare the copy with",
    )


def test_a_server_copy_with_another_md5_is_deleted() -> None:
    r = rig(
        MemoryStore("src", endpoint="e"),
        MemoryStore("dst", endpoint="e"),
        settings=TransferSettings(part_attempts=1),
    )
    r.dst.etag_rewrite = lambda etag: md5_hex(b"something else")
    r.src.add("obj", data(MiB))
    with pytest.raises(VerificationError, match="the server's copy has ETag"):
        r.copier.copy(r.src.job("obj"))
    assert r.dst.data("obj") is None


# -- stopping and a changing source -----------------------------------------------------------


def test_a_stop_mid_copy_interrupts_and_leaves_the_upload_to_resume() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    job = r.src.job("big")

    def stop_at_part_two(key: str, start: int) -> None:
        if start == PART:
            r.stop.set()

    r.src.on_read = stop_at_part_two
    with pytest.raises(Interrupted):
        r.copier.copy(job)
    assert job.upload_id is not None and ("abort", "big") not in r.dst.calls
    # The part being read when the stop came went on; no later part was read.
    assert r.dst.count("upload-part") == 2 and r.src.count("get") == 2
    assert r.dst.data("big") is None
    assert sorted(r.ledger.recorded_parts(job, job.upload_id)) == [1, 2]


def test_a_source_replaced_mid_copy_restarts_once_on_the_new_version() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    job = r.src.job("big")
    first_etag = job.etag
    new = data(12 * MiB)

    def replace_at_part_two(key: str, start: int) -> None:
        if start == PART:
            r.src.on_read = None
            r.src.add("big", new)

    r.src.on_read = replace_at_part_two
    attempt = Attempt()
    result = r.copy(job, attempt)
    assert r.dst.data("big") == new
    assert verdict(result) == (True, "source-md5")
    assert job.etag == md5_hex(new) != first_etag and job.restarts == 1
    assert any("restarted on the new version" in note for note in result.notes)
    assert ("abort", "big") in r.dst.calls
    assert attempt.progressed == 12 * MiB  # the first version's part was taken back


def test_a_source_replaced_again_fails_without_a_mixed_object() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    job = r.src.job("big")

    def replace_at_part_two(key: str, start: int) -> None:
        if start == PART:
            r.src.add("big", data(12 * MiB))

    r.src.on_read = replace_at_part_two
    with pytest.raises(SourceChangedError, match="changed during the copy again"):
        r.copier.copy(job)
    assert r.dst.data("big") is None and job.restarts == 1


def test_a_source_deleted_mid_copy_fails() -> None:
    r = rig()
    r.src.add("big", data(12 * MiB))
    r.src.on_read = lambda key, start: r.src.delete_object(key) if start == PART else None
    with pytest.raises(SourceChangedError, match="no longer exists"):
        r.copier.copy(r.src.job("big"))


# -- all versions -----------------------------------------------------------------------------


def test_a_key_s_history_is_copied_oldest_first() -> None:
    src = MemoryStore("src", versioned=True)
    dst = MemoryStore("dst", versioned=True)
    r = rig(src, dst, settings=TransferSettings(all_versions=True))
    bodies = [data(1000), data(MiB), data(10)]
    for body in bodies:
        src.add("k", body)
    dst.add("k", bodies[0])  # the first version is there already
    result = r.copier.copy(src.job("k"))
    assert [v.data for v in dst.versions["k"]] == bodies
    assert verdict(result) == (True, "source-md5")
    assert result.notes[-1] == "2 of 3 version(s) copied in order"


def test_a_source_deleted_since_its_inventory_is_gone_not_failed() -> None:
    r = rig()
    r.copier.snapshot = "the inventory of 2024-05-01 00:00 UTC"
    for key, size in (("small", MiB), ("big", 12 * MiB)):
        r.src.add(key, data(size))
        job = r.src.job(key)
        r.src.delete_object(key)  # after the report listed it
        with pytest.raises(SourceGoneError) as gone:
            r.copier.copy(job)
        assert str(gone.value).startswith("source gone since inventory: ")
        assert "the inventory of 2024-05-01 00:00 UTC" in str(gone.value)
        assert r.dst.data(key) is None
