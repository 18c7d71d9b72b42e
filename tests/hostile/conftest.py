"""Fixtures of the hostile-input catalogue: the cluster deployment of tests/cluster, and a
runner of the `longbow` command in a subprocess (the way an operator runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from s3longbow.cli.app import cli

from ..cluster.conftest import Cluster, cluster  # noqa: F401 - the fixture is used here too


def longbow(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `longbow ARGS` in a fresh process; `env` is added to this process's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "s3longbow", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def invoke(*args: str) -> tuple[int, str]:
    """Run `longbow ARGS` in this process (for input refused before any network call)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", str(tmp_path / "jobs.db")]


__all__ = ["Cluster", "db_args", "invoke", "longbow"]
