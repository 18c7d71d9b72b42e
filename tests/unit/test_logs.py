"""Log lines for operations: JSON lines with their fields, secrets blanked in every format,
log files (opened before anything runs, reopened after rotation), and a command's fatal error
in its log file."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from s3longbow.cli.common import die, setup_logging
from s3longbow.cli.terminal import Console
from s3longbow.display import JsonLogFormatter, PrintableFormatter
from s3longbow.errors import ConfigError
from s3longbow.logsafety import REDACTED, redact, redact_fields
from s3longbow.progress.stats import Stats
from s3longbow.progress.view import LogView
from s3longbow.telemetry import TelemetrySettings

ACCESS_KEY = "AKIALBTESTFAKE7Q2W9X"
SECRET = "lbTestSecret/FAKE+9f8e7d6c5b4a3210zyxwv"
TOKEN = "lbTestSessionToken/FAKE+Qw3rTyQw3rTy"
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


def record(
    message: str, *args: object, fields: dict[str, object] | None = None, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"refused: aws_secret_access_key={SECRET}")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("s3longbow.sync", logging.WARNING, __file__, 1, message, args, exc_info)
    if fields is not None:
        rec.fields = fields
    return rec


def test_a_json_line_is_one_object_with_time_level_logger_message_and_the_fields() -> None:
    line = JsonLogFormatter().format(
        record(
            "%s: done\nsecond line",
            "photos/a.jpg",
            fields={"event": "job", "state": "done", "size": 12, "verified": True},
        )
    )
    assert "\n" not in line  # one line per record, whatever the message holds
    parsed = json.loads(line)
    assert parsed == {
        "time": parsed["time"],
        "level": "WARNING",
        "logger": "s3longbow.sync",
        "message": "photos/a.jpg: done\nsecond line",
        "event": "job",
        "state": "done",
        "size": 12,
        "verified": True,
    }
    moment = datetime.fromisoformat(parsed["time"])
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0


def test_a_json_line_blanks_secrets_in_the_message_the_fields_and_the_traceback() -> None:
    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/"
        f"aws4_request, SignedHeaders=host;x-amz-date, Signature={SIGNATURE}",
        "X-Amz-Security-Token": TOKEN,
    }
    line = JsonLogFormatter().format(
        record(
            "sending %r to %s",
            headers,
            f"/b/k?X-Amz-Credential={ACCESS_KEY}&X-Amz-Signature={SIGNATURE}&partNumber=2",
            fields={
                "secret_access_key": SECRET,
                "session-token": TOKEN,
                "nested": {"password": "hunter2", "note": f"aws_secret_access_key={SECRET}"},
                "keys": [f"key {ACCESS_KEY}"],
                "src": "s3://bucket/photos/a.jpg",
            },
            exc=True,
        )
    )
    for secret in (ACCESS_KEY, SECRET, TOKEN, SIGNATURE, "hunter2"):
        assert secret not in line
    parsed = json.loads(line)
    assert parsed["secret_access_key"] == parsed["session-token"] == REDACTED
    assert parsed["nested"] == {"password": REDACTED, "note": f"aws_secret_access_key={REDACTED}"}
    assert parsed["keys"] == [f"key {REDACTED}"]
    assert parsed["src"] == "s3://bucket/photos/a.jpg"  # what is no secret stays as it was
    assert "partNumber=2" in parsed["message"]
    assert f"ValueError: refused: aws_secret_access_key={REDACTED}" in parsed["error"]


def test_a_text_line_blanks_secrets_too() -> None:
    text = PrintableFormatter("%(levelname)s %(message)s").format(
        record("header Authorization: AWS %s:%s", ACCESS_KEY, SIGNATURE, exc=True)
    )
    assert ACCESS_KEY not in text and SIGNATURE not in text and SECRET not in text
    assert text.startswith(f"WARNING header Authorization: {REDACTED}")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain photos/credential-check.txt: done", "plain photos/credential-check.txt: done"),
        (f"'secret_access_key': '{SECRET}'", f"'secret_access_key': '{REDACTED}'"),
        (f'"session_token": "{TOKEN}", "region"', f'"session_token": "{REDACTED}", "region"'),
        (f"Signature={SIGNATURE}, next", f"Signature={REDACTED}, next"),
        (f"by ASIA{ACCESS_KEY[4:]} now", f"by {REDACTED} now"),
        ("Authorization: Bearer abc def\r\nHost: x", f"Authorization: {REDACTED}\r\nHost: x"),
        ("AKIA in a key is no key id", "AKIA in a key is no key id"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_field_names_that_only_look_like_secrets_keep_their_values() -> None:
    fields = {"credentials_parameter": "/longbow/dst", "credentials_side": "destination"}
    assert redact_fields(fields) == fields


@pytest.fixture()
def restored_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("s3longbow")
    handlers, levels = list(root.handlers), (root.level, ours.level)
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


@pytest.mark.usefixtures("restored_logging")
def test_a_log_file_gets_the_lines_instead_of_standard_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "longbow.log"
    telemetry = TelemetrySettings(log_file=path, log_format="json")
    setup_logging(Console(stderr=True), logging.INFO, telemetry)
    log = logging.getLogger("s3longbow.test")
    log.info("first", extra={"fields": {"event": "start"}})
    log.debug("not at this level")
    # logrotate moves the file away: the next line goes to a new file of the same name.
    path.rename(tmp_path / "longbow.log.1")
    log.warning("after rotation")
    assert capsys.readouterr().err == ""
    (old,) = [json.loads(line) for line in (tmp_path / "longbow.log.1").read_text().splitlines()]
    (new,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (old["message"], old["event"], new["message"]) == ("first", "start", "after rotation")


@pytest.mark.usefixtures("restored_logging")
def test_text_lines_in_a_file_are_plain_lines(tmp_path: Path) -> None:
    path = tmp_path / "longbow.log"
    setup_logging(Console(stderr=True), logging.INFO, TelemetrySettings(log_file=path))
    logging.getLogger("s3longbow.test").info("copied %s", "k\x1b[2J")
    (line,) = path.read_text().splitlines()
    assert line.endswith(" INFO s3longbow.test: copied k\\x1b[2J")


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("where", ["missing/dir/longbow.log", "."])
def test_a_log_file_that_cannot_be_opened_is_a_config_error_naming_it(
    tmp_path: Path, where: str
) -> None:
    path = tmp_path / where
    with pytest.raises(ConfigError) as caught:
        setup_logging(Console(stderr=True), logging.INFO, TelemetrySettings(log_file=path))
    assert str(path) in caught.value.message and "--log-file" in (caught.value.hint or "")


@pytest.mark.usefixtures("restored_logging")
def test_the_error_that_ends_a_command_is_in_its_log_file(tmp_path: Path) -> None:
    path = tmp_path / "longbow.log"
    setup_logging(
        Console(stderr=True), logging.WARNING, TelemetrySettings(log_file=path, log_format="json")
    )
    with pytest.raises(SystemExit) as ended:
        die(Console(stderr=True), ConfigError("no such bucket", hint="create it"), 2)
    assert ended.value.code == 2
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    assert (line["level"], line["message"], line["hint"], line["exit_code"]) == (
        "ERROR",
        "no such bucket",
        "create it",
        2,
    )


def test_a_progress_line_carries_the_counts_as_fields(caplog: pytest.LogCaptureFixture) -> None:
    stats = Stats()
    stats.add_work(3, 300)
    stats.started()
    stats.sent(100)
    stats.finished(100, ok=True, progressed=100)
    with caplog.at_level(logging.WARNING, logger="s3longbow.progress"):
        LogView(stats).render(stats.snapshot())
    (rec,) = caplog.records
    line = json.loads(JsonLogFormatter().format(rec))
    assert line["message"].startswith("listing, 1/3 objects")
    assert (line["event"], line["objects_done"], line["objects_total"], line["bytes_sent"]) == (
        "progress",
        1,
        3,
        100,
    )
    assert line["listing"] is True and line["in_flight"] == 0


def test_every_command_takes_the_log_options_and_sync_worker_and_send_the_metrics_ones() -> None:
    from s3longbow.cli.app import cli

    options = {
        name: {param.name for param in command.params} for name, command in cli.commands.items()
    }
    assert set(options) >= {"sync", "verify", "status", "send", "worker", "cluster-init"}
    for name, params in options.items():
        assert {"log_file", "log_format", "verbose"} <= params, name
        has_metrics = {"metrics_port", "metrics_address", "metrics_file"} <= params
        assert has_metrics == (name in ("sync", "worker", "send")), name
