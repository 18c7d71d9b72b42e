"""What every `longbow` command shares: the command group, exit codes, logging (and its
options), signal handling, the way errors end a command, and the options several commands
repeat.

Commands register on `cli` from their own modules (`app`, `cluster`); this module imports
none of them.
"""

from __future__ import annotations

import logging
import logging.handlers
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from s3longbow import __version__
from s3longbow.cli.terminal import Console
from s3longbow.config import COUNT_LIMITS
from s3longbow.display import JsonLogFormatter, PrintableFormatter
from s3longbow.errors import ConfigError, LongbowError
from s3longbow.loader import TelemetryFlags
from s3longbow.logsafety import quiet_secret_loggers
from s3longbow.telemetry import DEFAULT_METRICS_ADDRESS, LOG_FORMATS, TelemetrySettings

from . import render

EXIT_OK = 0
EXIT_JOBS_FAILED = 1
EXIT_CONFIG = 2
EXIT_FATAL = 3
EXIT_INTERRUPTED = 130
# Stopped at a limit the command set (rclone's codes for the same stops): run it again to go on.
EXIT_MAX_TRANSFER = 8
EXIT_MAX_DURATION = 10
STOPPED_BY = {"max-transfer": EXIT_MAX_TRANSFER, "max-duration": EXIT_MAX_DURATION}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="longbow")
def cli() -> None:
    """Longbow moves massive sets of objects between S3-compatible stores, resumably and
    verifiably."""


Decorator = Callable[[Any], Any]


def apply(options: list[Decorator]) -> Decorator:
    """Apply click decorators in the order they are listed (the first is the outermost)."""

    def decorator(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorator


def workers_option(text: str) -> Decorator:
    """`--workers`: objects in parallel (`text` says what each command's workers do)."""
    return click.option("--workers", type=click.IntRange(1, COUNT_LIMITS["workers"]), help=text)


def json_option(text: str = "Print a machine-readable summary.") -> Decorator:
    """`--json` (as `as_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=text)


def verbose_option(text: str = "More log output (-vv for debug).") -> Decorator:
    """`-v/--verbose`, counted."""
    return click.option("-v", "--verbose", count=True, help=text)


def log_options(default_format: str = "text") -> list[Decorator]:
    """`--log-file` and `--log-format`, which every command takes (`default_format`: the
    command's own format)."""
    return [
        click.option(
            "--log-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Append log lines to this file instead of standard error (reopened when log "
            "rotation moves it).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(LOG_FORMATS),
            help="Log lines as text, or as one JSON object each: time, level, logger, message "
            f"and the event's fields [{default_format}].",
        ),
    ]


METRICS_OPTIONS: list[Decorator] = [
    click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve the counters for Prometheus at http://ADDRESS:PORT/metrics while the "
        "command runs (0: any free port).",
    ),
    click.option(
        "--metrics-address",
        metavar="ADDRESS",
        help=f"The address --metrics-port listens on [{DEFAULT_METRICS_ADDRESS}: this machine "
        "only].",
    ),
    click.option(
        "--metrics-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Keep the counters in this file in Prometheus' text format, for node_exporter's "
        "textfile collector (name it *.prom): replaced whole every few seconds and at the end.",
    ),
]


def telemetry_flags(options: Mapping[str, Any]) -> TelemetryFlags:
    """The loader's telemetry flags from the options click gave by name (those a command
    lacks count as not given)."""
    return TelemetryFlags(
        log_file=options.get("log_file"),
        log_format=options.get("log_format"),
        metrics_port=options.get("metrics_port"),
        metrics_address=options.get("metrics_address"),
        metrics_file=options.get("metrics_file"),
    )


def verbosity(verbose: int) -> int:
    """The level of `-v` counted: warnings, -v info, -vv debug (-vvv: of libraries too)."""
    return logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG


@dataclass
class _Logs:
    """How the command logs: whether an error that ends it is logged too (where the log is
    not what the person reads, a file or JSON lines), not only shown."""

    errors_logged: bool = False


_LOGS = _Logs()
_NO_TELEMETRY = TelemetrySettings()
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(
    console: Console,
    level: int,
    telemetry: TelemetrySettings = _NO_TELEMETRY,
    *,
    default_format: str = "text",
    libraries: bool = False,
) -> None:
    """Where log lines go and how they look.

    Text is for people: through rich on a terminal, plain lines otherwise. JSON is one object
    a line. With a log file, lines are appended there instead of standard error.

    Args:
        console: Standard error, where lines go without a file.
        level: The level of Longbow's own loggers.
        telemetry: The log file and format (`--log-file`, `--log-format` or their keys).
        default_format: The command's format where none is given.
        libraries: Log the libraries' debug lines too (those that could hold a secret stay
            at INFO).

    Raises:
        ConfigError: The file cannot be opened for appending.
    """
    log_file = telemetry.log_file
    json_lines = (telemetry.log_format or default_format) == "json"
    handler: logging.Handler
    formatter: logging.Formatter = (
        JsonLogFormatter() if json_lines else PrintableFormatter(_TEXT_FORMAT)
    )
    if log_file is not None:
        try:
            # Reopened when logrotate (or a person) moves or removes the file.
            handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot open the log file {log_file}: {exc.strerror or exc}",
                hint="give --log-file (or log_file) a file in a directory that exists and "
                "this user may write to",
            ) from None
    elif console.is_terminal and not json_lines:
        from rich.logging import RichHandler

        handler = RichHandler(console=console.rich, show_path=False)
        formatter = PrintableFormatter("%(message)s")  # rich shows the time and level
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers.clear()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if libraries else logging.WARNING)
    logging.getLogger("s3longbow").setLevel(level)
    quiet_secret_loggers()
    _LOGS.errors_logged = log_file is not None or json_lines


def handle_signals(stop: threading.Event) -> Callable[[], None]:
    """First SIGINT/SIGTERM: stop gracefully; second: stop at once. Returns a restorer."""

    # click, not rich: a signal handler should not be the first to import a library.
    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            click.secho("stopping now", fg="red", err=True)
            raise SystemExit(EXIT_INTERRUPTED)
        click.secho(
            "stopping: jobs in flight go back to the queue; run the same command to "
            "continue (press Ctrl-C again to stop at once)",
            fg="yellow",
            err=True,
        )
        stop.set()

    return on_signals(on_signal)


def on_signals(handler: Callable[[int, object], None]) -> Callable[[], None]:
    """Install `handler` for SIGINT and SIGTERM; return what puts the previous ones back."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def die(console: Console, exc: LongbowError, code: int) -> NoReturn:
    """Show the error (and log it, where the log is a file or JSON lines) and exit with
    `code`."""
    if _LOGS.errors_logged:
        logging.getLogger("s3longbow.cli").error(
            "%s",
            exc.message,
            extra={"fields": {"event": "error", "hint": exc.hint, "exit_code": code}},
        )
    render.error(console, exc)
    sys.exit(code)


def fail(console: Console, exc: LongbowError) -> NoReturn:
    """Show the error and exit 2 for a configuration error, 3 for anything else."""
    die(console, exc, EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FATAL)


__all__ = [
    "Decorator",
    "EXIT_CONFIG",
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_JOBS_FAILED",
    "EXIT_MAX_DURATION",
    "EXIT_MAX_TRANSFER",
    "EXIT_OK",
    "METRICS_OPTIONS",
    "STOPPED_BY",
    "apply",
    "cli",
    "die",
    "fail",
    "handle_signals",
    "json_option",
    "log_options",
    "on_signals",
    "setup_logging",
    "telemetry_flags",
    "verbose_option",
    "verbosity",
    "workers_option",
]
