"""Run a command; after its own output, print one JSON line: wall time, CPU time, peak RSS.

Used by the benchmark so that the measured process is forked from a small parent (a child
forked from a large process reports that process's peak RSS as its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    started = time.monotonic()
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    sys.stdout.write(out.decode())
    sys.stdout.write("\n")
    # ru_maxrss is in KiB on Linux.
    record = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }
    sys.stdout.write(json.dumps(record) + "\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
