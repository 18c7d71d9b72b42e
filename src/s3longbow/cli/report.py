"""`longbow report`: a run's report as one HTML file, and its throughput chart as a PNG. The
command registers itself on the `longbow` group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from s3longbow.cli.terminal import Console
from s3longbow.config import default_db_path
from s3longbow.errors import ConfigError, LongbowError
from s3longbow.telemetry import TelemetrySettings

from .common import (
    apply,
    cli,
    fail,
    log_options,
    setup_logging,
    telemetry_flags,
    verbose_option,
    verbosity,
)

if TYPE_CHECKING:
    from s3longbow.report.data import ReportData

DEFAULT_OUTPUT = Path("longbow-report.html")


@cli.command()
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    help=f"Job database file [{default_db_path()}].",
)
@click.option("--run", "run_id", type=int, help="Run id (default: the latest run).")
@click.option(
    "--invocation",
    "invocation_id",
    type=int,
    help="Which invocation of the run to report on (default: its latest).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="The HTML report to write.",
)
@click.option(
    "--png",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the throughput chart as a PNG (needs the report extra: matplotlib).",
)
@click.option(
    "--cluster",
    is_flag=True,
    help="Report on a cluster instead, from its job table and its workers' samples.",
)
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Cluster config.")
@click.option(
    "--hours",
    type=click.FloatRange(min=0, min_open=True, max=14 * 24),
    default=24.0,
    show_default=True,
    help="With --cluster: the report covers this many hours up to now.",
)
@verbose_option()
@apply(log_options())
def report(
    db_path: Path | None,
    run_id: int | None,
    invocation_id: int | None,
    output: Path,
    png: Path | None,
    cluster: bool,
    config_file: Path | None,
    hours: float,
    verbose: int = 0,
    **options: Any,
) -> None:
    """Write a run's report: one self-contained HTML file (throughput and concurrency over
    time, bytes by outcome, the slowest and largest objects, failures by reason,
    verification), and with --png the throughput chart as an image."""
    console = Console(stderr=True)
    try:
        telemetry = TelemetrySettings(**telemetry_flags(options).changes())
        setup_logging(console, verbosity(verbose), telemetry, libraries=verbose >= 3)
        if cluster:
            data = _cluster_data(config_file, hours)
        else:
            data = _local_data(db_path, run_id, invocation_id)
        from s3longbow.report.page import write_html

        write_html(data, output)
        click.echo(f"wrote {output}")
        if png is not None:
            from s3longbow.report.chart import write_png

            write_png(data, png)
            click.echo(f"wrote {png}")
    except LongbowError as exc:
        fail(console, exc)


def _local_data(db_path: Path | None, run_id: int | None, invocation_id: int | None) -> ReportData:
    from s3longbow.jobs.sqlite import JobDatabase
    from s3longbow.report.data import assemble

    path = db_path or default_db_path()
    if not path.exists():
        raise ConfigError(f"no job database at {path}", hint="pass --db FILE")
    db = JobDatabase(path)
    try:
        return assemble(db, run_id, invocation_id)
    finally:
        db.close()


def _cluster_data(config_file: Path | None, hours: float) -> ReportData:
    from s3longbow.cluster.report import cluster_report
    from s3longbow.loader import load_cluster

    from .cluster import with_control

    if config_file is None:
        raise ConfigError("--cluster needs --config", hint="longbow report --cluster --config FILE")
    config = load_cluster(config_file, os.environ)
    return with_control(
        config, lambda config, control: cluster_report(config.cluster, control, hours=hours)
    )
