"""Start and stop real local S3-compatible servers on 127.0.0.1.

Four kinds of server are supported, each a separate implementation with its own quirks:

* ``seaweedfs``: ``weed mini``, a production object store in all-in-one mode.
* ``moto``: ``moto_server``, broad S3 semantics (plus SQS, DynamoDB and SSM on the same port);
  it does not validate Content-MD5.
* ``rclone``: ``rclone serve s3`` over a local directory; validates Content-MD5 but deviates
  from AWS in several ways (ranged GETs answer 200, no versioning, in-memory multipart uploads).
* ``rgw``: Ceph's RADOS Gateway on a throwaway single-node cluster (one monitor, one in-RAM
  OSD); a production server with its own deviations (an empty ETag from
  CompleteMultipartUpload, NoSuchKey for an aborted upload). Needs the Ceph packages and root.

Each server runs in its own session and process group, so :meth:`LocalServer.stop` stops
everything it spawned. Servers still running when the interpreter exits are stopped by an
``atexit`` hook. POSIX only.

Example:
    A throwaway rclone server for one block of code::

        with start_rclone(tmp_dir / "rclone") as server:
            s3 = server.endpoint.client()
            s3.create_bucket(Bucket="demo")
            s3.put_object(Bucket="demo", Key="hello.txt", Body=b"hi")
"""

from __future__ import annotations

import atexit
import collections
import functools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = [
    "CEPH_INSTALL_HINT",
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_REGION",
    "DEFAULT_SECRET_KEY",
    "SEAWEEDFS_GRPC_OFFSET",
    "Endpoint",
    "LocalServer",
    "ServerStartError",
    "free_port_block",
    "missing_ceph_programs",
    "reset_moto",
    "start_moto",
    "start_rclone",
    "start_rgw",
    "start_seaweedfs",
    "stop_all",
]

LOCALHOST = "127.0.0.1"
DEFAULT_ACCESS_KEY = "longbow"
DEFAULT_SECRET_KEY = "longbow-secret"
DEFAULT_REGION = "us-east-1"

#: SeaweedFS serves gRPC for each component on its HTTP port plus this offset.
SEAWEEDFS_GRPC_OFFSET = 10000
# s3, master, volume, filer, admin
_SEAWEEDFS_PORT_COUNT = 5
_SEAWEEDFS_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")

_MIN_BASE_PORT = 10000
# P + SEAWEEDFS_GRPC_OFFSET + count must stay a valid port number.
_MAX_BASE_PORT = 55000
# Servers started without an explicit port retry on a fresh port this many times when they lose
# the race for their port to another process.
_LAUNCH_ATTEMPTS = 5
# The rgw supervisor stops three daemons one after another.
_GRACEFUL_STOP_SECONDS = {"seaweedfs": 10.0, "moto": 5.0, "rclone": 5.0, "rgw": 40.0}
_KILL_WAIT_SECONDS = 10.0
_LOG_TAIL_BYTES = 4000

_INSTALL_HINT = "pip install 's3longbow[servers]'"
_PORT_IN_USE = re.compile(
    r"address already in use|in use by another program|is not available", re.IGNORECASE
)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ServerStartError(RuntimeError):
    """A local server exited or did not become ready in time.

    Attributes:
        log_tail: The last lines the server wrote to its log during this start attempt.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        if log_tail:
            message = f"{message}\n--- server log (tail) ---\n{log_tail}"
        super().__init__(message)
        self.log_tail = log_tail


# --------------------------------------------------------------------------------------------
# Endpoint and boto3 clients
# --------------------------------------------------------------------------------------------

_SESSION_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None


def _shared_session() -> boto3.session.Session:
    """Return the process-wide boto3 session used for local endpoints (caller holds the lock)."""
    global _SESSION
    if _SESSION is None:
        # Isolated from the developer's AWS setup: an AWS_PROFILE naming a missing profile, or
        # settings in ~/.aws/config, must not break or alter traffic to a local test server.
        core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        core.set_config_variable("config_file", os.devnull)
        core.set_config_variable("credentials_file", os.devnull)
        _SESSION = boto3.session.Session(botocore_session=core)
    return _SESSION


@dataclass(frozen=True)
class Endpoint:
    """Where a local S3-compatible server listens and how to authenticate to it.

    Attributes:
        kind: The server implementation: ``"seaweedfs"``, ``"moto"``, ``"rclone"`` or
            ``"rgw"``.
        url: Base URL, e.g. ``"http://127.0.0.1:8333"``.
        access_key: Access key id accepted by the server.
        secret_key: Secret access key accepted by the server.
        region: Region name to sign requests for.
    """

    kind: str
    url: str
    access_key: str
    secret_key: str
    region: str = DEFAULT_REGION

    @property
    def host(self) -> str:
        """The host part of :attr:`url`."""
        return urlsplit(self.url).hostname or LOCALHOST

    @property
    def port(self) -> int:
        """The TCP port of :attr:`url`."""
        port = urlsplit(self.url).port
        if port is None:
            raise ValueError(f"endpoint URL has no port: {self.url}")
        return port

    def client(self, service: str = "s3", **config_kwargs: Any) -> BaseClient:
        """Create a boto3 client for this endpoint.

        S3 clients use path-style addressing and signature v4. Flexible checksums are only
        computed and validated when an operation requires them, since the default CRC32
        handling breaks ranged GETs on some S3-compatible servers. Environment proxies are
        ignored so loopback traffic never leaves the machine.

        Args:
            service: The AWS service name, e.g. ``"s3"``, or ``"sqs"``/``"dynamodb"``/``"ssm"``
                against a moto endpoint.
            **config_kwargs: Extra :class:`botocore.config.Config` options; they override the
                defaults above (an ``s3`` dict is merged with the default one).

        Returns:
            A new botocore client (thread-safe; create one per thread pool, not per call).
        """
        options: dict[str, Any] = {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "proxies": {},
        }
        if service == "s3":
            options["signature_version"] = "s3v4"
            options["s3"] = {"addressing_style": "path"}
        extra_s3 = config_kwargs.pop("s3", None)
        options.update(config_kwargs)
        if extra_s3:
            options["s3"] = {**options.get("s3", {}), **extra_s3}
        # boto3 sessions are not thread-safe; clients created from them are.
        with _SESSION_LOCK:
            return _shared_session().client(
                service,
                endpoint_url=self.url,
                region_name=self.region,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=Config(**options),
            )


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

_PORT_RANDOM = random.SystemRandom()  # immune to tests seeding the global random module
_RECENT_BASES: collections.deque[int] = collections.deque(maxlen=256)
_PORTS_LOCK = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    """Return the kernel's range for outgoing connections' local ports."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _ports_free(ports: Iterable[int]) -> bool:
    """Return whether every port can be bound on 127.0.0.1 right now."""
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            # No SO_REUSEADDR: a port with lingering connections is skipped rather than shared.
            sock.bind((LOCALHOST, port))
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()
    return True


def _block_ports(base: int, count: int, grpc_offset: int | None) -> list[int]:
    ports = list(range(base, base + count))
    if grpc_offset:
        ports += [port + grpc_offset for port in ports]
    return ports


def free_port_block(
    count: int, *, grpc_offset: int | None = SEAWEEDFS_GRPC_OFFSET, attempts: int = 500
) -> int:
    """Find a base port P such that P..P+count-1 are free on 127.0.0.1.

    With ``grpc_offset`` (the default, as SeaweedFS needs), P+offset..P+offset+count-1 must be
    free as well. Blocks are drawn at random, below the kernel's ephemeral range when possible,
    so parallel test processes rarely collide and outgoing connections cannot take the ports.
    The ports are only probed, not held: start the server soon after.

    Args:
        count: Number of consecutive ports needed.
        grpc_offset: Offset of a second block that must also be free, or ``None``.
        attempts: How many random blocks to probe before giving up.

    Returns:
        The base port P (always below 55000).

    Raises:
        RuntimeError: No free block was found.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    shadow = grpc_offset or 0
    ephemeral_low, _ = _ephemeral_range()
    high = min(_MAX_BASE_PORT, ephemeral_low - shadow - count)
    if high - _MIN_BASE_PORT < 1000:
        high = _MAX_BASE_PORT
    with _PORTS_LOCK:
        for _ in range(attempts):
            base = _PORT_RANDOM.randrange(_MIN_BASE_PORT, high)
            # Two calls in a row must not hand out overlapping blocks before either is bound.
            if any(abs(base - recent) < count + 10 for recent in _RECENT_BASES):
                continue
            if _ports_free(_block_ports(base, count, grpc_offset)):
                _RECENT_BASES.append(base)
                return base
    raise RuntimeError(f"no free block of {count} port(s) found on {LOCALHOST}")


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

_LIVE: list[LocalServer] = []
_LIVE_LOCK = threading.Lock()


def _find_binary(name: str) -> str:
    """Locate an executable in the running interpreter's bin directory, then on PATH."""
    # Deliberately not resolved: a venv's python is a symlink and its scripts sit beside it.
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(
        f"{name!r} was not found next to {sys.executable} or on PATH; "
        f"install the local test servers with: {_INSTALL_HINT}"
    )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalServer:
    """One running local server process, created by the ``start_*`` functions.

    Attributes:
        endpoint: How to reach the server.
        data_dir: Directory holding the server's data, configuration and log.
        log_path: The server's combined stdout/stderr.
        ports: Every TCP port the server listens on.
        argv: The command line the server was started with.
    """

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        data_dir: Path,
        argv: Sequence[str],
        log_path: Path,
        ports: Sequence[int],
        env: dict[str, str] | None = None,
        on_stop: Sequence[Callable[[], None]] = (),
    ) -> None:
        """Describe a server; it is launched by the ``start_*`` functions, not here."""
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.log_path = log_path
        self.ports = tuple(ports)
        self.argv = tuple(argv)
        self._env = env
        self._on_stop = tuple(on_stop)
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self._owner_pid = os.getpid()
        self._term_sent = False
        self._stopped = True
        self._start_timeout = 60.0

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalServer {self.kind} {self.endpoint.url} pid={self.pid} {state}>"

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def kind(self) -> str:
        """The server implementation, as in :attr:`Endpoint.kind`."""
        return self.endpoint.kind

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The most recently launched process, kept after stop for inspection."""
        return self._proc

    @property
    def pid(self) -> int | None:
        """PID (and process group id) of the most recently launched process."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """Return the end of what the server logged since its latest launch.

        Args:
            max_bytes: Upper bound on the bytes read from the end of the log.

        Returns:
            The log text with terminal colour codes removed ("" if there is no log).
        """
        try:
            with open(self.log_path, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset, size - max_bytes))
                data = log.read()
        except OSError:
            return ""
        return _ANSI_ESCAPE.sub("", data.decode("utf-8", errors="replace")).strip()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server and everything in its process group. Safe to call repeatedly.

        Sends SIGTERM to the group, waits for a graceful exit, then sends SIGKILL.

        Args:
            timeout: Seconds to wait for a graceful exit; defaults to 10 for SeaweedFS (which
                needs a few seconds to flush) and 5 for the others.

        Raises:
            RuntimeError: The process survived SIGKILL (e.g. stuck in the kernel).
        """
        with self._lock:
            if self._stopped:
                return
            self._begin_stop()
            self._finish_stop(timeout)

    def restart(self, timeout: float | None = None) -> None:
        """Stop the server and start it again with the same ports and data directory.

        Args:
            timeout: Seconds to wait for readiness; defaults to the original start timeout.

        Raises:
            ServerStartError: The server did not come back.
        """
        with self._lock:
            self.stop()
            self._start(self._start_timeout if timeout is None else timeout)

    def reset(self) -> None:
        """Wipe all state of a moto server (buckets, queues, tables, parameters).

        Raises:
            TypeError: The server is not moto (only moto can wipe its state).
        """
        if self.kind != "moto":
            raise TypeError(f"reset() is only supported by moto, not {self.kind}")
        reset_moto(self.endpoint)

    # -- internals -------------------------------------------------------------------------

    def _start(self, timeout: float) -> None:
        """Launch the process and wait until it answers a signed ListBuckets."""
        with self._lock:
            self._start_timeout = timeout
            self._launch()
            try:
                self._wait_ready(timeout)
            except BaseException:
                self.stop()
                raise

    def _launch(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Append so a restart keeps the earlier log; the offset scopes log_tail() to this run.
        self._log_file = open(self.log_path, "ab")  # closed in _finish_stop
        self._log_offset = self._log_file.tell()
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self._env,
                # Own session and process group: stop() can signal everything the server
                # spawned, and a Ctrl+C in the terminal does not hit the server mid-test.
                start_new_session=True,
            )
        except BaseException:
            self._log_file.close()
            self._log_file = None
            raise
        self._owner_pid = os.getpid()
        self._term_sent = False
        self._stopped = False
        with _LIVE_LOCK:
            _LIVE.append(self)

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        # Short timeouts and no retries: each probe must fail fast so the loop can re-check
        # whether the process died.
        probe = self.endpoint.client(
            connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 1}
        )
        last_error = "no probe completed"
        delay = 0.05
        try:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise ServerStartError(
                        f"{self.kind} server exited with code {code} before it was ready "
                        f"(log: {self.log_path})",
                        self.log_tail(),
                    )
                try:
                    probe.list_buckets()
                    return
                except (BotoCoreError, ClientError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    raise ServerStartError(
                        f"{self.kind} server at {self.endpoint.url} not ready after {timeout:g} s "
                        f"(last error: {last_error}; log: {self.log_path})",
                        self.log_tail(),
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
        finally:
            probe.close()

    def _begin_stop(self) -> None:
        """Ask the process group to exit, once."""
        with self._lock:
            if self._stopped or self._term_sent or self._proc is None:
                return
            self._term_sent = True
            if self._proc.poll() is None:
                _signal_group(self._proc.pid, signal.SIGTERM)

    def _finish_stop(self, timeout: float | None) -> None:
        """Wait for the exit requested by _begin_stop, escalate to SIGKILL, then clean up."""
        with self._lock:
            proc = self._proc
            if self._stopped or proc is None:
                return
            grace = _GRACEFUL_STOP_SECONDS.get(self.kind, 5.0) if timeout is None else timeout
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=_KILL_WAIT_SECONDS)
                except subprocess.TimeoutExpired as exc:
                    raise RuntimeError(
                        f"{self.kind} server pid {proc.pid} survived SIGKILL"
                    ) from exc
            # Children that ignored SIGTERM outlive the leader; the group id is not reused
            # while any member is alive, so this reaches only them.
            _signal_group(proc.pid, signal.SIGKILL)
            self._stopped = True
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            with _LIVE_LOCK:
                if self in _LIVE:
                    _LIVE.remove(self)
            for callback in self._on_stop:
                try:
                    callback()
                except OSError:
                    pass


def stop_all(timeout: float | None = None) -> None:
    """Stop every server this process started that is still running.

    All servers are signalled first and then waited for, so slow graceful shutdowns overlap.

    Args:
        timeout: Graceful-stop timeout per server, as in :meth:`LocalServer.stop`.
    """
    with _LIVE_LOCK:
        servers = [server for server in _LIVE if server._owner_pid == os.getpid()]
    for server in servers:
        server._begin_stop()
    failures: list[str] = []
    for server in reversed(servers):
        try:
            server.stop(timeout)
        except Exception as exc:  # keep stopping the others
            failures.append(f"{server!r}: {exc}")
    if failures:
        raise RuntimeError("could not stop: " + "; ".join(failures))


def _stop_all_at_exit() -> None:
    try:
        stop_all()
    except Exception as exc:  # an exit hook must not mask the original failure
        print(f"s3longbow.testing.servers: {exc}", file=sys.stderr)


atexit.register(_stop_all_at_exit)


def _launch_with_retries(
    build: Callable[[int], LocalServer],
    *,
    port: int | None,
    count: int,
    grpc_offset: int | None,
    timeout: float,
) -> LocalServer:
    """Start ``build(base_port)``, retrying on fresh ports if another process took ours."""
    attempts = 1 if port is not None else _LAUNCH_ATTEMPTS
    for attempt in range(attempts):
        base = port if port is not None else free_port_block(count, grpc_offset=grpc_offset)
        server = build(base)
        try:
            server._start(timeout)
        except ServerStartError as exc:
            if attempt + 1 < attempts and _PORT_IN_USE.search(exc.log_tail):
                continue
            raise
        return server
    raise AssertionError("unreachable")


def _write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner (it holds a secret key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


# --------------------------------------------------------------------------------------------
# SeaweedFS
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _weed_mini_flags(weed: str) -> frozenset[str]:
    """Return the flag names ``weed mini`` accepts (empty if the help could not be read)."""
    try:
        result = subprocess.run(
            [weed, "mini", "-h"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"^\s+-([A-Za-z][\w.]*)", result.stdout + result.stderr, re.M))


def _remove_seaweedfs_sockets(ports: Sequence[int]) -> None:
    """Delete the Unix sockets SeaweedFS leaves in the temp dir, named after our ports."""
    for directory in {os.environ.get("TMPDIR") or "/tmp", "/tmp"}:
        for port in ports:
            for path in Path(directory).glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)


def start_seaweedfs(
    data_dir: Path,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    port: int | None = None,
    timeout: float = 60,
) -> LocalServer:
    """Start ``weed mini`` (master, volume, filer, S3 and admin in one process).

    Uses ports P (S3), P+1 (master), P+2 (volume), P+3 (filer), P+4 (admin) and each plus
    10000 for gRPC. Data lives in ``data_dir/"store"``; reusing a directory keeps its buckets
    and open multipart uploads (deleted data is not reclaimed, so prefer a fresh one).

    Args:
        data_dir: Directory for the store, ``s3.json`` identity file and ``seaweedfs.log``.
        access_key: Access key id of the single identity (actions Admin, Read, Write, List,
            Tagging).
        secret_key: Its secret key.
        port: Base port P; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds.

    Returns:
        The running server.

    Raises:
        RuntimeError: ``weed`` is not installed or lacks ``mini``.
        ServerStartError: The server exited or was not ready in time.
    """
    weed = _find_binary("weed")
    data_dir = Path(data_dir).absolute()
    store = data_dir / "store"
    store_was_fresh = not store.exists() or not any(store.iterdir())
    identity = {
        "identities": [
            {
                "name": "longbow",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": list(_SEAWEEDFS_ACTIONS),
            }
        ]
    }
    config_path = data_dir / "s3.json"
    _write_private(config_path, json.dumps(identity, indent=2))

    supported = _weed_mini_flags(weed)
    if supported and not {"s3.port", "master.port", "filer.port"} <= supported:
        raise RuntimeError(
            f"{weed} does not support 'weed mini' with pinned ports; upgrade: {_INSTALL_HINT}"
        )

    def build(base: int) -> LocalServer:
        if store_was_fresh and store.exists():
            # Leftovers of an attempt that lost its ports would tie the store to them.
            shutil.rmtree(store)
        store.mkdir(parents=True, exist_ok=True)
        grpc = base + SEAWEEDFS_GRPC_OFFSET
        required: list[tuple[str, object]] = [
            ("dir", store),
            ("ip", LOCALHOST),
            ("ip.bind", LOCALHOST),
            ("s3.port", base),
            ("master.port", base + 1),
            ("volume.port", base + 2),
            ("filer.port", base + 3),
            ("s3.config", config_path),
            ("master.volumeSizeLimitMB", 64),
        ]
        # Dropped when this weed version lacks them, rather than failing to start.
        optional: list[tuple[str, object]] = [
            ("admin.port", base + 4),
            ("s3.port.grpc", grpc),
            ("master.port.grpc", grpc + 1),
            ("volume.port.grpc", grpc + 2),
            ("filer.port.grpc", grpc + 3),
            ("admin.port.grpc", grpc + 4),
            ("admin.ui", "false"),
            ("webdav", "false"),
            ("s3.port.iceberg", 0),
            ("s3.port.lance", 0),
            # No anonymous usage reports: all traffic stays on 127.0.0.1.
            ("master.telemetry", "false"),
        ]
        flags = required + [(k, v) for k, v in optional if not supported or k in supported]
        ports = _block_ports(base, _SEAWEEDFS_PORT_COUNT, SEAWEEDFS_GRPC_OFFSET)
        return LocalServer(
            endpoint=Endpoint("seaweedfs", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            # -logtostderr: glog would otherwise leave log files in /tmp on every run.
            argv=[weed, "-logtostderr", "mini", *(f"-{name}={value}" for name, value in flags)],
            log_path=data_dir / "seaweedfs.log",
            ports=ports,
            on_stop=[functools.partial(_remove_seaweedfs_sockets, ports)],
        )

    return _launch_with_retries(
        build,
        port=port,
        count=_SEAWEEDFS_PORT_COUNT,
        grpc_offset=SEAWEEDFS_GRPC_OFFSET,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------------
# moto
# --------------------------------------------------------------------------------------------


def reset_moto(endpoint: Endpoint, timeout: float = 10) -> None:
    """Wipe all state of a moto server.

    Args:
        endpoint: The moto server's endpoint.
        timeout: Seconds to wait for the answer.

    Raises:
        urllib.error.URLError: The server did not accept the reset.
    """
    # An explicit empty ProxyHandler: loopback requests must not go through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{endpoint.url}/moto-api/reset", data=b"", method="POST")
    with opener.open(request, timeout=timeout) as response:
        response.read()


def start_moto(
    *,
    port: int | None = None,
    timeout: float = 30,
    data_dir: Path | None = None,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
) -> LocalServer:
    """Start ``moto_server`` (S3, SQS, DynamoDB, SSM, ... on one port; state in memory).

    Any credentials are accepted; ``access_key``/``secret_key`` only fill in the endpoint.

    Args:
        port: TCP port; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds.
        data_dir: Where to write ``moto.log``; a temporary directory, removed on stop, when
            ``None``.
        access_key: Access key id reported by the endpoint.
        secret_key: Secret key reported by the endpoint.

    Returns:
        The running server.

    Raises:
        RuntimeError: ``moto_server`` is not installed.
        ServerStartError: The server exited or was not ready in time.
    """
    moto_server = _find_binary("moto_server")
    on_stop: list[Callable[[], None]] = []
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="s3longbow-moto-"))
        on_stop.append(functools.partial(shutil.rmtree, data_dir, ignore_errors=True))
    data_dir = Path(data_dir).absolute()
    # Unbuffered so the log is complete when a failed start is reported.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def build(base: int) -> LocalServer:
        return LocalServer(
            endpoint=Endpoint("moto", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            argv=[moto_server, "-H", LOCALHOST, "-p", str(base)],
            log_path=data_dir / "moto.log",
            ports=[base],
            env=env,
            on_stop=on_stop,
        )

    try:
        return _launch_with_retries(build, port=port, count=1, grpc_offset=None, timeout=timeout)
    except BaseException:
        for callback in on_stop:
            callback()
        raise


# --------------------------------------------------------------------------------------------
# rclone
# --------------------------------------------------------------------------------------------


def start_rclone(
    data_dir: Path,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    port: int | None = None,
    timeout: float = 30,
) -> LocalServer:
    """Start ``rclone serve s3`` over ``data_dir/"root"`` (each bucket is a directory there).

    Multipart uploads are held in memory and lost on restart.

    Args:
        data_dir: Directory for ``root/``, rclone's ``cache/`` and ``rclone.log``.
        access_key: Access key id accepted by the server (no commas).
        secret_key: Its secret key (no commas).
        port: TCP port; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds.

    Returns:
        The running server.

    Raises:
        RuntimeError: ``rclone`` is not installed.
        ValueError: A key contains a comma (rclone's ``--auth-key`` separator).
        ServerStartError: The server exited or was not ready in time.
    """
    if "," in access_key or "," in secret_key:
        raise ValueError("rclone auth keys cannot contain ','")
    rclone = _find_binary("rclone")
    data_dir = Path(data_dir).absolute()
    root = data_dir / "root"
    root.mkdir(parents=True, exist_ok=True)

    def build(base: int) -> LocalServer:
        return LocalServer(
            endpoint=Endpoint("rclone", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            argv=[
                rclone,
                "serve",
                "s3",
                # No user config, and caches inside data_dir rather than in the home directory.
                "--config",
                os.devnull,
                "--cache-dir",
                str(data_dir / "cache"),
                "--addr",
                f"{LOCALHOST}:{base}",
                "--auth-key",
                f"{access_key},{secret_key}",
                str(root),
            ],
            log_path=data_dir / "rclone.log",
            ports=[base],
        )

    return _launch_with_retries(build, port=port, count=1, grpc_offset=None, timeout=timeout)


# --------------------------------------------------------------------------------------------
# Ceph RADOS Gateway
# --------------------------------------------------------------------------------------------

_CEPH_PROGRAMS = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")
CEPH_INSTALL_HINT = (
    "as root on Debian/Ubuntu: apt-get install --no-install-recommends "
    "ceph-mon ceph-osd radosgw ceph-common"
)
# P: the S3 endpoint (beast frontend), P+1: the monitor (msgr v2 only).
_RGW_PORT_COUNT = 2
_RGW_USER = "longbow"
# A memstore OSD keeps objects in RAM; this caps what it may use, it is not allocated upfront.
_RGW_MEMSTORE_BYTES = 4 * 1024**3
_CEPH_STEP_SECONDS = 90.0
# A status query fails fast while the monitor is not up yet, so the wait can poll again.
_CEPH_POLL = ("ceph", "--connect-timeout", "5")


def missing_ceph_programs() -> list[str]:
    """Return the Ceph programs :func:`start_rgw` needs that are not on PATH."""
    return [name for name in _CEPH_PROGRAMS if shutil.which(name) is None]


def start_rgw(
    data_dir: Path,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    port: int | None = None,
    timeout: float = 180,
    memstore_bytes: int = _RGW_MEMSTORE_BYTES,
) -> LocalServer:
    """Start a throwaway single-node Ceph cluster with a RADOS Gateway S3 endpoint.

    One monitor, one OSD keeping its objects in RAM (memstore) and one radosgw, without
    authentication between them, all bound to 127.0.0.1 and supervised by one process, so the
    server handle stops them together. Every launch (a restart too) builds a fresh, empty
    cluster under ``data_dir/"cluster"``. Uses ports P (S3) and P+1 (monitor).

    Needs the Debian packages ``ceph-mon ceph-osd radosgw ceph-common`` and, in practice, root.

    Args:
        data_dir: Directory for ``ceph.conf``, the cluster's state and logs, and ``rgw.log``.
        access_key: Access key id of the S3 user that is created.
        secret_key: Its secret key.
        port: Base port P; chosen automatically when ``None``.
        timeout: Seconds to wait until a signed ListBuckets succeeds (~15 s on an idle
            machine).
        memstore_bytes: Most RAM the OSD may use for objects.

    Returns:
        The running server.

    Raises:
        RuntimeError: A Ceph program is not installed.
        ServerStartError: The cluster exited or was not ready in time.
    """
    missing = missing_ceph_programs()
    if missing:
        raise RuntimeError(
            f"Ceph is not installed ({', '.join(missing)} not on PATH); install it "
            f"{CEPH_INSTALL_HINT}"
        )
    data_dir = Path(data_dir).absolute()
    settings_path = data_dir / "rgw-cluster.json"

    def build(base: int) -> LocalServer:
        settings = {
            "dir": str(data_dir),
            "rgw_port": base,
            "mon_port": base + 1,
            "memstore_bytes": memstore_bytes,
            "access_key": access_key,
            "secret_key": secret_key,
        }
        _write_private(settings_path, json.dumps(settings))
        return LocalServer(
            endpoint=Endpoint("rgw", f"http://{LOCALHOST}:{base}", access_key, secret_key),
            data_dir=data_dir,
            argv=[sys.executable, "-m", __name__, "rgw-cluster", str(settings_path)],
            log_path=data_dir / "rgw.log",
            ports=[base, base + 1],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    return _launch_with_retries(
        build, port=port, count=_RGW_PORT_COUNT, grpc_offset=None, timeout=timeout
    )


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
                text = path.read_bytes()[-_LOG_TAIL_BYTES:].decode("utf-8", "replace")
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
        _write_private(self.conf, _ceph_conf(self.settings, self.dir))
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
    sys.exit(f"usage: python -m {__spec__.name if __spec__ else 'servers'} rgw-cluster SETTINGS")
