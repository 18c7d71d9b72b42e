"""Text shown to people or written to logs, with its control characters made visible.

Keys are arbitrary Unicode: one can hold an escape sequence that sets a terminal's title or
clears its screen, a carriage return that overwrites the line it is on, a newline that forges
a log line, or a bidi override that shows text reversed. Everything that reaches a terminal or
a log passes through `printable` (the command's renderers, `PrintableFormatter` for text logs)
or `printable_json` (JSON log lines), and no key is ever written raw. Both log formatters also
blank what looks like a secret (`s3longbow.logsafety`).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from datetime import UTC, datetime
from types import TracebackType

from s3longbow.logsafety import redact, redact_fields

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

# C0, DEL and C1 controls (Cc), format controls such as bidi overrides and zero-width
# characters (Cf), lone surrogates (Cs), and the line and paragraph separators (Zl, Zp).
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# Printable ASCII other than the backslash never needs a look: the common case stays cheap.
_SUSPECT = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in _CONTROL_CATEGORIES


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    if not _is_control(char):
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every control character written as a Python-style escape.

    ESC shows as ``\\x1b``, a newline as ``\\n``, U+202E as ``\\u202e``; a backslash shows as
    ``\\\\``, so every backslash in the result starts an escape and the original text can be
    read back from it exactly. Other characters, ``é`` or ``字`` included, are left as they
    are. The result is one line.
    """
    return _SUSPECT.sub(_escape, text)


def printable_lines(text: str) -> str:
    """`printable` for each line of a text that is several lines by design (a traceback)."""
    return "\n".join(printable(line) for line in text.split("\n"))


# In text from json.dumps(ensure_ascii=False) C0 controls are already escaped and every other
# character stands for itself: DEL and anything beyond ASCII may still be a control.
_JSON_SUSPECT = re.compile(r"[^\x00-\x7e]")


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if not _is_control(char):
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes characters beyond the BMP as a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable_json(dumped: str) -> str:
    """JSON text from ``json.dumps(..., ensure_ascii=False)`` with the control characters
    JSON leaves raw (DEL, C1, bidi and other format controls) written as ``\\u`` escapes.

    The value read back is the same; only the text is safe to print. Outside its strings JSON
    text is ASCII, so every character replaced was inside a string.
    """
    return _JSON_SUSPECT.sub(_json_escape, dumped)


class PrintableFormatter(logging.Formatter):
    """A text log formatter whose lines show control characters escaped (see `printable`).

    A message is escaped whole, its newlines included: one record is one line, and a key
    cannot forge another. A traceback keeps its own line breaks; each of its lines is escaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(redact(super().formatMessage(record)))

    def formatException(self, ei: ExcInfo) -> str:
        return printable_lines(redact(super().formatException(ei)))

    def formatStack(self, stack_info: str) -> str:
        return printable_lines(super().formatStack(stack_info))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, and any `fields` extra
    (``log.info("...", extra={"fields": {"event": "job", ...}})``), secrets blanked.

    Args:
        static: Fields added to every line (e.g. the worker id).
    """

    def __init__(self, static: dict[str, str] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **self.static,
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update(redact_fields(extra))
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        # Keys stay exact and readable (é, 字); controls JSON would leave raw are escaped.
        return printable_json(json.dumps(line, default=str, ensure_ascii=False))


__all__ = [
    "JsonLogFormatter",
    "PrintableFormatter",
    "printable",
    "printable_json",
    "printable_lines",
]
