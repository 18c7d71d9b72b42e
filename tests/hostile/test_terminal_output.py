"""Keys that carry terminal escape sequences and other control characters, printed by real
`longbow` processes: a dry run, a sync whose jobs fail, `verify` with mismatches, `status`,
their logs, and a cluster worker's JSON logs and `status --cluster`.

Nothing a key holds may reach a terminal raw (a window title, a cleared screen, fake colours,
a line rewritten by a carriage return, text reversed by a bidi override, rich markup): people
see each control character escaped, while `--json` keeps the exact key."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import quote_plus

from ..cluster.conftest import SRC_PREFIX, Cluster
from ..conftest import Bucket, cli_env, endpoint_args
from .conftest import db_args, longbow

EXIT_JOBS_FAILED = 1

# name -> (key fragment, how people must see it)
HOSTILE = {
    "window title": ("title\x1b]0;pwned\x07", "title\\x1b]0;pwned\\x07"),
    "clear screen": ("clear\x1b[2J", "clear\\x1b[2J"),
    "fake colour": ("red\x1b[31mred", "red\\x1b[31mred"),
    "bell": ("bell\x07", "bell\\x07"),
    "carriage return": ("cr\rfake", "cr\\rfake"),
    "newline": ("new\nline", "new\\nline"),
    "C1 CSI": ("csi\u009b2J", "csi\\x9b2J"),
    "bidi override": ("rlo\u202etxt.exe", "rlo\\u202etxt.exe"),
    "delete": ("del\x7f", "del\\x7f"),
    "rich markup": ("markup[bold red]x[/bold red]", "markup[bold red]x[/bold red]"),
    "emoji code": ("emoji:warning:", "emoji:warning:"),
}

# The controls a key may not bring: C0 and C1 controls, DEL, format controls (bidi),
# surrogates and the Unicode line separators.
_CONTROL = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def raw_controls(text: str, layout: str = "\n") -> list[str]:
    """The control characters in `text` other than those of the program's own `layout`."""
    return sorted(
        {repr(ch) for ch in text if ch not in layout and unicodedata.category(ch) in _CONTROL}
    )


def assert_shown_escaped(text: str, shown: list[str]) -> None:
    assert not raw_controls(text), (raw_controls(text), text)
    for form in shown:
        assert form in text, (form, text)


def sync_args(src: Bucket, dst: str, tmp_path: Path, *more: str) -> list[str]:
    return ["sync", src.url + "/", dst, *db_args(tmp_path), *more]


def test_a_dry_run_shows_the_keys_it_would_copy_and_delete_escaped(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for fragment, _ in HOSTILE.values():
        src_bucket.put(f"copy/{fragment}", b"new")
        dst_bucket.put(f"gone/{fragment}", b"old")
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)
    done = longbow(
        *sync_args(src_bucket, dst_bucket.url + "/", tmp_path, "--dry-run", "--delete", "-vv"),
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert_shown_escaped(done.stdout, [f"copy/{shown}" for _, shown in HOSTILE.values()])
    assert_shown_escaped(done.stdout, [f"delete gone/{shown}" for _, shown in HOSTILE.values()])
    assert not raw_controls(done.stderr), done.stderr


def test_failed_jobs_their_log_lines_and_status_show_keys_escaped(
    src_bucket: Bucket, tmp_path: Path
) -> None:
    # The source prefix is hostile too: `status --all` shows it.
    prefix = "p\x1b[2J/"
    keys = [f"{prefix}q/{fragment}" for fragment, _ in HOSTILE.values()]
    for key in keys:
        src_bucket.put(key, b"data")
    shown = [f"p\\x1b[2J/q/{form}" for _, form in HOSTILE.values()]
    # A file where the copies need a folder: every job fails, its reason naming the key.
    out = tmp_path / "out"
    out.mkdir()
    (out / "q").write_text("a file")
    ep = src_bucket.endpoint
    args = [src_bucket.url + "/" + prefix, str(out), *db_args(tmp_path), *endpoint_args(ep, None)]

    done = longbow("sync", *args, "-vv", env=cli_env(ep, None))
    assert done.returncode == EXIT_JOBS_FAILED, done.stderr
    assert "failed job(s)" in done.stdout
    assert_shown_escaped(done.stdout, [f"  {form}: cannot write" for form in shown])
    # Each failure is logged too, with the key escaped.
    assert_shown_escaped(done.stderr, [f"{form}: failed: cannot write" for form in shown])

    status = longbow("status", *db_args(tmp_path))
    assert status.returncode == EXIT_JOBS_FAILED, status.stderr
    assert_shown_escaped(status.stdout, [f"  {form}: " for form in shown])
    runs = longbow("status", "--all", *db_args(tmp_path))
    assert_shown_escaped(runs.stdout, ["p\\x1b[2J/"])

    # Machine-readable output keeps the exact keys; JSON escapes their controls itself.
    for command in (
        ["status", *db_args(tmp_path), "--json"],
        ["sync", *args, "--json"],
    ):
        done = longbow(*command, env=cli_env(ep, None))
        assert not raw_controls(done.stdout), done.stdout
        failed = json.loads(done.stdout)["failed"]
        assert sorted(f["key"] for f in failed) == sorted(keys)


def test_verify_shows_missing_different_and_extra_keys_escaped(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for fragment, _ in HOSTILE.values():
        src_bucket.put(f"missing/{fragment}", b"a")
        src_bucket.put(f"different/{fragment}", b"a")
        dst_bucket.put(f"different/{fragment}", b"bb")
        dst_bucket.put(f"extra/{fragment}", b"c")
    args = [
        "verify",
        src_bucket.url + "/",
        dst_bucket.url + "/",
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
    ]
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)
    done = longbow(*args, "-vv", env=env)
    assert done.returncode == EXIT_JOBS_FAILED, done.stderr
    shown = [form for _, form in HOSTILE.values()]
    assert_shown_escaped(done.stdout, [f"missing: missing/{form} (" for form in shown])
    assert_shown_escaped(done.stdout, [f"different: different/{form} (size" for form in shown])
    assert_shown_escaped(done.stdout, [f"extra: extra/{form} (" for form in shown])
    assert not raw_controls(done.stderr), done.stderr

    done = longbow(*args, "--json", env=env)
    assert not raw_controls(done.stdout), done.stdout
    report = json.loads(done.stdout)
    assert sorted(item["key"] for item in report["extra"]) == sorted(
        f"extra/{fragment}" for fragment, _ in HOSTILE.values()
    )


def in_terminal(*args: str, env: dict[str, str]) -> str:
    """Run `longbow ARGS` with a pseudo-terminal as its output: what a person's terminal gets."""
    main, secondary = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "s3longbow", *args],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "250", **env},
    )
    os.close(secondary)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 120)
            assert ready, "no output for 120 s"
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other end is closed: the process has ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) in (0, EXIT_JOBS_FAILED)
    finally:
        process.kill()  # no-op once it has ended
        os.close(main)
    return b"".join(chunks).decode()


# Rich's own styles (SGR), the progress display's cursor control, and the carriage returns
# of the terminal's line discipline and of the progress display.
_OWN_SEQUENCES = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\?25[lh]|\x1b\[[0-9]*[AK]|\r")


def test_on_a_terminal_the_keys_carry_no_escape_sequence(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for fragment, _ in HOSTILE.values():
        src_bucket.put(f"q/{fragment}", b"a")
        dst_bucket.put(f"q/{fragment}", b"bb")
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)
    eps = endpoint_args(src_bucket.endpoint, dst_bucket.endpoint)
    seen = in_terminal("verify", src_bucket.url + "/", dst_bucket.url + "/", *eps, env=env)
    out = tmp_path / "out"
    out.mkdir()
    (out / "q").write_text("a file")  # every job fails: logged, then listed
    synced = in_terminal(
        *sync_args(src_bucket, str(out), tmp_path, "-vv"),
        *endpoint_args(src_bucket.endpoint, None),
        env=env,
    )
    for text in (seen, synced):
        for name, (fragment, _) in HOSTILE.items():
            if name not in ("rich markup", "emoji code"):  # shown as they are: no controls
                assert fragment not in text, (fragment, text)
        assert not raw_controls(_OWN_SEQUENCES.sub("", text)), text
    for _, form in HOSTILE.values():
        assert f"different: q/{form} (size" in seen, (form, seen)
        assert f"  q/{form}: cannot write" in synced, (form, synced)


def record(bucket: str, key: str) -> dict[str, object]:
    """An S3 event record; the key form-encoded as S3 writes it."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/"), "size": 3}},
    }


def test_a_cluster_worker_logs_and_status_show_keys_escaped(cluster: Cluster) -> None:
    fragments = [fragment for fragment, _ in HOSTILE.values()]
    records = [
        # Under the pair's prefix, but not there: the worker records the job failed, naming it.
        *(record(cluster.src.name, SRC_PREFIX + fragment) for fragment in fragments),
        # A bucket of no pair: the message is dead-lettered with a reason naming the key.
        *(record("no-such-pair", fragment) for fragment in fragments),
    ]
    for one in records:
        cluster.send_raw(json.dumps({"Records": [one]}))
    worker = cluster.run("worker", "--config", str(cluster.config_path), "--exit-when-idle")
    assert worker.returncode == 0, worker.stderr
    assert not raw_controls(worker.stderr), worker.stderr
    logged = [json.loads(line) for line in worker.stderr.splitlines()]
    messages = "\n".join(str(line.get("message")) for line in logged)
    for fragment in fragments:  # the exact key, once the JSON is read
        assert f"{SRC_PREFIX}{fragment}: the source object no longer exists" in messages, fragment
        assert f"s3://no-such-pair/{fragment}" in messages, fragment

    status = cluster.run("status", "--cluster", "--config", str(cluster.config_path))
    assert status.returncode == EXIT_JOBS_FAILED, status.stderr
    assert_shown_escaped(
        status.stdout, [f"s3://no-such-pair/{form}" for _, form in HOSTILE.values()]
    )


def test_the_catalogue_is_in_the_readme() -> None:
    readme = (Path(__file__).parent / "README.md").read_text()
    for name in HOSTILE:
        assert f"| {name} |" in readme, name
