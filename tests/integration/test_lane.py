"""Small objects copied on the non-blocking lane between two SeaweedFS servers: the copies,
their properties and proofs; what the lane hands to the job threads (tags, connections
reset by a proxy, a source changed since it was listed)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.faultproxy import FaultProxy, Faults, Request
from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli
from s3longbow.config import KiB, MiB, TransferSettings
from s3longbow.errors import SourceChangedError
from s3longbow.model import Job, JobId, JobResult
from s3longbow.progress.stats import Stats
from s3longbow.stores.s3.tasks import Loop
from s3longbow.transfer import engine, lane
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.context import Learned
from s3longbow.transfer.engine import Copier
from tests.memstore import MemoryLedger, SerialExecutor

from ..conftest import Bucket, cli_env, endpoint_args
from .test_integrity import job_verdicts
from .test_relay import open_s3


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The keys copied on the lane, and those a job thread copied in one PUT."""
    seen: dict[str, list[str]] = {"lane": [], "thread": []}
    on_lane, on_thread = lane.copy, engine.copy_single

    def lane_copy(ctx: Any, job: Job, *args: Any) -> Any:
        result = yield from on_lane(ctx, job, *args)
        seen["lane"].append(job.src_key)
        return result

    def thread_copy(ctx: Any, job: Job, *args: Any) -> JobResult:
        seen["thread"].append(job.src_key)
        return on_thread(ctx, job, *args)

    monkeypatch.setattr(lane, "copy", lane_copy)
    monkeypatch.setattr(engine, "copy_single", thread_copy)
    return seen


def sync(src: Bucket, dst: Bucket, db: Path, dst_url: str | None = None, *extra: str) -> Any:
    args = ["sync", f"{src.url}/", f"{dst.url}/", "--db", str(db), "--json"]
    args += endpoint_args(src.endpoint, dst.endpoint) + list(extra)
    if dst_url is not None:
        args[args.index("--dst-endpoint-url") + 1] = dst_url
    result = CliRunner().invoke(cli, args, env=cli_env(src.endpoint, dst.endpoint))
    return result


def test_small_objects_go_on_the_lane_with_their_properties(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path, counted: dict[str, list[str]]
) -> None:
    sizes = [1, 100, 8 * KiB - 1, 64 * KiB, 200 * KiB + 3, MiB - 1]
    bodies = {f"small/{i:02d}": os.urandom(sizes[i % len(sizes)]) for i in range(40)}
    for key, body in bodies.items():
        src_bucket.client.put_object(
            Bucket=src_bucket.name,
            Key=key,
            Body=body,
            ContentType="text/x-lane",
            CacheControl="max-age=60",
            Metadata={"origin": key},
        )
    src_bucket.put("big", os.urandom(2 * MiB))  # relayed by a job thread, not the lane
    result = sync(src_bucket, dst_bucket, tmp_path / "j.db")
    assert result.exit_code == 0, result.output
    assert sorted(counted["lane"]) == sorted(bodies)
    assert counted["thread"] == ["big"]
    for key, body in bodies.items():
        got = dst_bucket.client.get_object(Bucket=dst_bucket.name, Key=key)
        assert got["Body"].read() == body
        assert got["ETag"].strip('"') == hashlib.md5(body).hexdigest()
        assert got["ContentType"] == "text/x-lane"
        assert got["CacheControl"] == "max-age=60"
        assert got["Metadata"] == {"origin": key}
    assert set(job_verdicts(tmp_path / "j.db").values()) == {("done", "source-md5")}
    again = sync(src_bucket, dst_bucket, tmp_path / "j.db")
    assert again.exit_code == 0 and '"objects": 0' in again.output.replace("\n", "")


def test_what_the_lane_cannot_finish_the_job_threads_do(
    src_bucket: Bucket,
    dst_bucket: Bucket,
    seaweed_dst: LocalServer,
    tmp_path: Path,
    counted: dict[str, list[str]],
) -> None:
    bodies = {f"k{i:02d}": os.urandom(10 * KiB + i) for i in range(24)}
    for key, body in bodies.items():
        src_bucket.put(key, body)
    src_bucket.client.put_object(
        Bucket=src_bucket.name, Key="tagged", Body=b"t" * 5000, Tagging="team=blue"
    )
    bodies["tagged"] = b"t" * 5000
    with FaultProxy(seaweed_dst.endpoint.url) as proxy:
        # The first PUTs through the proxy are cut mid-body: the lane's exchanges fail.
        proxy.set_faults(Faults(reset_mid_body=1.0, only_methods=frozenset({"PUT"}), max_faults=5))
        result = sync(src_bucket, dst_bucket, tmp_path / "j.db", proxy.url)
        assert result.exit_code == 0, result.output
        assert proxy.faults_injected.get("reset_mid_body") == 5
    for key, body in bodies.items():
        assert dst_bucket.get(key) == body
    tags = dst_bucket.client.get_object_tagging(Bucket=dst_bucket.name, Key="tagged")
    assert tags["TagSet"] == [{"Key": "team", "Value": "blue"}]
    # The tagged object and the ones whose PUT was cut went to the job threads.
    assert "tagged" in counted["thread"] and "tagged" not in counted["lane"]
    # (Cuts that hit a job thread's own PUT of a key handed back are retried there.)
    assert set(counted["thread"]) - {"tagged"}
    assert len(counted["lane"]) + len(set(counted["thread"])) == len(bodies)
    assert set(job_verdicts(tmp_path / "j.db").values()) == {("done", "source-md5")}


def test_a_put_asked_to_slow_down_is_sent_again_on_the_lane(
    src_bucket: Bucket,
    dst_bucket: Bucket,
    seaweed_dst: LocalServer,
    tmp_path: Path,
    counted: dict[str, list[str]],
) -> None:
    """Each object's first PUT gets 503 SlowDown: the lane sends it again (its source is not
    read a second time by a job thread), and every object arrives whole."""
    bodies = {f"slow/{i:02d}": os.urandom(3 * KiB + i) for i in range(12)}
    for key, body in bodies.items():
        src_bucket.put(key, body)
    refused: dict[str, int] = {}
    lock = threading.Lock()

    def first_put_refused(request: Request) -> str | None:
        if request.method != "PUT" or not request.key:
            return None
        with lock:
            refused[request.key] = refused.get(request.key, 0) + 1
            return "slow_down" if refused[request.key] == 1 else None

    with FaultProxy(seaweed_dst.endpoint.url) as proxy:
        proxy.on_request(first_put_refused)
        result = sync(src_bucket, dst_bucket, tmp_path / "j.db", proxy.url)
        assert result.exit_code == 0, result.output
    assert refused == {key: 2 for key in bodies}  # refused once, then taken
    assert sorted(counted["lane"]) == sorted(bodies) and counted["thread"] == []
    for key, body in bodies.items():
        assert dst_bucket.get(key) == body
    assert set(job_verdicts(tmp_path / "j.db").values()) == {("done", "source-md5")}


@pytest.fixture()
def copier(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, src_bucket: Bucket, dst_bucket: Bucket
) -> Iterator[Copier]:
    src, dst = open_s3(seaweed_src, src_bucket.name), open_s3(seaweed_dst, dst_bucket.name)
    settings = TransferSettings()
    yield Copier(
        src,
        dst,
        ledger=MemoryLedger(),
        settings=settings,
        budget=ByteBudget(settings.memory_limit),
        part_pool=SerialExecutor(),
        stats=Stats(),
        stop=threading.Event(),
    )
    src.close()
    dst.close()


def on_loop(copier: Copier, job: Job) -> JobResult | BaseException:
    """Run one lane copy on a loop of its own; its result or its error."""
    method = lane.plan(copier.context, job)
    ways = lane.directs(copier.context)
    assert method is not None and ways is not None
    outcome: list[JobResult | BaseException] = []
    ended = threading.Event()
    loop = Loop(timeout=30)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()

    def done(result: JobResult | None, error: BaseException | None) -> None:
        outcome.append(error if error is not None else result)  # type: ignore[arg-type]
        ended.set()

    loop.spawn(lane.copy(copier.context, job, method, *ways), done)
    assert ended.wait(30)
    loop.close()
    thread.join(10)
    return outcome[0]


def test_a_source_changed_since_its_listing_is_never_copied_on_the_lane(
    copier: Copier, src_bucket: Bucket, dst_bucket: Bucket
) -> None:
    listed = os.urandom(3000)
    src_bucket.put("moving", listed)
    job = Job(
        id=JobId(1),
        run_id=1,
        pair=0,
        src_key="moving",
        dst_key="moving",
        size=len(listed),
        etag=hashlib.md5(listed).hexdigest(),
    )
    assert isinstance(on_loop(copier, job), JobResult)  # as listed: copied
    assert dst_bucket.get("moving") == listed
    src_bucket.put("moving", os.urandom(3000))  # same size, other bytes
    dst_bucket.client.delete_object(Bucket=dst_bucket.name, Key="moving")
    outcome = on_loop(copier, job)
    # The pinned read is refused for good: the job threads take the refusal as their own
    # read's (and restart on the new version); nothing was written.
    assert isinstance(outcome, lane.Refused), outcome
    assert isinstance(outcome.error, SourceChangedError)
    assert dst_bucket.keys() == []


def test_objects_the_lane_does_not_take() -> None:
    """The plan is pure: what stays with the job threads, by the job alone."""
    base = Job(id=JobId(1), run_id=1, pair=0, src_key="k", dst_key="k", size=10, etag="0" * 32)
    assert lane.RELAY_MIN == MiB
    assert lane_takes(base)
    for job in (
        dataclasses.replace(base, size=0),
        dataclasses.replace(base, size=MiB),  # relayed by a thread
        dataclasses.replace(base, etag="0" * 32 + "-2"),  # multipart: its HEAD first
        dataclasses.replace(base, upload_id="u"),
        dataclasses.replace(base, restarts=1),
        dataclasses.replace(base, storage_class="GLACIER"),
    ):
        assert not lane_takes(job), job


def lane_takes(job: Job) -> bool:
    from tests.memstore import MemoryStore

    copier = Copier(
        MemoryStore("src"),
        MemoryStore("dst"),
        ledger=MemoryLedger(),
        settings=TransferSettings(),
        budget=ByteBudget(MiB),
        part_pool=SerialExecutor(),
        stats=Stats(),
        stop=threading.Event(),
    )
    copier.context.learned = Learned(relay=True)  # as between two S3 stores
    return lane.plan(copier.context, job) is not None
