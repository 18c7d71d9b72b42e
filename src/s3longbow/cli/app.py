"""`longbow` commands: sync and status."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from s3longbow.cli.terminal import Console
from s3longbow.config import (
    COUNT_LIMITS,
    PairSettings,
    Settings,
    SideSettings,
    TransferSettings,
    default_db_path,
    load_config_file,
    load_ignore_file,
    parse_rate,
    parse_size,
    side_from_environment,
)
from s3longbow.errors import ConfigError, FatalError, LongbowError
from s3longbow.progress.stats import Stats
from s3longbow.progress.view import LogView, RichView
from s3longbow.stores.location import check_endpoint_url

# The cluster commands (send, worker, cluster-init) register themselves on `cli`.
from . import cluster as _cluster  # noqa: F401
from . import render
from .common import (
    EXIT_CONFIG,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_JOBS_FAILED,
    EXIT_OK,
    apply,
    cli,
    die,
    handle_signals,
    json_option,
    setup_logging,
    verbose_option,
    workers_option,
)

DEFAULTS = TransferSettings()


class AmountParam(click.ParamType):
    """A byte amount written for people (8MiB, 200MiB/s), parsed by `parse`."""

    def __init__(self, name: str, parse: Callable[..., int]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        what = (param.opts[0] if param and param.opts else self.name).lstrip("-")
        try:
            return self._parse(value, what=what)
        except ConfigError as exc:
            self.fail(f"{exc.message}. {exc.hint or ''}".strip(), param, ctx)


SIZE = AmountParam("size", parse_size)
RATE = AmountParam("rate", parse_rate)


def _side_options(side: str, role: str) -> list[Any]:
    return [
        click.option(f"--{side}-profile", help=f"AWS profile for the {role}."),
        click.option(f"--{side}-endpoint-url", help=f"Endpoint URL of the {role} (any S3 API)."),
        click.option(f"--{side}-region", help=f"Region of the {role}."),
        click.option(
            f"--{side}-path-style",
            is_flag=True,
            default=None,
            help=f"Use path-style addressing for the {role}.",
        ),
        click.option(
            f"--{side}-no-verify-ssl",
            is_flag=True,
            help=f"Do not check the TLS certificate of the {role}'s https endpoint (unsafe).",
        ),
        click.option(
            f"--{side}-ca-bundle",
            type=click.Path(dir_okay=False),
            help=f"PEM file of the certificate authorities trusted for the {role}'s https "
            "endpoint [AWS_CA_BUNDLE, the profile's ca_bundle, REQUESTS_CA_BUNDLE, certifi].",
        ),
        click.option(
            f"--{side}-bucket-names",
            type=click.Choice(["strict", "relaxed"]),
            help=f"Bucket naming rules of the {role}: S3's [strict], or relaxed for stores "
            "that allow other names (capitals, underscores).",
        ),
        click.option(
            f"--{side}-allow-http",
            is_flag=True,
            help=f"Allow a plain http endpoint for the {role} beyond this machine's addresses.",
        ),
        click.option(
            f"--{side}-requester-pays",
            is_flag=True,
            default=None,
            help=f"The {role} bucket is requester-pays: this side's account pays for requests.",
        ),
        click.option(
            f"--{side}-checksum-algorithm",
            *(["--checksum-algorithm"] if side == "dst" else []),
            f"{side}_checksum_algorithm",
            metavar="auto|MD5|CRC32C|CRC32|CRC64NVME|SHA1|SHA256",
            help=(
                "Additional checksum of every write: auto (the source's own) [auto], MD5 "
                "(Content-MD5 only, for stores that reject newer checksum headers), or one "
                "algorithm."
                if side == "dst"
                else "auto: ask the source for its additional checksums [auto]; MD5: never "
                "(for stores that reject the header)."
            ),
        ),
    ]


_PAIR_OPTIONS = [
    click.argument("src", required=False),
    click.argument("dst", required=False),
    click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        help="TOML file with [[pairs]], [source], [destination] and transfer settings.",
    ),
    *_side_options("src", "source"),
    *_side_options("dst", "destination"),
    click.option(
        "--ignore-file",
        type=click.Path(path_type=Path),
        help="Shell-style patterns, one a line, matched against 'bucket/key'.",
    ),
]


@cli.command()
@apply(_PAIR_OPTIONS)
@workers_option(f"Objects in parallel [{DEFAULTS.workers}].")
@click.option(
    "--part-threads",
    type=click.IntRange(1, COUNT_LIMITS["part_threads"]),
    help=f"Parts in parallel per object [{DEFAULTS.part_threads}].",
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
@click.option("--storage-class", help="Storage class of the copies (e.g. STANDARD_IA, GLACIER).")
@click.option("--no-tags", is_flag=True, help="Do not copy object tags.")
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
    help="Read every byte into memory even where plain-HTTP endpoints allow relaying it.",
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
    "--listing-threads",
    type=click.IntRange(1, COUNT_LIMITS["listing_threads"]),
    help="Threads listing each side, by sub-prefix [8].",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, COUNT_LIMITS["max_attempts"]),
    help=f"Attempts per job before it stays failed [{DEFAULTS.max_attempts}].",
)
@click.option("--retry-failed", is_flag=True, help="Give failed jobs of this run fresh attempts.")
@click.option(
    "--delete",
    is_flag=True,
    help="After every copy succeeds, delete destination objects the source no longer has.",
)
@click.option(
    "--max-delete",
    type=click.FloatRange(0, 100),
    default=10.0,
    show_default=True,
    help="With --delete: the most a run may delete, in percent of the destination's objects.",
)
@click.option("--force", is_flag=True, help="With --delete: delete beyond --max-delete.")
@click.option("--dry-run", is_flag=True, help="Show what would be copied; change nothing.")
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    help=f"Job database file [{default_db_path()}].",
)
@json_option()
@verbose_option()
def sync(
    src: str | None,
    dst: str | None,
    config_file: Path | None,
    ignore_file: Path | None,
    retry_failed: bool,
    delete: bool,
    max_delete: float,
    force: bool,
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
    setup_logging(verbose, console)
    try:
        settings = _settings(src, dst, config_file, ignore_file, db_path, options)
    except LongbowError as exc:
        die(console, exc, EXIT_CONFIG)
    if force and not delete:
        die(console, ConfigError("--force only goes with --delete"), EXIT_CONFIG)
    settings = dataclasses.replace(
        settings, delete=delete, force=force, max_delete_fraction=max_delete / 100
    )
    stats = Stats()
    try:
        if dry_run:
            from s3longbow.sync import dry_run as run_dry

            with _view(stats, console, as_json):
                report = run_dry(settings, stats)
        else:
            from s3longbow.sync import run_sync

            stop = threading.Event()
            restore = handle_signals(stop)
            try:
                with _view(stats, console, as_json):
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
        render.error(console, report.fatal)
        sys.exit(EXIT_CONFIG if isinstance(report.fatal, ConfigError) else EXIT_FATAL)
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK if report.ok else EXIT_JOBS_FAILED)


@cli.command()
@apply(_PAIR_OPTIONS)
@click.option("--deep", is_flag=True, help="Read and hash objects whose ETags cannot be compared.")
@workers_option("Objects read in parallel with --deep [16].")
@json_option("Print a machine-readable report.")
@verbose_option()
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

    Sizes and ETags are compared from the listings (nothing is written). Where ETags cannot be
    compared (different multipart layouts, local files), --deep reads both objects and
    compares their MD5s. Exit code 0 only when everything matches.
    """
    from s3longbow.verify import verify as run_verify

    console = Console(stderr=True)
    setup_logging(verbose, console)
    try:
        settings = _settings(src, dst, config_file, ignore_file, None, options)
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
def status(
    db_path: Path | None,
    run_id: int | None,
    all_runs: bool,
    as_json: bool,
    cluster: bool = False,
    config_file: Path | None = None,
) -> None:
    """Show a run's jobs by state and its failed jobs with their reasons."""
    from s3longbow.jobs.sqlite import JobDatabase

    if cluster:
        from s3longbow.cli.cluster import show_cluster_status

        show_cluster_status(config_file, as_json)

    console = Console(stderr=True)
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


def _settings(
    src: str | None,
    dst: str | None,
    config_file: Path | None,
    ignore_file: Path | None,
    db_path: Path | None,
    options: dict[str, Any],
) -> Settings:
    """Merge defaults < config file < flags into one frozen Settings."""
    file: dict[str, Any] = load_config_file(config_file) if config_file else {}
    if (src is None) != (dst is None):
        raise ConfigError(
            "give both SRC and DST, or neither (with --config listing [[pairs]])",
            hint="longbow sync s3://source-bucket/prefix s3://destination-bucket/prefix",
        )
    pairs = (
        [PairSettings(src, dst)]
        if src is not None and dst is not None
        else file["pairs"]
        if (file)
        else []
    )
    if not pairs:
        raise ConfigError(
            "nothing to copy: no SRC and DST given and no [[pairs]] in a config file",
            hint="longbow sync SRC DST, or longbow sync --config pairs.toml",
        )

    def side(prefix: str, table: dict[str, Any]) -> SideSettings:
        base = SideSettings(**table)
        overrides = {
            "profile": options[f"{prefix}_profile"],
            "endpoint_url": options[f"{prefix}_endpoint_url"],
            "region": options[f"{prefix}_region"],
            "path_style": options[f"{prefix}_path_style"],
            "verify_ssl": False if options[f"{prefix}_no_verify_ssl"] else None,
            "allow_http": True if options[f"{prefix}_allow_http"] else None,
            "requester_pays": options[f"{prefix}_requester_pays"],
            "checksum_algorithm": options[f"{prefix}_checksum_algorithm"],
            "ca_bundle": options[f"{prefix}_ca_bundle"],
            "bucket_names": options[f"{prefix}_bucket_names"],
            **(
                {key: options.get(key) for key in ("sse", "sse_kms_key_id", "acl")}
                if prefix == "dst"
                else {}
            ),
        }
        base = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
        check_endpoint_url(
            base.endpoint_url, allow_http=base.allow_http, flag=f"--{prefix}-allow-http"
        )
        return side_from_environment(prefix.upper(), base.validate(prefix))

    transfer = dataclasses.replace(TransferSettings(), **file.get("transfer", {}))
    if config_file and file.get("transfer"):
        try:  # name the file when its own settings are what is wrong
            transfer.validate()
        except ConfigError as exc:
            raise ConfigError(f"config file {config_file}: {exc.message}", hint=exc.hint) from None
    flags = {
        name: options[name]
        for name in (
            "workers",
            "part_threads",
            "part_size",
            "resumable_threshold",
            "memory_limit",
            "storage_class",
            "max_attempts",
            "listing_threads",
            "bandwidth_limit",
            "min_rate",
            "compare",
        )
        if options.get(name) is not None
    }
    if options.get("no_tags"):
        flags["copy_tags"] = False
    if options.get("no_server_side_copy"):
        flags["server_side_copy"] = False
    if options.get("no_relay"):
        flags["relay"] = False
    if options.get("all_versions"):
        flags["all_versions"] = True
    if options.get("update_properties"):
        flags["update_properties"] = True
    transfer = dataclasses.replace(transfer, **flags)
    transfer.validate()
    ignore_path = ignore_file or file.get("ignore_file")
    return Settings(
        pairs=tuple(pairs),
        source=side("src", file.get("source", {})),
        destination=side("dst", file.get("destination", {})),
        transfer=transfer,
        ignore_patterns=load_ignore_file(ignore_path) if ignore_path else (),
        db_path=db_path or file.get("db") or default_db_path(),
    )


def _view(stats: Stats, console: Console, as_json: bool) -> RichView | LogView:
    if console.is_terminal and not as_json:
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
