"""A local server process: its launch, readiness, log, stop and restart.

Each server runs in its own session and process group, so :meth:`LocalServer.stop` stops
everything it spawned. Servers still running when the interpreter exits are stopped by an
``atexit`` hook. POSIX only.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError

from .endpoint import Endpoint
from .ports import free_port_block

__all__ = [
    "INSTALL_HINT",
    "LocalServer",
    "ServerStartError",
    "find_binary",
    "launch_with_retries",
    "stop_all",
    "write_private",
]

# Servers started without an explicit port retry on a fresh port this many times when they lose
# the race for their port to another process.
_LAUNCH_ATTEMPTS = 5
# The rgw supervisor stops three daemons one after another.
_GRACEFUL_STOP_SECONDS = {"seaweedfs": 10.0, "moto": 5.0, "rclone": 5.0, "rgw": 40.0}
_KILL_WAIT_SECONDS = 10.0
LOG_TAIL_BYTES = 4000

INSTALL_HINT = "pip install -e ./testkit (longbow-testkit, in Longbow's repository)"
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


_LIVE: list[LocalServer] = []
_LIVE_LOCK = threading.Lock()


def find_binary(name: str) -> str:
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
        f"install the local test servers with: {INSTALL_HINT}"
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
        https_endpoint: How to reach it over TLS when it also serves https (``None``
            otherwise); same server, same buckets, another port.
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
        https_endpoint: Endpoint | None = None,
    ) -> None:
        """Describe a server; it is launched by the ``start_*`` functions, not here."""
        self.endpoint = endpoint
        self.https_endpoint = https_endpoint
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

    def log_tail(self, max_bytes: int = LOG_TAIL_BYTES) -> str:
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
        from .moto import reset_moto  # moto.py builds on this module

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
        deadline = time.monotonic() + timeout
        # A server that also serves https is ready once both of its listeners answer.
        for endpoint in (self.endpoint, self.https_endpoint):
            if endpoint is not None:
                self._wait_answers(endpoint, deadline, timeout)

    def _wait_answers(self, endpoint: Endpoint, deadline: float, timeout: float) -> None:
        assert self._proc is not None
        # Short timeouts and no retries: each probe must fail fast so the loop can re-check
        # whether the process died.
        probe = endpoint.client(
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
                        f"{self.kind} server at {endpoint.url} not ready after {timeout:g} s "
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
        print(f"longbow_testkit.servers: {exc}", file=sys.stderr)


atexit.register(_stop_all_at_exit)


def launch_with_retries(
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


def write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner (it holds a secret key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
