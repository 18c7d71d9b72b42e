"""Run a real `longbow sync` process and SIGKILL it once it has recorded some parts."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path


def parts_recorded(db: Path) -> int:
    """Parts the job database holds for open uploads (0 before the schema exists)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def kill_after_parts(argv: list[str], env: dict[str, str], db: Path, parts: int) -> int:
    """Start the sync, SIGKILL it once `parts` parts are recorded; return the parts recorded.

    Fails the test if the process ends on its own first (nothing would be interrupted).
    """
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while parts_recorded(db) < parts and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    "the sync ended before it could be killed: "
                    + (proc.stderr.read().decode()[-500:] if proc.stderr else "")
                )
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return parts_recorded(db)
