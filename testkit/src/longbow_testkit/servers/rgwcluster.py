"""The supervisor process of the throwaway Ceph cluster that :func:`~.rgw.start_rgw` launches
(``python -m longbow_testkit.servers.rgwcluster rgw-cluster SETTINGS``): it builds the cluster,
runs its monitor, OSD and gateway in the foreground, and stops them on SIGTERM.

Nothing imports this module: it runs only as ``__main__``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .endpoint import LOCALHOST
from .process import LOG_TAIL_BYTES, write_private

_RGW_USER = "longbow"
_CEPH_STEP_SECONDS = 90.0
# A status query fails fast while the monitor is not up yet, so the wait can poll again.
_CEPH_POLL = ("ceph", "--connect-timeout", "5")


class _ClusterStop(Exception):
    """SIGTERM reached the cluster supervisor."""


def _ceph_conf(settings: dict[str, Any], cluster: Path) -> str:
    """The configuration shared by every daemon and command of the throwaway cluster."""
    return f"""[global]
fsid = {settings["fsid"]}
mon host = v2:{LOCALHOST}:{settings["mon_port"]}
public addr = {LOCALHOST}
cluster addr = {LOCALHOST}
ms bind msgr1 = false
# No cephx: a loopback-only throwaway cluster. With auth none the monitor still insists on a
# connection mode, hence crc.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
keyring = /dev/null
run dir = {cluster}/run
admin socket = {cluster}/run/$name.asok
log file = {cluster}/log/$name.log
log to stderr = false
err to stderr = false
# One OSD: pools of one replica, few placement groups, no health warnings about either.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon warn on insecure global id reclaim allowed = false

[mon]
mon data = {cluster}/mon
mon data avail crit = 0
mon data avail warn = 0

[osd]
osd data = {cluster}/osd
osd objectstore = memstore
memstore device bytes = {settings["memstore_bytes"]}
osd memory target = 1073741824

[client.rgw.longbow]
rgw frontends = beast endpoint={LOCALHOST}:{settings["rgw_port"]}
rgw data = {cluster}/rgw
debug rgw = 0/0
# Deleted and overwritten objects stay in RAM until garbage collection: run it every minute
# rather than every two hours.
rgw gc obj min wait = 60
rgw gc processor period = 60
"""


class _Cluster:
    """The cluster supervisor's side: builds the cluster, runs its daemons, stops them."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.dir = Path(settings["dir"]) / "cluster"
        self.conf = Path(settings["dir"]) / "ceph.conf"
        self.daemons: list[tuple[str, subprocess.Popen[bytes]]] = []

    def say(self, message: str) -> None:
        print(f"[rgw-cluster {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def command(self, *argv: str, quiet: bool = False) -> str:
        """Run a Ceph tool against this cluster; return its stdout or fail with its stderr."""
        try:
            done = subprocess.run(
                [*argv, "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_CEPH_STEP_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{argv[0]} {argv[1]} did not finish") from exc
        if done.returncode != 0:
            if quiet:
                raise RuntimeError(done.stderr.strip()[-1000:])
            raise RuntimeError(
                f"{' '.join(argv[:3])} failed with code {done.returncode}: "
                f"{done.stderr.strip()[-2000:]}"
            )
        return done.stdout

    def spawn(self, name: str, *argv: str) -> None:
        """Start a daemon in the foreground, in this process group, logging to its own file."""
        with open(self.dir / "log" / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(
                [*argv, "-f", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.daemons.append((name, proc))

    def check_daemons(self) -> None:
        for name, proc in self.daemons:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with code {code}\n{self.daemon_log(name)}")

    def daemon_log(self, name: str) -> str:
        """The end of what a daemon wrote (its own log, then its stdout)."""
        parts = []
        for path in sorted((self.dir / "log").glob(f"*{name}*")):
            try:
                text = path.read_bytes()[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
            except OSError:
                continue
            parts.append(f"--- {path.name} ---\n{text.strip()}")
        return "\n".join(parts)

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _CEPH_STEP_SECONDS
        while True:
            self.check_daemons()
            try:
                if ready():
                    self.say(f"{what}: ready")
                    return
            except RuntimeError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{what}: not ready after {_CEPH_STEP_SECONDS:g} s")
            time.sleep(0.2)

    def osd_up(self) -> bool:
        dump = json.loads(self.command(*_CEPH_POLL, "osd", "dump", "--format=json", quiet=True))
        return any(osd.get("up") == 1 for osd in dump.get("osds", ()))

    def build_and_run(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ("run", "log", "mon", "osd", "rgw"):
            (self.dir / sub).mkdir(parents=True)
        write_private(self.conf, _ceph_conf(self.settings, self.dir))
        monmap = self.dir / "monmap"
        mon_addr = f"[v2:{LOCALHOST}:{self.settings['mon_port']}]"
        self.command(
            "monmaptool",
            "--create",
            "--fsid",
            self.settings["fsid"],
            "--addv",
            "a",
            mon_addr,
            str(monmap),
        )
        self.command("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        self.spawn("mon.a", "ceph-mon", "-i", "a")
        self.wait_for("monitor", lambda: bool(self.command(*_CEPH_POLL, "mon", "stat", quiet=True)))

        osd_uuid = str(uuid.uuid4())
        osd_id = self.command("ceph", "osd", "new", osd_uuid).strip()
        self.command("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, "--no-mon-config")
        self.spawn(f"osd.{osd_id}", "ceph-osd", "-i", osd_id)
        self.wait_for(f"osd.{osd_id}", self.osd_up)

        # The S3 user exists before the gateway answers, so a signed request that succeeds
        # means the whole stack is ready. This also creates the default zone and its pools.
        self.command(
            "radosgw-admin",
            "user",
            "create",
            f"--uid={_RGW_USER}",
            f"--display-name={_RGW_USER}",
            f"--access-key={self.settings['access_key']}",
            f"--secret-key={self.settings['secret_key']}",
        )
        self.say(f"S3 user {_RGW_USER!r} created")
        self.spawn("client.rgw.longbow", "radosgw", "-n", "client.rgw.longbow")
        self.say(f"radosgw starting on {LOCALHOST}:{self.settings['rgw_port']}")
        while True:
            self.check_daemons()
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the gateway, then the OSD, then the monitor: each talks to the next one down
        while it shuts down."""
        for name, proc in reversed(self.daemons):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.say(f"{name} ignored SIGTERM; killing it")
                proc.kill()
                proc.wait()


def _run_rgw_cluster(settings_path: str) -> int:
    """Entry point of the supervisor process that :func:`start_rgw` launches."""

    def on_term(signum: int, frame: object) -> None:
        raise _ClusterStop

    signal.signal(signal.SIGTERM, on_term)
    settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
    settings["fsid"] = str(uuid.uuid4())
    cluster = _Cluster(settings)
    try:
        cluster.build_and_run()
    except _ClusterStop:
        cluster.say("stopping")
        return 0
    except RuntimeError as exc:
        cluster.say(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "rgw-cluster":
        sys.exit(_run_rgw_cluster(sys.argv[2]))
    sys.exit(f"usage: python -m {__spec__.name if __spec__ else 'rgwcluster'} rgw-cluster SETTINGS")
