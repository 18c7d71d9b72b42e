"""Chaos runs: a mixed data set copied between two real S3 endpoints while processes are killed.

Two modes share one loop. In ``single`` mode one ``longbow sync`` process is SIGKILLed at random
moments and started again; in ``cluster`` mode several ``longbow worker`` processes (SQS and
DynamoDB on a moto server) run at once and a random one is SIGKILLed and replaced. After the
last kill the copy is allowed to finish, then every object is read from both sides and compared
byte for byte.

A :class:`~longbow_testkit.faultproxy.FaultProxy` sits between Longbow and each endpoint.
With no faults they only count: the request bytes that cross the destination's proxy are the
"bytes uploaded". With faults they also inject them, so kills and network faults combine.

A kill moment is drawn per process: most wait until a random share of the data set has been
uploaded by that process (so kills land in the middle of bodies), the rest wait a random time
(so some land during start-up, listing and planning). When a round's copy ends before every kill
was spent, the next round copies the same source again to a fresh destination prefix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from longbow_testkit.faultproxy import FaultProxy, Faults
from longbow_testkit.servers import Endpoint
from s3longbow.model import FINAL_STATES, JobState

__all__ = ["ChaosReport", "Location", "mixed_dataset", "run_cluster", "run_single", "seed_source"]

MiB = 1024 * 1024
PART_SIZE = 5 * MiB
_POLL = 0.02  # seconds between looks at a process and the proxy's byte counter
_FINISH_TIMEOUT = 900.0  # a copy left to finish must end within this many seconds
_MAX_ROUNDS = 1000
# Awkward key shapes: spaces, unicode, '+', '%', deep paths, shell and URL specials.
_KEY_SHAPES = (
    "plain/{i:04d}.bin",
    "with space/file {i}.txt",
    "unicode/é文件-ß-{i}.dat",
    "plus+sign/{i}+a+b.bin",
    "percent%20/{i}%41%2F.bin",
    "deep/a/b/c/d/e/f/g/h/{i}",
    "mixed/ +%é&=?#/{i}~!",
)


@dataclass(frozen=True)
class Location:
    """A bucket and prefix on one endpoint."""

    endpoint: Endpoint
    bucket: str
    prefix: str = ""

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def under(self, prefix: str) -> Location:
        return Location(self.endpoint, self.bucket, self.prefix + prefix)


@dataclass
class ChaosReport:
    """What a chaos run did and found. ``lost`` and ``corrupt`` must stay empty."""

    mode: str
    seed: int
    kills: int = 0
    rounds: int = 0
    objects: int = 0
    exact: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    source_bytes: int = 0
    bytes_uploaded: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    exit_codes: list[int] = field(default_factory=list)
    # Single mode: bytes each process uploaded, in order (the last one finished the copy), and
    # what the finishing run said it sent and reused.
    uploads: list[int] = field(default_factory=list)
    last_run: dict[str, int] = field(default_factory=dict)
    messages_left: int = 0
    seconds: float = 0.0

    @property
    def jobs_not_final(self) -> int:
        return sum(n for state, n in self.jobs.items() if JobState(state) not in FINAL_STATES)

    @property
    def resent_bytes(self) -> int:
        """Bytes uploaded beyond the minimum (every source byte once per round)."""
        return self.bytes_uploaded - self.source_bytes

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["jobs_not_final"] = self.jobs_not_final
        out["resent_bytes"] = self.resent_bytes
        return out

    def text(self) -> str:
        minimum = max(self.source_bytes, 1)
        faults = ", ".join(f"{k} {v}" for k, v in self.faults_injected.items() if v) or "none"
        return "\n".join(
            [
                f"mode {self.mode}, seed {self.seed}, {self.rounds} round(s), {self.seconds:.0f} s",
                f"kills survived        {self.kills}",
                f"objects               {self.objects}",
                f"objects exact         {self.exact}",
                f"objects missing       {len(self.missing)}",
                f"objects corrupt       {len(self.corrupt)}",
                f"unexpected objects    {len(self.unexpected)}",
                f"jobs by state         {self.jobs}",
                f"jobs not final        {self.jobs_not_final}",
                f"failed jobs           {len(self.failed)}",
                f"bytes minimum         {self.source_bytes}",
                f"bytes uploaded        {self.bytes_uploaded}",
                f"bytes re-sent         {self.resent_bytes} ({self.resent_bytes / minimum:.1%})",
                f"faults injected       {faults}",
                f"exit codes            {self.exit_codes}",
                *([f"uploaded per process  {self.uploads}"] if self.uploads else []),
                *([f"finishing run         {self.last_run}"] if self.last_run else []),
            ]
        )


# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------


def mixed_dataset(
    count: int, *, seed: int, large: int = 3, large_max: int = 12 * MiB
) -> dict[str, int]:
    """Key -> size: empty, small and medium objects under awkward keys, plus `large` objects
    above the multipart threshold (between 6 MiB and `large_max`)."""
    rng = random.Random(seed)
    sizes: dict[str, int] = {}
    for i in range(count):
        key = _KEY_SHAPES[i % len(_KEY_SHAPES)].format(i=i)
        draw = rng.random()
        if draw < 0.08:
            sizes[key] = 0
        elif draw < 0.8:
            sizes[key] = rng.randint(1, 64 * 1024)
        else:
            sizes[key] = rng.randint(64 * 1024, 1 * MiB)
    for i in range(large):
        sizes[f"large/part {i} é+%.bin"] = rng.randint(6 * MiB, max(large_max, 6 * MiB))
    return sizes


def seed_source(where: Location, sizes: dict[str, int], *, seed: int) -> int:
    """Write the data set (random bytes derived from `seed`); returns its total size."""
    client = where.endpoint.client()

    def put(item: tuple[int, tuple[str, int]]) -> None:
        n, (key, size) = item
        body = random.Random(f"{seed}-{n}").randbytes(size)
        client.put_object(Bucket=where.bucket, Key=where.prefix + key, Body=body)

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(put, enumerate(sorted(sizes.items()))))
    finally:
        client.close()
    return sum(sizes.values())


def _list(client: Any, where: Location) -> list[str]:
    keys: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=where.bucket, Prefix=where.prefix
    )
    for page in pages:
        keys.extend(item["Key"][len(where.prefix) :] for item in page.get("Contents", ()))
    return keys


def compare(src: Location, dst: Location, keys: Iterable[str], report: ChaosReport) -> None:
    """Read every object from both sides and add exact, missing, corrupt and unexpected keys."""
    src_client, dst_client = src.endpoint.client(), dst.endpoint.client()
    wanted = sorted(keys)

    def verdict(key: str) -> str:
        expected = src_client.get_object(Bucket=src.bucket, Key=src.prefix + key)["Body"].read()
        try:
            got = dst_client.get_object(Bucket=dst.bucket, Key=dst.prefix + key)["Body"].read()
        except dst_client.exceptions.NoSuchKey:
            return "missing"
        return "exact" if got == expected else "corrupt"

    try:
        with ThreadPoolExecutor(4) as pool:
            verdicts = list(pool.map(verdict, wanted))
        present = set(_list(dst_client, dst))
    finally:
        src_client.close()
        dst_client.close()
    report.objects += len(wanted)
    for key, result in zip(wanted, verdicts, strict=True):
        if result == "exact":
            report.exact += 1
        else:
            (report.missing if result == "missing" else report.corrupt).append(dst.prefix + key)
    report.unexpected += sorted(dst.prefix + k for k in present - set(wanted))


# --------------------------------------------------------------------------------------------
# Kill moments
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Moment:
    """Kill once `upload_bytes` more bytes were uploaded, or after `seconds`, whichever first."""

    upload_bytes: int | None
    seconds: float


def _draw_moment(rng: random.Random, total: int, kills: int) -> _Moment:
    if rng.random() < 0.3:
        return _Moment(None, rng.uniform(0.3, 3.0))
    # Small enough shares that all the kills usually fit in one copy of the data set.
    share = rng.uniform(0.01, min(0.3, 0.8 / max(kills, 1)))
    return _Moment(max(1, int(total * share)), 120.0)


def _uploaded(proxy: FaultProxy) -> int:
    sent = proxy.request_bytes
    return sent["PUT"] + sent["UploadPart"]


def _running(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    """Whether `proc` is still running, asked when called."""
    return lambda: proc.poll() is None


def _wait_for(moment: _Moment, proxy: FaultProxy, alive: Callable[[], bool]) -> bool:
    """Whether the moment came while `alive()` held (False: the processes ended first)."""
    start, start_bytes = time.monotonic(), _uploaded(proxy)
    for _ in range(int(moment.seconds / _POLL) + 1):
        if not alive():
            return False
        if time.monotonic() - start >= moment.seconds:
            return True
        if moment.upload_bytes is not None:
            if _uploaded(proxy) - start_bytes >= moment.upload_bytes:
                return True
        time.sleep(_POLL)
    return alive()


def _sigkill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _environment(src: Endpoint, dst: Endpoint) -> dict[str, str]:
    return {
        **os.environ,
        "LONGBOW_SRC_ACCESS_KEY_ID": src.access_key,
        "LONGBOW_SRC_SECRET_ACCESS_KEY": src.secret_key,
        "LONGBOW_DST_ACCESS_KEY_ID": dst.access_key,
        "LONGBOW_DST_SECRET_ACCESS_KEY": dst.secret_key,
        # The control plane on moto takes any keys; these never reach the S3 endpoints.
        "AWS_ACCESS_KEY_ID": "moto",
        "AWS_SECRET_ACCESS_KEY": "moto",
    }


def _longbow(*args: str) -> list[str]:
    return [sys.executable, "-m", "s3longbow", *args]


def _source_proxy(src: Location, faults: Faults | None) -> FaultProxy:
    # Its own random sequence, so the two legs do not fault in lock step.
    seed = None if faults is None or faults.seed is None else faults.seed + 1
    return FaultProxy(src.endpoint.url, dataclasses.replace(faults, seed=seed) if faults else None)


def _finish(
    report: ChaosReport, src_proxy: FaultProxy, proxy: FaultProxy, started: float
) -> ChaosReport:
    report.bytes_uploaded = _uploaded(proxy)
    a, b = src_proxy.faults_injected, proxy.faults_injected
    report.faults_injected = {k: a[k] + b[k] for k in a if a[k] + b[k]}
    report.seconds = time.monotonic() - started
    return report


# --------------------------------------------------------------------------------------------
# Single mode: one `longbow sync` process
# --------------------------------------------------------------------------------------------


def run_single(
    src: Location,
    dst: Location,
    sizes: dict[str, int],
    *,
    kills: int,
    seconds: float,
    seed: int,
    workdir: Path,
    faults: Faults | None = None,
    max_attempts: int = 3,
    extra_args: tuple[str, ...] = (),
) -> ChaosReport:
    """Sync `src` to `dst` (one prefix per round), SIGKILLing the sync `kills` times at most
    (while `seconds` last), then let it finish and check every object and job."""
    rng = random.Random(seed)
    report = ChaosReport("single", seed)
    started = time.monotonic()
    deadline = started + seconds
    total = sum(sizes.values())
    env = _environment(src.endpoint, dst.endpoint)
    with _source_proxy(src, faults) as src_proxy, FaultProxy(dst.endpoint.url, faults) as proxy:
        for _ in range(_MAX_ROUNDS):
            report.rounds += 1
            target = dst.under(f"round-{report.rounds}/")
            db = workdir / f"single-{report.rounds}.db"
            argv = _longbow(
                "sync",
                src.url(),
                target.url(),
                "--db",
                str(db),
                "--json",
                "--part-size",
                "5MiB",
                "--max-attempts",
                str(max_attempts),
                *_endpoints(src_proxy.url, src.endpoint.region, proxy.url, dst.endpoint.region),
                *extra_args,
            )
            log = workdir / f"single-{report.rounds}.log"
            for _ in range(kills + 1):
                if report.kills >= kills or time.monotonic() > deadline:
                    break
                before = _uploaded(proxy)
                with log.open("ab") as err:
                    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
                    try:
                        moment = _draw_moment(rng, total, kills)
                        if _wait_for(moment, proxy, _running(proc)):
                            _sigkill(proc)
                            report.kills += 1
                        else:
                            report.exit_codes.append(proc.wait())
                            break  # this round's copy is complete
                    finally:
                        if proc.poll() is None:
                            _sigkill(proc)
                        report.uploads.append(_uploaded(proxy) - before)
            before = _uploaded(proxy)
            with log.open("ab") as err:
                final = subprocess.run(
                    argv, env=env, stdout=subprocess.PIPE, stderr=err, timeout=_FINISH_TIMEOUT
                )
            report.uploads.append(_uploaded(proxy) - before)
            report.exit_codes.append(final.returncode)
            report.last_run = _byte_counts(final.stdout)
            report.source_bytes += total
            compare(src, target, sizes, report)
            _count_sqlite_jobs(db, report)
            if report.kills >= kills or time.monotonic() > deadline:
                break
    return _finish(report, src_proxy, proxy, started)


def _byte_counts(summary: bytes) -> dict[str, int]:
    try:
        data = json.loads(summary)
    except ValueError:
        return {}
    return {k: int(data[k]) for k in ("bytes_sent", "bytes_reused") if k in data}


def _endpoints(src_url: str, src_region: str, dst_url: str, dst_region: str) -> list[str]:
    return [
        "--src-endpoint-url",
        src_url,
        "--src-region",
        src_region,
        "--src-path-style",
        "--dst-endpoint-url",
        dst_url,
        "--dst-region",
        dst_region,
        "--dst-path-style",
    ]


def _count_sqlite_jobs(db: Path, report: ChaosReport) -> None:
    if not db.exists():
        report.failed.append(f"no job database at {db}: the sync never started")
        return
    with sqlite3.connect(db, timeout=30) as conn:
        for state, count in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            report.jobs[state] = report.jobs.get(state, 0) + int(count)
        for key, reason in conn.execute("SELECT src_key, reason FROM jobs WHERE state='failed'"):
            report.failed.append(f"{key}: {reason}")
    conn.close()


# --------------------------------------------------------------------------------------------
# Cluster mode: several `longbow worker` processes on SQS and DynamoDB
# --------------------------------------------------------------------------------------------


def run_cluster(
    src: Location,
    dst: Location,
    sizes: dict[str, int],
    control: Endpoint,
    *,
    kills: int,
    seconds: float,
    seed: int,
    workdir: Path,
    workers: int = 3,
    faults: Faults | None = None,
    max_attempts: int = 3,
) -> ChaosReport:
    """Queue `src` -> `dst` (one prefix per round) on a cluster whose queue and table live on
    the moto server `control`, run `workers` workers and SIGKILL a random one `kills` times at
    most (each replaced at once), then let them drain the queue and check every object and job.
    """
    rng = random.Random(seed)
    report = ChaosReport("cluster", seed)
    started = time.monotonic()
    deadline = started + seconds
    total = sum(sizes.values())
    env = _environment(src.endpoint, dst.endpoint)
    name = uuid.uuid4().hex[:10]
    config = workdir / "cluster.toml"
    with _source_proxy(src, faults) as src_proxy, FaultProxy(dst.endpoint.url, faults) as proxy:
        for _ in range(_MAX_ROUNDS):
            report.rounds += 1
            target = dst.under(f"round-{report.rounds}/")
            urls = (src_proxy.url, proxy.url)
            _write_cluster_config(config, name, src, target, urls, control, kills, max_attempts)
            if report.rounds == 1:
                _run_checked(_longbow("cluster-init", "--config", str(config)), env)
            _run_checked(_longbow("send", "--config", str(config)), env)
            worker_argv = _longbow(
                "worker", "--config", str(config), "--exit-when-idle", "--log-format", "text"
            )
            crew = _Crew(worker_argv, env, workdir / f"cluster-{report.rounds}")
            try:
                for _ in range(workers):
                    crew.start()
                for _ in range(kills + 1):
                    if report.kills >= kills or time.monotonic() > deadline:
                        break
                    if not _wait_for(_draw_moment(rng, total, kills), proxy, crew.any_alive):
                        break  # the queue drained: this round's copy is complete
                    if crew.kill_one(rng):
                        report.kills += 1
                        crew.start()
                report.exit_codes += crew.wait_all(_FINISH_TIMEOUT)
            finally:
                crew.kill_all()
            report.source_bytes += total
            compare(src, target, sizes, report)
            _count_cluster_jobs(control, name, target, report)
            if report.kills >= kills or time.monotonic() > deadline:
                break
    return _finish(report, src_proxy, proxy, started)


class _Crew:
    """The worker processes of one round."""

    def __init__(self, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.argv, self.env, self.logs = argv, env, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    def start(self) -> None:
        log = self.logs.with_name(f"{self.logs.name}-worker-{len(self.procs)}.log")
        with log.open("wb") as err:
            self.procs.append(
                subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
            )

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def any_alive(self) -> bool:
        return bool(self.alive())

    def kill_one(self, rng: random.Random) -> bool:
        """SIGKILL a random running worker; False if none was left to kill."""
        alive = self.alive()
        if not alive:
            return False
        victim = rng.choice(alive)
        _sigkill(victim)
        self.killed.add(victim.pid)
        return True

    def wait_all(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for proc in self.procs:
            if proc.pid in self.killed:
                continue
            try:
                codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(-1)  # still running: reported, then killed by kill_all
        return codes

    def kill_all(self) -> None:
        for proc in self.alive():
            _sigkill(proc)


def _run_checked(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[3:5])} failed: {done.stderr[-2000:]}")


def _write_cluster_config(
    path: Path,
    name: str,
    src: Location,
    dst: Location,
    urls: tuple[str, str],
    control: Endpoint,
    kills: int,
    max_attempts: int,
) -> None:
    cluster = {
        "region": control.region,
        "endpoint_url": control.url,
        "queue_name": f"chaos-{name}",
        "table": f"chaos-{name}",
        # A killed worker's messages come back after this; short, so a run does not idle.
        "visibility_timeout": 6,
        # Kills are not the job's fault: never dead-letter a message because of them.
        "max_receive_count": kills + 10,
        "receive_wait_seconds": 1,
        "metrics_interval": 5,
        "retry_base_seconds": 1,
        "retry_max_seconds": 2,
        "objects_per_message": 10,
    }
    top = {
        "workers": 4,
        "part_threads": 2,
        "part_size": "5MiB",
        "memory_limit": "64MiB",
        "max_attempts": max_attempts,
    }
    lines = [
        *(f"{k} = {json.dumps(v)}" for k, v in top.items()),
        "[cluster]",
        *(f"{k} = {json.dumps(v)}" for k, v in cluster.items()),
        "[source]",
        f"endpoint_url = {json.dumps(urls[0])}",
        f"region = {json.dumps(src.endpoint.region)}",
        "path_style = true",
        "[destination]",
        f"endpoint_url = {json.dumps(urls[1])}",
        f"region = {json.dumps(dst.endpoint.region)}",
        "path_style = true",
        "[[pairs]]",
        f"src = {json.dumps(src.url())}",
        f"dst = {json.dumps(dst.url())}",
    ]
    path.write_text("\n".join(lines) + "\n")


def _count_cluster_jobs(control: Endpoint, name: str, dst: Location, report: ChaosReport) -> None:
    from s3longbow.cluster.dynamodb import JOB_SK, JobItem

    dynamodb, sqs = control.client("dynamodb"), control.client("sqs")
    try:
        for page in dynamodb.get_paginator("scan").paginate(TableName=f"chaos-{name}"):
            for raw in page.get("Items", ()):
                if raw["sk"]["S"] != JOB_SK:
                    continue
                item = JobItem.from_item(raw)
                if not item.dst_key.startswith(dst.prefix):
                    continue  # an earlier round's job
                state = JobState(item.state).value
                report.jobs[state] = report.jobs.get(state, 0) + 1
                if item.state is JobState.FAILED:
                    report.failed.append(f"{item.src_key}: {item.reason}")
        for queue in (f"chaos-{name}", f"chaos-{name}-dlq"):
            try:
                url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            except sqs.exceptions.QueueDoesNotExist:
                continue
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            report.messages_left += sum(
                int(attrs.get(k, 0))
                for k in (
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                )
            )
    finally:
        dynamodb.close()
        sqs.close()
