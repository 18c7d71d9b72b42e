"""Start-up cost: a sync loads only what it uses (no terminal library when its output is no
terminal, no TOML parser without a config file, no metrics library without metrics, no
temporary-folder helpers it does not need)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_RUN = """
import sys
from s3longbow.cli.app import main
sys.argv = ["longbow", "sync", sys.argv[1], sys.argv[2], "--db", sys.argv[3], *sys.argv[4:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = ("rich", "tomllib", "tempfile", "xml.sax", "prometheus_client")
print(code, sorted(m for m in sys.modules if m.startswith(heavy)), file=sys.stderr)
"""


def _sync(tmp_path: Path, *options: str) -> tuple[str, str]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_text("payload")
    result = subprocess.run(
        [sys.executable, "-c", _RUN, str(src), str(dst), str(tmp_path / "jobs.db"), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert (dst / "a.txt").read_text() == "payload"
    return result.stdout, result.stderr.strip().splitlines()[-1]


def test_a_json_sync_imports_no_terminal_library_and_no_parser_it_does_not_use(
    tmp_path: Path,
) -> None:
    stdout, last = _sync(tmp_path, "--json")
    assert last == "0 []"
    assert json.loads(stdout)["copied"] == {"objects": 1, "bytes": len("payload")}


def test_the_human_summary_still_renders_with_rich(tmp_path: Path) -> None:
    stdout, last = _sync(tmp_path)
    assert last.startswith("0 [") and "'rich.console'" in last
    assert "copied" in stdout


_ENTRY = """
import gc, sys
from s3longbow.cli import entry
sys.argv = ["longbow", "--help"]
try:
    entry.main()
except SystemExit:
    pass
print(gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)
"""


def test_the_entry_point_loads_the_command_line_outside_the_collectors_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _ENTRY], capture_output=True, text=True, timeout=60, check=True
    )
    enabled, frozen = result.stderr.strip().splitlines()[-1].split()
    assert "Usage: longbow" in result.stdout
    # Collection is back on for the run, and the objects loaded are out of its passes.
    assert enabled == "True"
    assert int(frozen) > 10_000
