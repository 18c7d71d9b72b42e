"""The cluster worker's set-up and run (`longbow worker`, the Lambda handler), and the two
administrative operations: `cluster-init` (create the queues and the table) and
`status --cluster` (totals by state, failures, queue depths).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

from s3longbow.errors import ConfigError, LongbowError
from s3longbow.meter import RequestMeter
from s3longbow.plan.filters import Filters
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.progress.exposition import MetricsExport
from s3longbow.progress.sampling import Sampler
from s3longbow.progress.stats import Stats
from s3longbow.transfer.budget import ByteBudget
from s3longbow.worker.concurrency import controller_for, limits_for, part_window
from s3longbow.worker.loop import Worker, WorkerOutcome

from .aws import ControlPlane, Parameters
from .dynamodb import JobItem, JobTable
from .fanout import EventFanout, FanoutRule
from .jobqueue import ClusterJobQueue, MessageSource, SqsSource
from .metrics import ClusterCounters, MetricsEmitter, worker_exposition
from .samples import WorkerSamples
from .settings import ClusterConfig, resolve_credentials, resolve_pairs, routes_of
from .sqs import MessageQueue, QueueDepth, ensure_queues
from .stores import Copiers, StoreCache

log = logging.getLogger(__name__)

# In cluster mode the queue's redrive policy bounds a job's attempts (each delivery is one);
# the worker itself gives every transient failure back to the queue.
UNBOUNDED_ATTEMPTS = 1_000_000


def new_worker_id() -> str:
    """A worker's name in the job table: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class WorkerRuntime:
    """What a worker sets up once and reuses (a Lambda container keeps it between
    invocations): SSM applied to the settings, the clients, the queue, the table and the
    stores of every configured pair, each checked.

    Args:
        config: The deployment's settings.
        control: SQS, DynamoDB and SSM clients (created from the settings when None).
        meter: Where the stores record their replies (a new one when None).

    Raises:
        ConfigError: Settings or SSM parameters are invalid, or there is no dead-letter queue.
        FatalError: The queue, the table or a bucket cannot be used.
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        control: ControlPlane | None = None,
        meter: RequestMeter | None = None,
    ) -> None:
        t = config.transfer
        self._own_control = control is None
        self.control = control or ControlPlane(config.cluster, max_connections=t.workers + 16)
        parameters = Parameters(self.control.ssm)
        self.config = resolve_credentials(config, parameters)
        self.pairs = resolve_pairs(self.config, parameters)
        self.routes = routes_of(self.pairs)
        self.ignore = IgnoreRules(self.config.ignore_patterns)
        # Ages are measured when each event arrives, however long the worker runs.
        self.filters = Filters(self.config.filters) if self.config.filters else None
        self.queue = MessageQueue.open(self.control.sqs, config.cluster)
        if not self.queue.dead_letter_url:
            raise ConfigError(
                f"queue {self.queue.url} has no dead-letter queue for poison messages",
                hint="run `longbow cluster-init --config FILE`, or set [cluster] "
                "dead_letter_queue_url",
            )
        self.table = JobTable(self.control.dynamodb, config.cluster.table)
        self.table.check()
        t.validate()  # as configured: the attempts set below are the queue's to bound
        self.transfer = dataclasses.replace(t, max_attempts=UNBOUNDED_ATTEMPTS)
        self.meter = meter or RequestMeter()  # the stores' replies, which the concurrency weighs
        self.limits = limits_for(t)
        self.stores = StoreCache(
            self.config.source,
            self.config.destination,
            max_connections=self.limits.connections,
            min_rate=t.min_rate,
            meter=self.meter,
            # The objects a worker starts with: their connections opened ahead on a long path.
            open_ahead=controller_for(t, self.limits).limit,
        )
        try:
            for route in self.routes:  # fail fast on a missing bucket or refused keys
                self.stores.source(route.src_bucket)
                self.stores.destination(route.dst_bucket)
        except BaseException:
            self.stores.close()
            raise

    def run(
        self,
        source: MessageSource,
        *,
        stop: threading.Event,
        worker_id: str,
        stats: Stats,
        counters: ClusterCounters,
    ) -> WorkerOutcome:
        """Run jobs from `source` until it is exhausted or `stop` is set; every message
        still held at the end is given back at once."""
        t = self.transfer
        budget = ByteBudget(t.memory_limit)
        with ThreadPoolExecutor(self.limits.parts, thread_name_prefix="part") as parts:
            # Fewer parts in flight per object where the servers are near (see part_window).
            copying = dataclasses.replace(t, part_threads=part_window(t, self.meter.round_trip()))
            copiers = Copiers(
                self.stores,
                settings=copying,
                budget=budget,
                part_pool=parts,
                stats=stats,
                stop=stop,
            )
            jobs = ClusterJobQueue(
                source,
                self.table,
                copiers,
                routes=self.routes,
                ignore=self.ignore,
                filters=self.filters,
                cluster=self.config.cluster,
                worker_id=worker_id,
                stop=stop,
                counters=counters,
                max_receive_count=self.queue.max_receive_count,
                fanout=EventFanout(FanoutRule.of(self.config.cluster, t), self.table, self.queue),
            )
            controller = controller_for(t, self.limits)
            controller.path(self.meter.round_trip())  # the buckets' checks timed the path
            try:
                return Worker(
                    jobs,
                    lambda job: copiers.get(job.pair),
                    t,
                    stats,
                    stop,
                    controller=controller,
                    meter=self.meter,
                ).run()
            finally:
                jobs.release_all()
                jobs.close()

    def close(self) -> None:
        self.stores.close()
        if self._own_control:
            self.control.close()


@dataclass
class WorkerReport:
    """How a `longbow worker` ended and what it did."""

    worker_id: str
    fatal: LongbowError | None = None
    interrupted: bool = False
    objects_copied: int = 0
    objects_failed: int = 0
    bytes_sent: int = 0
    bytes_reused: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "objects_copied": self.objects_copied,
            "objects_failed": self.objects_failed,
            "bytes_sent": self.bytes_sent,
            "bytes_reused": self.bytes_reused,
            **self.counters,
            "interrupted": self.interrupted,
            "error": None
            if self.fatal is None
            else {"message": self.fatal.message, "hint": self.fatal.hint},
            "elapsed_seconds": round(self.elapsed, 3),
        }


def run_worker(
    config: ClusterConfig,
    *,
    stop: threading.Event,
    exit_when_idle: bool = False,
    write_metrics: Callable[[str], object] | None = None,
    control: ControlPlane | None = None,
) -> WorkerReport:
    """Long-poll the queue and run its jobs until stopped (or idle, with `exit_when_idle`).

    Args:
        config: The deployment's settings.
        stop: Set (e.g. on SIGTERM) to stop taking jobs and give back what is held.
        exit_when_idle: End once the queue is empty and nothing runs here.
        write_metrics: Where EMF lines go; none are written when None.
        control: SQS, DynamoDB and SSM clients (created when None).

    The counters are also served and kept in a file in Prometheus' format where the
    settings' telemetry asks for it (`metrics_port`, `metrics_file`).

    Raises:
        ConfigError: The settings are invalid, or the metrics port or file cannot be used.
        FatalError: The queue, the table or a bucket cannot be used.
    """
    started = time.monotonic()
    stats, counters, meter = Stats(), ClusterCounters(), RequestMeter()
    # Bound (and the file written) before anything else: a port in use stops the worker here.
    with MetricsExport(worker_exposition(stats, counters, meter), config.telemetry):
        runtime = WorkerRuntime(config, control=control, meter=meter)
        worker_id = new_worker_id()
        try:
            outcome = _run_worker(
                runtime, worker_id, stats, counters, stop, exit_when_idle, write_metrics
            )
        finally:
            runtime.close()
    snap = stats.snapshot()
    report = WorkerReport(
        worker_id=worker_id,
        fatal=outcome.fatal,
        interrupted=outcome.interrupted,
        objects_copied=snap.objects_copied,
        objects_failed=snap.objects_failed,
        bytes_sent=snap.bytes_sent,
        bytes_reused=snap.bytes_reused,
        counters=counters.snapshot(),
        elapsed=time.monotonic() - started,
    )
    log.info(
        "worker %s stopped",
        worker_id,
        extra={"fields": {"event": "stop", **report.to_json()}},
    )
    return report


def _run_worker(
    runtime: WorkerRuntime,
    worker_id: str,
    stats: Stats,
    counters: ClusterCounters,
    stop: threading.Event,
    exit_when_idle: bool,
    write_metrics: Callable[[str], object] | None,
) -> WorkerOutcome:
    cluster = runtime.config.cluster
    source = SqsSource(
        runtime.queue,
        wait_seconds=cluster.receive_wait_seconds,
        visibility_timeout=cluster.visibility_timeout,
        exit_when_idle=exit_when_idle,
    )
    log.info(
        "worker %s started on %s",
        worker_id,
        runtime.queue.url,
        extra={"fields": {"event": "start", "queue": runtime.queue.url}},
    )
    with ExitStack() as running:
        # A sample of the counters each metrics interval, for `longbow report --cluster`.
        samples = WorkerSamples(runtime.control.dynamodb, cluster.table, worker_id)
        running.enter_context(
            Sampler(stats, samples, interval=cluster.metrics_interval, max_samples=None)
        )
        if write_metrics is not None:
            running.enter_context(
                MetricsEmitter(
                    stats,
                    counters,
                    write_metrics,
                    interval=cluster.metrics_interval,
                    dimensions={"Mode": "worker"},
                    properties={"WorkerId": worker_id},
                )
            )
        return runtime.run(source, stop=stop, worker_id=worker_id, stats=stats, counters=counters)


@dataclass(frozen=True)
class InitReport:
    """What `cluster-init` made sure exists."""

    queue_url: str
    dead_letter_queue_url: str
    table: str
    table_created: bool

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def init_cluster(config: ClusterConfig, control: ControlPlane) -> InitReport:
    """Create the dead-letter queue, the job queue (with its redrive policy) and the job table
    (on-demand, with the state index and TTL on part items). Idempotent."""
    queue_url, dlq_url = ensure_queues(control.sqs, config.cluster)
    created = JobTable(control.dynamodb, config.cluster.table).create()
    return InitReport(queue_url, dlq_url, config.cluster.table, created)


@dataclass(frozen=True)
class StatusReport:
    """Totals by state, recent failures and queue depths of a deployment."""

    table: str
    totals: dict[str, tuple[int, int]]
    failures: list[JobItem]
    queue_url: str
    queue: QueueDepth
    dead_letter_queue_url: str | None
    dead_letter: QueueDepth | None
    window_seconds: float = 300.0
    recent_objects: int = 0
    recent_bytes: int = 0

    @property
    def objects_per_second(self) -> float:
        """Jobs finished per second over the last window."""
        return self.recent_objects / self.window_seconds

    @property
    def bytes_per_second(self) -> float:
        """Bytes of finished jobs per second over the last window."""
        return self.recent_bytes / self.window_seconds

    @property
    def failed(self) -> int:
        return self.totals.get("failed", (0, 0))[0]

    def to_json(self) -> dict[str, object]:
        return {
            "table": self.table,
            "throughput": {
                "window_seconds": self.window_seconds,
                "objects": self.recent_objects,
                "bytes": self.recent_bytes,
                "objects_per_second": round(self.objects_per_second, 3),
                "bytes_per_second": round(self.bytes_per_second, 1),
            },
            "jobs": {state: n for state, (n, _) in self.totals.items()},
            "bytes": {state: b for state, (_, b) in self.totals.items()},
            "failed": [
                {
                    "kind": f.kind,
                    "src": f"s3://{f.src_bucket}/{f.src_key}" if f.src_bucket else None,
                    "dst": f"s3://{f.dst_bucket}/{f.dst_key}" if f.dst_bucket else None,
                    "attempts": f.attempts,
                    "reason": f.reason,
                }
                for f in self.failures
            ],
            "queue": {"url": self.queue_url, **dataclasses.asdict(self.queue)},
            "dead_letter_queue": None
            if self.dead_letter is None
            else {"url": self.dead_letter_queue_url, **dataclasses.asdict(self.dead_letter)},
        }


def cluster_status(
    config: ClusterConfig, control: ControlPlane, *, failures: int = 20
) -> StatusReport:
    """Read the job table's state index and the queues' depths."""
    table = JobTable(control.dynamodb, config.cluster.table)
    table.check()
    queue = MessageQueue.open(control.sqs, config.cluster)
    dlq = queue.depth(queue.dead_letter_url) if queue.dead_letter_url else None
    window = 300.0
    recent_objects, recent_bytes = table.recent_done(window)
    return StatusReport(
        table=table.name,
        totals=table.totals(),
        failures=table.failures(failures),
        queue_url=queue.url,
        queue=queue.depth(),
        dead_letter_queue_url=queue.dead_letter_url,
        dead_letter=dlq,
        window_seconds=window,
        recent_objects=recent_objects,
        recent_bytes=recent_bytes,
    )


__all__ = [
    "UNBOUNDED_ATTEMPTS",
    "InitReport",
    "StatusReport",
    "WorkerReport",
    "WorkerRuntime",
    "cluster_status",
    "init_cluster",
    "new_worker_id",
    "run_worker",
]
