"""`longbow` commands: sync, verify and status; the cluster commands register from
`cluster`."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import click

from s3longbow.cli.terminal import Console
from s3longbow.config import (
    COUNT_LIMITS,
    MAX_RESTORE_DAYS,
    RESTORE_TIERS,
    TransferSettings,
    default_db_path,
)
from s3longbow.errors import ConfigError, FatalError, LongbowError
from s3longbow.loader import load_settings
from s3longbow.progress.stats import Stats
from s3longbow.progress.view import LogView, RichView
from s3longbow.telemetry import TelemetrySettings

# The cluster commands (send, worker, cluster-init) and `report` register themselves on `cli`.
from . import cluster as _cluster  # noqa: F401
from . import render
from . import report as _report  # noqa: F401
from .common import (
    EXIT_CONFIG,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_JOBS_FAILED,
    EXIT_OK,
    METRICS_OPTIONS,
    STOPPED_BY,
    apply,
    cli,
    die,
    handle_signals,
    json_option,
    log_options,
    setup_logging,
    telemetry_flags,
    verbose_option,
    verbosity,
    workers_option,
)
from .options import (
    DELETE_OPTIONS,
    LIMIT_OPTIONS,
    LISTING_THREADS_OPTION,
    PAIR_OPTIONS,
    RATE,
    SIZE,
    pair_flags,
)

DEFAULTS = TransferSettings()
VERIFY_WORKERS = 16


@cli.command()
@apply(PAIR_OPTIONS)
@workers_option(
    f"Most objects in flight at once [{DEFAULTS.workers}]; the run finds how many pay on "
    "its path, starting at 64."
)
@click.option(
    "--no-autotune",
    is_flag=True,
    help="Run exactly --workers objects at once instead of finding the number.",
)
@click.option(
    "--part-threads",
    type=click.IntRange(1, COUNT_LIMITS["part_threads"]),
    help=f"Most parts in parallel per object [{DEFAULTS.part_threads}; 4 where the servers "
    "are under 10 ms away, unless --no-autotune].",
)
@click.option("--part-size", type=SIZE, help="Multipart part size [8MiB]; grows past 10,000 parts.")
@click.option(
    "--resumable-threshold",
    type=SIZE,
    help="Objects larger than this (and than one part) go multipart, resumable [5MiB].",
)
@click.option(
    "--memory-limit", type=SIZE, help="Most bytes of object data held in memory at once [96MiB]."
)
@click.option(
    "--storage-class",
    help="Storage class of the copies (e.g. STANDARD_IA, GLACIER), or keep: each copy in its "
    "source's class [the destination's default].",
)
@click.option("--no-tags", is_flag=True, help="Do not copy object tags.")
@click.option(
    "--no-overwrite",
    is_flag=True,
    help="Never replace an object the destination has: one that differs is reported as "
    "'exists, not replaced' (writes carry If-None-Match: *).",
)
@click.option(
    "--content-type-map",
    type=click.Path(dir_okay=False),
    help="File of '.ext type' lines: the Content-Type of copies whose source has none or a "
    "generic one (application/octet-stream).",
)
@click.option(
    "--set-metadata",
    metavar="NAME=VALUE",
    multiple=True,
    help="User metadata every copy gets, over the source's of the same name (repeatable).",
)
@click.option(
    "--compare",
    type=click.Choice(["size", "etag", "mtime", "version"]),
    help="When a present object is copied again: its size differs [size]; or also its ETag "
    "differs (where comparable); or also the source is newer; or also the source's current "
    "version is not the one this run copied (versioned source).",
)
@click.option(
    "--sse",
    type=click.Choice(["AES256", "aws:kms", "aws:kms:dsse"]),
    help="Server-side encryption of the copies.",
)
@click.option("--sse-kms-key-id", help="KMS key (id, ARN or alias) for --sse aws:kms.")
@click.option(
    "--update-properties",
    is_flag=True,
    help="Also fix the properties and tags of objects already at the destination "
    "(a metadata-only copy: no data is sent).",
)
@click.option(
    "--all-versions",
    is_flag=True,
    help="Copy every version of each key, oldest first (both buckets versioned).",
)
@click.option(
    "--no-server-side-copy",
    is_flag=True,
    help="Stream every byte through this machine even where the server could copy.",
)
@click.option(
    "--no-relay",
    is_flag=True,
    help="Read every byte into memory even where it could be relayed as it arrives.",
)
@click.option(
    "--preserve-mtime",
    is_flag=True,
    help="Keep files' modification times: uploads from a folder write x-amz-meta-mtime "
    "(as rclone does); downloads to a folder set each file's time from it (else from "
    "Last-Modified).",
)
@click.option(
    "--restore-days",
    type=click.IntRange(1, MAX_RESTORE_DAYS),
    help="Ask for a restore of each archived source object (GLACIER, DEEP_ARCHIVE, "
    "Intelligent-Tiering archive tiers), readable for N days; a later run copies it once "
    "restored. Restores take hours and are billed. [ask for none: archived objects are "
    "skipped and reported]",
)
@click.option(
    "--restore-tier",
    type=click.Choice(RESTORE_TIERS, case_sensitive=False),
    help="How fast (and dear) the restores of --restore-days are [Standard].",
)
@click.option("--acl", help="Canned ACL of the copies (e.g. bucket-owner-full-control).")
@click.option(
    "--bwlimit",
    "bandwidth_limit",
    type=RATE,
    help="Most bytes per second sent, for the whole process, e.g. 200MiB/s [no limit].",
)
@click.option(
    "--min-rate",
    type=RATE,
    help="Once bytes flow, the slowest a request or reply may go, on average over 30 s, "
    "before it fails as a timeout and is retried; 0 for no minimum [64KiB/s].",
)
@click.option(
    "--prefix-write-rate",
    type=click.IntRange(0),
    help="Most writes per second to one key prefix of the destination; a SlowDown lowers "
    f"it for that prefix; 0 for no cap [{DEFAULTS.prefix_write_rate}].",
)
@click.option(
    "--prefix-read-rate",
    type=click.IntRange(0),
    help="Most reads per second from one key prefix of the source; 0 for no cap "
    f"[{DEFAULTS.prefix_read_rate}].",
)
@click.option(
    "--rate-prefix",
    metavar="segments:N|chars:N",
    help="What names a key's prefix for the rates above: its first N folders or characters "
    f"under the pair's root [{DEFAULTS.rate_prefix}].",
)
@LISTING_THREADS_OPTION
@click.option(
    "--max-attempts",
    type=click.IntRange(1, COUNT_LIMITS["max_attempts"]),
    help=f"Attempts per job before it stays failed [{DEFAULTS.max_attempts}].",
)
@click.option("--retry-failed", is_flag=True, help="Give failed jobs of this run fresh attempts.")
@click.option(
    "--src-inventory",
    metavar="S3_URL",
    help="The manifest.json of an S3 Inventory report of the source bucket, read (with the "
    "source's endpoint and credentials) instead of listing the source; objects written after "
    "the report are not copied.",
)
@apply(DELETE_OPTIONS)
@apply(LIMIT_OPTIONS)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be copied, and estimate the requests, bytes, duration and AWS cost "
    "(after a short read-only probe); change nothing.",
)
@click.option(
    "--price-table",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --dry-run: a TOML file of prices by region (laid out as the built-in "
    "s3longbow/plan/prices.toml) that replaces the built-in table, and prices endpoints "
    "that are not AWS by the regions given.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    help=f"Job database file [{default_db_path()}].",
)
@json_option()
@verbose_option()
@apply(log_options())
@apply(METRICS_OPTIONS)
def sync(
    src: str | None,
    dst: str | None,
    config_file: Path | None,
    ignore_file: Path | None,
    retry_failed: bool,
    delete: bool,
    max_delete: float,
    force: bool,
    delete_excluded: bool,
    dry_run: bool,
    db_path: Path | None,
    as_json: bool,
    verbose: int,
    **options: Any,
) -> None:
    """Copy what is missing or different from SRC to DST.

    SRC and DST are s3://bucket[/prefix] or local directories. Sizes are compared (an object
    whose size differs is copied again). Re-running the same command continues the same run:
    done jobs are not redone and interrupted uploads resume from the parts already sent.
    """
    console = Console(stderr=True)
    if options.get("price_table") is not None and not dry_run:
        # Only a dry run estimates: a table given without one would be silently unused.
        die(
            console,
            ConfigError(
                "--price-table prices a dry run's estimate, and this run is not a dry run",
                hint="add --dry-run to see the estimate priced by it, or leave --price-table out",
            ),
            EXIT_CONFIG,
        )
    try:
        flags = pair_flags(
            src,
            dst,
            config_file,
            ignore_file,
            options,
            db_path=db_path,
            delete=delete,
            force=force,
            max_delete=max_delete,
            delete_excluded=delete_excluded,
        )
        settings = load_settings(flags, os.environ)
        _setup_logging(console, verbose, settings.telemetry)
    except LongbowError as exc:
        die(console, exc, EXIT_CONFIG)
    stats = Stats()
    try:
        if dry_run:
            from s3longbow.sync import dry_run as run_dry

            with _view(stats, console, as_json, settings.telemetry):
                report = run_dry(settings, stats)
        else:
            from s3longbow.sync import run_sync

            stop = threading.Event()
            restore = handle_signals(stop)
            try:
                with _view(stats, console, as_json, settings.telemetry):
                    report = run_sync(settings, stats, stop, retry_failed=retry_failed)
            finally:
                restore()
    except ConfigError as exc:
        die(console, exc, EXIT_CONFIG)
    except LongbowError as exc:
        die(console, exc, EXIT_FATAL)

    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        render.summary(Console(), report, settings)
    if report.fatal is not None:
        die(
            console,
            report.fatal,
            EXIT_CONFIG if isinstance(report.fatal, ConfigError) else EXIT_FATAL,
        )
    if report.interrupted:
        sys.exit(STOPPED_BY.get(report.stopped_by or "", EXIT_INTERRUPTED))
    sys.exit(EXIT_OK if report.ok else EXIT_JOBS_FAILED)


@cli.command()
@apply(PAIR_OPTIONS)
@click.option("--deep", is_flag=True, help="Read and hash objects whose ETags cannot be compared.")
@LISTING_THREADS_OPTION
@workers_option(f"Objects read in parallel with --deep [{VERIFY_WORKERS}].")
@json_option("Print a machine-readable report.")
@verbose_option()
@apply(log_options())
def verify(
    src: str | None,
    dst: str | None,
    config_file: Path | None,
    ignore_file: Path | None,
    deep: bool,
    as_json: bool,
    verbose: int,
    **options: Any,
) -> None:
    """Compare SRC and DST: report missing, extra, different and unverifiable objects.

    Sizes and ETags are compared from the listings (nothing is written). The files of a local
    folder are read and hashed as the other side's ETags describe them. Where ETags cannot be
    compared (different multipart layouts), --deep reads both objects and compares their
    MD5s. Exit code 0 only when everything matches.
    """
    from s3longbow.verify import verify as run_verify

    console = Console(stderr=True)
    # Sync's default is a ceiling the run tunes under; verify reads at a fixed width.
    options["workers"] = options.get("workers") or VERIFY_WORKERS
    try:
        settings = load_settings(
            pair_flags(src, dst, config_file, ignore_file, options), os.environ
        )
        _setup_logging(console, verbose, settings.telemetry)
        report = run_verify(settings, deep=deep)
    except ConfigError as exc:
        die(console, exc, EXIT_CONFIG)
    except LongbowError as exc:
        die(console, exc, EXIT_FATAL)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        render.verify_report(Console(), report)
    sys.exit(EXIT_OK if report.ok else EXIT_JOBS_FAILED)


@cli.command()
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    help=f"Job database file [{default_db_path()}].",
)
@click.option("--run", "run_id", type=int, help="Run id (default: the latest run).")
@click.option("--all", "all_runs", is_flag=True, help="List every run in the database.")
@json_option()
@click.option("--cluster", is_flag=True, help="Show the cluster's job table and queues instead.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Cluster config.")
@verbose_option()
@apply(log_options())
def status(
    db_path: Path | None,
    run_id: int | None,
    all_runs: bool,
    as_json: bool,
    cluster: bool = False,
    config_file: Path | None = None,
    verbose: int = 0,
    **options: Any,
) -> None:
    """Show a run's jobs by state and its failed jobs with their reasons."""
    from s3longbow.jobs.sqlite import JobDatabase

    if cluster:
        from s3longbow.cli.cluster import show_cluster_status

        show_cluster_status(config_file, as_json, verbose, telemetry_flags(options))

    console = Console(stderr=True)
    try:
        telemetry = TelemetrySettings(**telemetry_flags(options).changes())
        _setup_logging(console, verbose, telemetry)
    except LongbowError as exc:
        die(console, exc, EXIT_CONFIG)
    path = db_path or default_db_path()
    if not path.exists():
        die(console, ConfigError(f"no job database at {path}", hint="pass --db FILE"), EXIT_CONFIG)
    db = JobDatabase(path)
    try:
        if all_runs:
            runs = db.list_runs()
            if as_json:
                click.echo(json.dumps([render.run_json(db, r) for r in runs], indent=2))
            else:
                render.runs_table(Console(), db, runs)
            return
        run = db.get_run(run_id=run_id)
        if run is None:
            die(
                console,
                ConfigError(f"no run {run_id or ''} in {path}".replace("  ", " ")),
                EXIT_CONFIG,
            )
        if as_json:
            click.echo(json.dumps(render.run_json(db, run), indent=2))
        else:
            render.status(Console(), db, run)
        failed = db.totals(run.id)["failed"][0] + len(db.unstorable_jobs(run.id, 1))
    finally:
        db.close()
    sys.exit(EXIT_JOBS_FAILED if failed else EXIT_OK)


def _setup_logging(console: Console, verbose: int, telemetry: TelemetrySettings) -> None:
    setup_logging(console, verbosity(verbose), telemetry, libraries=verbose >= 3)


def _view(
    stats: Stats, console: Console, as_json: bool, telemetry: TelemetrySettings
) -> RichView | LogView:
    # The bar needs the terminal to itself: JSON log lines there get progress lines instead.
    json_on_terminal = telemetry.log_file is None and telemetry.log_format == "json"
    if console.is_terminal and not as_json and not json_on_terminal:
        return RichView(stats, console.rich)
    return LogView(stats)


def _bound_heap() -> None:
    """Reuse freed part buffers in one heap, without growing past the byte budget.

    Left alone, glibc gives each thread its own arena, and multi-MiB part buffers freed in
    one stay there: with dozens of threads the process held far more memory than the byte
    budget allows. Putting every buffer in its own mapping bounds memory but costs a page
    fault per 4 KiB of every part read (~0.7 CPU-s per GiB copied). One arena, with part
    buffers kept in it and its top trimmed only beyond 128 MiB, reuses freed buffers' pages:
    memory stays near the budget plus the interpreter, and the faults are gone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 1)  # M_ARENA_MAX
        libc.mallopt(-3, 256 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: its allocator has its own policy


def main() -> None:
    """Console entry point."""
    _bound_heap()
    try:
        cli()
    except FatalError as exc:  # pragma: no cover - commands handle their own
        render.error(Console(stderr=True), exc)
        sys.exit(EXIT_FATAL)
