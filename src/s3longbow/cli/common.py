"""What every `longbow` command shares: the command group, exit codes, logging, signal
handling, the way errors end a command, and the options several commands repeat.

Commands register on `cli` from their own modules (`app`, `cluster`); this module imports
none of them.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import click

from s3longbow import __version__
from s3longbow.cli.terminal import Console
from s3longbow.config import COUNT_LIMITS
from s3longbow.display import PrintableFormatter
from s3longbow.errors import ConfigError, LongbowError
from s3longbow.logsafety import quiet_secret_loggers

from . import render

EXIT_OK = 0
EXIT_JOBS_FAILED = 1
EXIT_CONFIG = 2
EXIT_FATAL = 3
EXIT_INTERRUPTED = 130


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


def setup_logging(verbose: int, console: Console) -> None:
    """Log lines for people: through rich on a terminal, plain lines otherwise."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    root.handlers.clear()
    if console.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console.rich, show_path=False)
        handler.setFormatter(PrintableFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("s3longbow").setLevel(level)
    if verbose >= 3:
        root.setLevel(logging.DEBUG)
    quiet_secret_loggers()


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
    """Show the error and exit with `code`."""
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
    "EXIT_OK",
    "apply",
    "cli",
    "die",
    "fail",
    "handle_signals",
    "json_option",
    "on_signals",
    "setup_logging",
    "verbose_option",
    "workers_option",
]
