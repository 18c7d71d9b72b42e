"""The console the commands print to, with rich loaded only when something is printed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from s3longbow.display import printable

if TYPE_CHECKING:
    import rich.console


class Console:
    """A rich console for stdout or stderr, created on first use.

    Importing rich costs about 80 ms of CPU, a tenth of a small run's start-up; a sync
    whose output is no terminal and that ends without an error never prints through rich, so
    it never loads it. Whether the stream is a terminal is decided here, without rich, and
    handed to rich when it is created, so both always agree.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._rich: rich.console.Console | None = None

    @property
    def is_terminal(self) -> bool:
        stream = sys.stderr if self._stderr else sys.stdout
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError):  # replaced by an object without it, or closed
            return False

    @property
    def rich(self) -> rich.console.Console:
        """The rich console itself (for progress bars and log handlers)."""
        if self._rich is None:
            from rich.console import Console as RichConsole

            # No emoji codes: a key holding ":warning:" is shown as it is, not as a symbol.
            self._rich = RichConsole(
                stderr=self._stderr, force_terminal=self.is_terminal, emoji=False
            )
        return self._rich

    def print(self, *objects: Any, **options: Any) -> None:
        """Print as rich's ``Console.print`` does (markup, tables, soft wrapping)."""
        self.rich.print(*objects, **options)


def escape(text: str) -> str:
    """Text from outside (a key, a location, a reason, a server's message) for rich markup:
    shown literally, its control characters escaped (`printable`), its brackets no markup.

    The result may end in an escaped backslash (``\\``), which a markup tag right after it
    would halve: follow it with plain text or nothing, and style it with ``style=`` instead.
    """
    from rich.markup import escape as rich_escape

    return rich_escape(printable(text))


def new_table(**options: Any) -> Any:
    """A rich ``Table`` (imported on first use, as the console is)."""
    from rich.table import Table

    return Table(**options)
