"""Moving a body from one socket to another as it arrives, for bytes that need no checksum
of ours: a part or object relayed this way is never held whole in memory.

Between plain-HTTP connections on Linux the bytes stay inside the kernel (``splice(2)``): no
buffer to fill, no copy from the kernel and back, no Python loop over its pieces. Over TLS
they must be decrypted and encrypted here, so they pass through one small buffer instead
(:func:`pump`): a part of any size holds :data:`CHUNK` bytes of memory, and a long path's
window-bound streams can be many without a part-sized buffer each.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
from collections.abc import Callable

from s3longbow.stores.base import RELAY_BUFFER

AVAILABLE = hasattr(os, "splice")

# The buffer a body relayed through the process passes through (a few TLS records).
CHUNK = RELAY_BUFFER

# A pipe carries the bytes between the two sockets; a larger one means fewer system calls.
# 1 MiB is the most an unprivileged process may ask for by default (fs.pipe-max-size).
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class SourceFailure(Exception):
    """Reading the source socket failed or it ended early (the cause is chained)."""


def relay(
    src: socket.socket,
    dst: socket.socket,
    length: int,
    moved: Callable[[int], None] | None = None,
) -> None:
    """Move exactly `length` bytes from `src` to `dst`, waiting on each at most its timeout;
    `moved` is told how many bytes each step moved (and may raise to stop: a pace that is
    too slow). Inside the kernel where both are plain sockets, else through :func:`pump`.

    Raises:
        SourceFailure: `src` failed, timed out or closed before `length` bytes.
        OSError: `dst` failed or timed out (TimeoutError); or what `moved` raised.
    """
    # Only plain sockets hand their bytes to the kernel as they are (a TLS socket's are
    # ciphertext).
    if not AVAILABLE or type(src) is not socket.socket or type(dst) is not socket.socket:
        pump(src, dst, length, moved)
        return
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass  # the default 64 KiB pipe works, with more calls
        left = length
        while left:
            try:
                got = _move(src, src.fileno(), write_end, min(left, _PIPE_SIZE), select.POLLIN)
            except OSError as exc:
                raise SourceFailure(f"{type(exc).__name__}: {exc}") from exc
            if not got:
                raise SourceFailure(f"the source closed after {length - left} of {length} bytes")
            count = got
            left -= count
            while count:  # the pipe is emptied before it is filled again
                count -= _move(dst, read_end, dst.fileno(), count, select.POLLOUT)
            if moved is not None:
                moved(got)
    finally:
        os.close(read_end)
        os.close(write_end)


def pump(
    src: socket.socket,
    dst: socket.socket,
    length: int,
    moved: Callable[[int], None] | None = None,
) -> None:
    """:func:`relay` through one buffer of :data:`CHUNK` bytes (any sockets, TLS included).

    Raises:
        SourceFailure: `src` failed, timed out or closed before `length` bytes.
        OSError: `dst` failed or timed out (TimeoutError); or what `moved` raised.
    """
    buffer = bytearray(min(CHUNK, length))
    view = memoryview(buffer)
    left = length
    while left:
        # Fill the buffer (a TLS read returns one record, 16 KiB at most) before a send.
        want = min(len(buffer), left)
        filled = 0
        while filled < want:
            try:
                got = src.recv_into(view[filled:want])
            except OSError as exc:
                raise SourceFailure(f"{type(exc).__name__}: {exc}") from exc
            if not got:
                raise SourceFailure(
                    f"the source closed after {length - left + filled} of {length} bytes"
                )
            filled += got
        dst.sendall(view[:filled])
        left -= filled
        if moved is not None:
            moved(filled)


def _move(sock: socket.socket, fd_in: int, fd_out: int, count: int, event: int) -> int:
    """One splice call, waiting (up to the socket's timeout) while the socket is not ready."""
    while True:
        try:
            return os.splice(fd_in, fd_out, count)
        except BlockingIOError:
            # A socket with a timeout is non-blocking underneath: wait as Python's I/O would.
            poller = select.poll()
            poller.register(sock, event)
            timeout = sock.gettimeout()
            if not poller.poll(None if timeout is None else timeout * 1000):
                raise TimeoutError("timed out") from None
