"""Cluster commands: `longbow send`, `longbow worker`, `longbow cluster-init`, and the
rendering of `longbow status --cluster`. They register themselves on the `longbow` group."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from s3longbow.cli.terminal import Console, escape, new_table
from s3longbow.config import COUNT_LIMITS, format_size
from s3longbow.errors import ConfigError, LongbowError
from s3longbow.loader import TelemetryFlags, TransferFlags, load_cluster
from s3longbow.telemetry import DEFAULT_METRICS_ADDRESS, TelemetrySettings

from . import render
from .common import (
    EXIT_INTERRUPTED,
    EXIT_JOBS_FAILED,
    EXIT_OK,
    METRICS_OPTIONS,
    apply,
    cli,
    fail,
    handle_signals,
    json_option,
    log_options,
    on_signals,
    setup_logging,
    telemetry_flags,
    verbose_option,
    verbosity,
    workers_option,
)
from .options import FILTER_OPTIONS, filter_flags

if TYPE_CHECKING:
    from s3longbow.cluster.aws import ControlPlane
    from s3longbow.cluster.settings import ClusterConfig

_CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Cluster config file: [cluster], [source], [destination], [[pairs]], transfer settings.",
)


def _control(config: ClusterConfig) -> ControlPlane:
    from s3longbow.cluster.aws import ControlPlane

    return ControlPlane(config.cluster)


@cli.command()
@_CONFIG_OPTION
@click.option(
    "--dry-run",
    is_flag=True,
    help="Count what would be queued, and estimate the requests, bytes, duration and AWS "
    "cost of copying it (after a short read-only probe); change nothing.",
)
@click.option(
    "--price-table",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --dry-run: a TOML file of prices by region that replaces the built-in table "
    "(see `longbow sync --help`).",
)
@click.option(
    "--requeue",
    is_flag=True,
    help="Send jobs that are already pending again (after a sender was killed mid-send).",
)
@click.option("--retry-failed", is_flag=True, help="Queue failed jobs again.")
@apply(FILTER_OPTIONS)
@click.option(
    "--src-inventory",
    metavar="S3_URL",
    help="The manifest.json of an S3 Inventory report of the source bucket, read instead of "
    "listing the source (every pair); objects written after the report are not queued.",
)
@click.option(
    "--fanout-threshold",
    metavar="SIZE",
    help="Objects larger than this are fanned out: queued as ranges of their parts that any "
    "worker takes (default: [cluster] fanout_threshold, 5GiB).",
)
@click.option(
    "--fanout-parts",
    type=int,
    metavar="N",
    help="Most parts in one range of a fanned-out object (default: [cluster] fanout_parts, 500).",
)
@json_option()
@verbose_option()
@apply(log_options())
@apply(METRICS_OPTIONS)
def send(
    config_file: Path,
    dry_run: bool,
    requeue: bool,
    retry_failed: bool,
    src_inventory: str | None,
    fanout_threshold: str | None,
    fanout_parts: int | None,
    price_table: Path | None,
    as_json: bool,
    verbose: int,
    **options: Any,
) -> None:
    """Queue a job for every object the destination lacks, on the cluster's queue.

    Lists each pair's source and destination in step (bounded memory), skips objects whose
    job is already pending or running, packs small objects into shared messages and sends
    every message in checked batches. Safe to run again at any time.
    """
    from s3longbow.cluster.config import with_fanout
    from s3longbow.cluster.metrics import send_exposition
    from s3longbow.cluster.sender import SendReport, send_jobs
    from s3longbow.progress.exposition import MetricsExport
    from s3longbow.progress.stats import Stats

    console = Console(stderr=True)
    try:
        config = load_cluster(
            config_file,
            os.environ,
            filters=filter_flags(options),
            telemetry=telemetry_flags(options),
        )
        setup_logging(console, verbosity(verbose), config.telemetry, libraries=verbose >= 3)
        cluster = with_fanout(config.cluster, fanout_threshold, fanout_parts)
        config = dataclasses.replace(config, cluster=cluster)
        if price_table is not None:
            config = dataclasses.replace(config, price_table=price_table)
        # Only send's own flags export its counters: a config file's metrics keys are the
        # workers' (a port or file of theirs on the same machine).
        metrics = TelemetrySettings(
            metrics_port=options.get("metrics_port"),
            metrics_address=options.get("metrics_address") or DEFAULT_METRICS_ADDRESS,
            metrics_file=options.get("metrics_file"),
        ).validate()
        control = _control(config)
    except LongbowError as exc:
        fail(console, exc)
    stop = threading.Event()
    restore = handle_signals(stop)
    stats, report = Stats(), SendReport(dry_run=dry_run)
    try:
        with MetricsExport(send_exposition(stats, report), metrics):
            send_jobs(
                config,
                control,
                dry_run=dry_run,
                requeue=requeue,
                retry_failed=retry_failed,
                stop=stop,
                stats=stats,
                src_inventory=src_inventory,
                report=report,
            )
    except LongbowError as exc:
        fail(console, exc)
    finally:
        restore()
        control.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        out = Console()
        title = "Dry run: nothing was queued" if dry_run else "Queued"
        table = new_table(title=title, title_justify="left")
        table.add_column("")
        table.add_column("objects", justify="right")
        table.add_column("bytes", justify="right")
        verb = "would queue" if dry_run else "queued"
        table.add_row(verb, str(report.objects_queued), format_size(report.bytes_queued))
        if report.objects_fanned_out:
            table.add_row(
                f"  of them fanned out ({report.ranges_queued} ranges)",
                str(report.objects_fanned_out),
                "",
            )
        table.add_row("already queued or running", str(report.objects_already_queued), "")
        table.add_row("already present", str(report.objects_same), format_size(report.bytes_same))
        table.add_row("ignored", str(report.objects_ignored), "")
        if report.objects_filtered:
            table.add_row("filtered out", str(report.objects_filtered), "")
        if report.objects_unsupported:
            table.add_row("cannot be stored", str(report.objects_unsupported), "")
        out.print(table)
        if not dry_run:
            out.print(f"{report.messages_sent} message(s) sent")
        elif report.table_missing:
            out.print("the job table does not exist yet: every copy was counted as new")
        if report.estimate is not None:
            render.estimate(out, report.estimate)
    sys.exit(EXIT_INTERRUPTED if report.interrupted else EXIT_OK)


@cli.command()
@_CONFIG_OPTION
@click.option(
    "--exit-when-idle",
    is_flag=True,
    help="End once the queue is empty (visible, in flight and delayed) and nothing runs here.",
)
@workers_option("Most objects in flight at once; the worker finds how many pay, from 16 up.")
@click.option(
    "--no-autotune",
    is_flag=True,
    help="Run exactly --workers objects at once instead of finding the number.",
)
@click.option(
    "--part-threads",
    type=click.IntRange(1, COUNT_LIMITS["part_threads"]),
    help="Parts in parallel per object.",
)
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@verbose_option("Debug log lines (-vvv: of libraries too).")
@apply(log_options("json"))
@apply(METRICS_OPTIONS)
def worker(
    config_file: Path,
    exit_when_idle: bool,
    workers: int | None,
    no_autotune: bool,
    part_threads: int | None,
    quiet: bool,
    verbose: int = 0,
    **options: Any,
) -> None:
    """Run jobs from the cluster's queue until stopped (SIGTERM or Ctrl-C).

    Metrics (CloudWatch Embedded Metric Format, namespace Longbow) go to standard output, one
    JSON line every [cluster] metrics_interval seconds and one at the end (and, with
    --metrics-port or --metrics-file, to Prometheus); logs go to standard error, one JSON
    object a line. On SIGTERM the worker stops taking jobs and gives back what it holds.
    """
    from s3longbow.cluster.service import run_worker

    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    log = logging.getLogger("s3longbow.worker")
    console = Console(stderr=True)
    try:
        flags = TransferFlags(
            workers=workers, autotune=False if no_autotune else None, part_threads=part_threads
        )
        config = load_cluster(config_file, os.environ, flags, telemetry=telemetry_flags(options))
        setup_logging(
            console, level, config.telemetry, default_format="json", libraries=verbose >= 3
        )
    except LongbowError as exc:
        fail(console, exc)
    stop = threading.Event()
    restore = _stop_on_signals(stop, log)

    def write_metrics(line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()

    try:
        report = run_worker(
            config, stop=stop, exit_when_idle=exit_when_idle, write_metrics=write_metrics
        )
    except LongbowError as exc:
        fail(console, exc)
    finally:
        restore()
    if report.fatal is not None:
        fail(console, report.fatal)
    sys.exit(EXIT_INTERRUPTED if report.interrupted else EXIT_OK)


def _stop_on_signals(stop: threading.Event, log: logging.Logger) -> Callable[[], None]:
    """First SIGTERM/SIGINT: stop taking jobs and give back what is held; second: exit."""

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(EXIT_INTERRUPTED)
        log.warning(
            "stopping: jobs in flight go back to the queue",
            extra={"fields": {"event": "signal", "signal": signal.Signals(signum).name}},
        )
        stop.set()

    return on_signals(on_signal)


@cli.command("cluster-init")
@_CONFIG_OPTION
@json_option("Print the queue URLs as JSON.")
@verbose_option()
@apply(log_options())
def cluster_init(config_file: Path, as_json: bool, verbose: int = 0, **options: Any) -> None:
    """Create the job queue, its dead-letter queue (redrive policy) and the job table.

    For tests and small deployments; safe to run again (existing queues get the configured
    visibility timeout and redrive policy). Production deployments use the CDK app.
    """
    from s3longbow.cluster.service import init_cluster

    console = Console(stderr=True)
    try:
        config = _load_logged(config_file, console, verbose, telemetry_flags(options))
        report = with_control(config, init_cluster)
    except LongbowError as exc:
        fail(console, exc)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        out = Console()
        out.print(f"queue:             {escape(report.queue_url)}", highlight=False)
        out.print(f"dead-letter queue: {escape(report.dead_letter_queue_url)}", highlight=False)
        made = "created" if report.table_created else "exists"
        out.print(f"job table:         {escape(report.table)} ({made})", highlight=False)
    sys.exit(EXIT_OK)


_R = TypeVar("_R")


def _load_logged(
    config_file: Path, console: Console, verbose: int, telemetry: TelemetryFlags
) -> ClusterConfig:
    """Load the cluster config and log where its and the flags' telemetry says."""
    config = load_cluster(config_file, os.environ, telemetry=telemetry)
    setup_logging(console, verbosity(verbose), config.telemetry, libraries=verbose >= 3)
    return config


def with_control(config: ClusterConfig, action: Callable[[Any, Any], _R]) -> _R:
    """Open the control plane, run `action`, close it."""
    control = _control(config)
    try:
        return action(config, control)
    finally:
        control.close()


def show_cluster_status(
    config_file: Path | None, as_json: bool, verbose: int, telemetry: TelemetryFlags
) -> NoReturn:
    """`longbow status --cluster`: totals by state, failures with reasons, queue depths."""
    from s3longbow.cluster.service import cluster_status

    console = Console(stderr=True)
    if config_file is None:
        fail(
            console,
            ConfigError("--cluster needs --config", hint="longbow status --cluster --config FILE"),
        )
    try:
        config = _load_logged(config_file, console, verbose, telemetry)
        report = with_control(config, cluster_status)
    except LongbowError as exc:
        fail(console, exc)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        out = Console()
        table = new_table(title=f"Job table {escape(report.table)}", title_justify="left")
        table.add_column("state")
        table.add_column("items", justify="right")
        table.add_column("bytes", justify="right")
        for state in ("done", "pending", "in_progress", "failed", "skipped", "archived"):
            n, b = report.totals.get(state, (0, 0))
            table.add_row(state, str(n), format_size(b))
        out.print(table)
        out.print(
            f"last {report.window_seconds / 60:.0f} min: {report.recent_objects} object(s) done, "
            f"{report.objects_per_second:.1f} objects/s, {format_size(report.bytes_per_second)}/s",
            highlight=False,
        )
        depth = report.queue
        out.print(
            f"queue: {depth.visible} waiting, {depth.in_flight} in flight, {depth.delayed} delayed",
            highlight=False,
        )
        if report.dead_letter is not None:
            out.print(f"dead-letter queue: {report.dead_letter.total} message(s)", highlight=False)
        if report.totals.get("archived", (0, 0))[0]:
            out.print(
                "archived sources wait for a restore (restore_days in the config file asks for "
                "it); send again once restored to copy them",
                highlight=False,
            )
        if report.failures:
            out.print("[bold]failed:[/bold]")
            for item in report.failures:
                what = (
                    f"s3://{item.src_bucket}/{item.src_key}"
                    if item.src_bucket
                    else f"{item.kind} {item.id}"
                )
                out.print(
                    f"  {escape(what)}: {escape(item.reason or '')}",
                    highlight=False,
                    soft_wrap=True,
                )
    sys.exit(EXIT_JOBS_FAILED if report.failed else EXIT_OK)
