"""Text shown to people and written to logs: every control character a key can hold comes out
escaped, visibly and unambiguously; rich markup and emoji codes in a key stay plain text; JSON
keeps the exact key."""

from __future__ import annotations

import ast
import json
import logging
import sys
import unicodedata
from collections.abc import Iterator

import pytest

from s3longbow.cli import render
from s3longbow.cli.common import setup_logging
from s3longbow.cli.terminal import Console
from s3longbow.config import PairSettings, Settings
from s3longbow.display import JsonLogFormatter, PrintableFormatter, printable, printable_json
from s3longbow.sync import FailedJob, SyncReport
from s3longbow.telemetry import TelemetrySettings
from s3longbow.verify import Verdict, VerifyReport

CONTROL = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# text -> how it is shown
SHOWN = {
    "plain/key.txt": "plain/key.txt",
    "été 字/ключ": "été 字/ключ",
    "title\x1b]0;pwned\x07": "title\\x1b]0;pwned\\x07",
    "clear\x1b[2J": "clear\\x1b[2J",
    "cr\rfake": "cr\\rfake",
    "new\nline\ttab": "new\\nline\\ttab",
    "nul\x00del\x7f": "nul\\x00del\\x7f",
    "csi\u009b2J": "csi\\x9b2J",
    "rlo\u202etxt.exe": "rlo\\u202etxt.exe",
    "isolate\u2066x\u2069": "isolate\\u2066x\\u2069",
    "zero\u200bwidth": "zero\\u200bwidth",
    "line\u2028separator": "line\\u2028separator",
    "tag\U000e0041": "tag\\U000e0041",
    "lone\ud800surrogate": "lone\\ud800surrogate",
    # A backslash is escaped too: "\x1b" typed in a key must not read as ESC.
    "typed\\x1b": "typed\\\\x1b",
    "back\\": "back\\\\",
}


def raw_controls(text: str, layout: str = "") -> set[str]:
    return {ch for ch in text if ch not in layout and unicodedata.category(ch) in CONTROL}


@pytest.mark.parametrize("text", sorted(SHOWN))
def test_printable_escapes_controls_and_backslashes_and_nothing_else(text: str) -> None:
    shown = printable(text)
    assert shown == SHOWN[text]
    assert not raw_controls(shown)
    # Unambiguous: the shown form reads back as the very text (it is a Python string body).
    assert ast.literal_eval('"' + shown.replace('"', '\\"') + '"') == text


def test_every_control_character_is_escaped() -> None:
    controls = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in CONTROL]
    text = "".join(controls)
    assert not raw_controls(printable(text))
    assert ast.literal_eval('"' + printable(text) + '"') == text


@pytest.mark.parametrize("text", sorted(SHOWN))
def test_printable_json_keeps_the_value_and_escapes_what_json_leaves_raw(text: str) -> None:
    value = {"key": text, "n": 1}
    dumped = printable_json(json.dumps(value, ensure_ascii=False))
    assert not raw_controls(dumped)
    assert json.loads(dumped) == value
    if text.isprintable() and "\\" not in text:  # JSON escapes a backslash itself
        assert text in dumped  # readable text is not turned into escapes


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"reading {args[0]} failed")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("s3longbow.worker.loop", logging.WARNING, "x", 1, msg, args, exc_info)


def test_a_text_log_line_shows_the_key_escaped_and_stays_one_line() -> None:
    key = "a\x1b]0;pwned\x07\n2024-01-01 00:00:00 INFO s3longbow: all fine\u202e"
    line = PrintableFormatter("%(levelname)s %(name)s: %(message)s").format(
        record("%s: failed: %s", key, f"key {key} is gone")
    )
    assert "\n" not in line and not raw_controls(line)
    shown = printable(key)
    assert line == f"WARNING s3longbow.worker.loop: {shown}: failed: key {shown} is gone"


def test_a_traceback_in_a_text_log_keeps_its_lines_with_the_key_escaped() -> None:
    key = "k\x1b[2J\x9b"
    text = PrintableFormatter("%(message)s").format(
        record("unexpected error copying %s", key, exc=True)
    )
    assert not raw_controls(text, layout="\n")
    lines = text.split("\n")
    assert lines[0] == f"unexpected error copying {printable(key)}"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == f"ValueError: reading {printable(key)} failed"


def test_a_json_log_line_keeps_the_exact_key_and_no_raw_control() -> None:
    key = "k\x1b]0;pwned\x07\x7f\u009b\u202eé"
    line = JsonLogFormatter({"worker": "w"}).format(record("%s no longer exists", key, exc=True))
    assert "\n" not in line and not raw_controls(line)
    parsed = json.loads(line)
    assert parsed["message"] == f"{key} no longer exists"
    assert f"reading {key} failed" in parsed["error"]
    assert "é" in line  # readable text stays readable


@pytest.fixture()
def restored_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("s3longbow")
    handlers, levels = list(root.handlers), (root.level, ours.level)
    yield
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("command", ["sync", "worker text", "worker json"])
def test_the_log_handler_each_command_installs_escapes_keys(command: str) -> None:
    if command == "sync":
        setup_logging(Console(stderr=True), logging.INFO)
    else:
        fmt = command.split()[1]
        setup_logging(
            Console(stderr=True),
            logging.INFO,
            TelemetrySettings(log_format=fmt),
            default_format="json",
        )
    (handler,) = logging.getLogger().handlers
    key = "k\x1b]0;pwned\x07\n\u009b\u202e"
    line = handler.format(record("%s: failed", key))
    assert "\n" not in line and not raw_controls(line)


# Keys that would be markup, an emoji, or break the markup around them if not escaped.
MARKUP_KEYS = [
    "markup[bold red]x[/bold red]",
    "closing[/]",
    "slash\\[bold]x",
    "trailing\\",
    "emoji:warning:",
    "esc\x1b[31mred",
]


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr().out
    assert not raw_controls(out, layout="\n"), out
    return out


def test_verify_lists_keys_as_they_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    report = VerifyReport()
    for key in MARKUP_KEYS:
        report.add(Verdict.MISSING, key, f"{key} is missing")
    render.verify_report(Console(), report)
    out = printed(capsys)
    for key in MARKUP_KEYS:
        assert f"  missing: {printable(key)} ({printable(key)} is missing)\n" in out, key


def test_failures_and_a_refused_delete_are_shown_as_they_are_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = SyncReport(
        dry_run=False,
        failed=[FailedJob(key, key, f"server said: {key}") for key in MARKUP_KEYS],
        delete_refused="refused: would delete under s3://b/trailing\\",
    )
    render.summary(Console(), report, Settings(pairs=(PairSettings("s3://a/", "s3://b/"),)))
    out = printed(capsys)
    for key in MARKUP_KEYS:
        assert f"  {printable(key)}: server said: {printable(key)}\n" in out, key
    assert "refused: would delete under s3://b/trailing\\\\\n" in out
