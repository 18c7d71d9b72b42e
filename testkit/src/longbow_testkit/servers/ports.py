"""Free blocks of TCP ports on 127.0.0.1 for the servers to listen on."""

from __future__ import annotations

import collections
import random
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

from .endpoint import LOCALHOST

__all__ = ["SEAWEEDFS_GRPC_OFFSET", "block_ports", "free_port_block"]

#: SeaweedFS serves gRPC for each component on its HTTP port plus this offset.
SEAWEEDFS_GRPC_OFFSET = 10000

_MIN_BASE_PORT = 10000
# P + SEAWEEDFS_GRPC_OFFSET + count must stay a valid port number.
_MAX_BASE_PORT = 55000

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


def block_ports(base: int, count: int, grpc_offset: int | None) -> list[int]:
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
            if _ports_free(block_ports(base, count, grpc_offset)):
                _RECENT_BASES.append(base)
                return base
    raise RuntimeError(f"no free block of {count} port(s) found on {LOCALHOST}")
