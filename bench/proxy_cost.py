"""What the latency proxy costs: its CPU seconds per GiB relayed, each way.

The proxy (``longbow_testkit.latencyproxy``) runs in a process of its own in front of a plain
TCP server of this script; a few connections push bytes through it upstream (as uploads do),
then pull bytes downstream (as downloads do). The proxy's CPU (user + sys, from /proc) over
each phase is divided by the bytes relayed.

    python bench/proxy_cost.py [--gib 1] [--connections 8] [--delay-ms 25] [--window 16MiB]

The window and delay should not cap the rate much (the default 16 MiB per 50 ms round trip
allows ~335 MB/s per connection): the figure to read is CPU per GiB, not speed.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections.abc import Callable

from longbow_testkit.latencyproxy import _size, start_process

GiB = 1024**3
CHUNK = 1024 * 1024


def serve(listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def phase(port: int, connections: int, per_connection: int, upload: bool) -> float:
    """Move ``per_connection`` bytes over each connection through the proxy; return seconds."""
    block = b"\x5a" * CHUNK

    def one() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # The first byte says which way the bytes go; the count follows.
            sock.sendall((b"U" if upload else b"D") + per_connection.to_bytes(8, "big"))
            if upload:
                left = per_connection
                while left:
                    left -= sock.send(block[: min(CHUNK, left)])
                sock.shutdown(socket.SHUT_WR)
                sock.recv(1)
            else:
                got = 0
                while got < per_connection:
                    data = sock.recv(CHUNK)
                    if not data:
                        raise SystemExit("download ended early")
                    got += len(data)

    threads = [threading.Thread(target=one) for _ in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def handle(conn: socket.socket) -> None:
    """The far end: swallow an upload or send a download of the size asked for."""
    with conn:
        head = b""
        while len(head) < 9:
            data = conn.recv(9 - len(head))
            if not data:
                return
            head += data
        size = int.from_bytes(head[1:], "big")
        if head[:1] == b"U":
            while conn.recv(CHUNK):
                pass
            conn.sendall(b"k")
        else:
            block = b"\xa5" * CHUNK
            left = size
            while left:
                left -= conn.send(block[: min(CHUNK, left)])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="GiB each way")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay")
    parser.add_argument("--window", type=_size, default=16 * 1024 * 1024)
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    threading.Thread(target=serve, args=(listener, handle), daemon=True).start()
    per_connection = int(args.gib * GiB / args.connections)
    total = per_connection * args.connections
    proxy = start_process(
        listener.getsockname()[:2], delay=args.delay_ms / 1000, window=args.window
    )
    report: dict[str, object] = {
        "gib": total / GiB,
        "connections": args.connections,
        "delay_ms": args.delay_ms,
        "window": args.window,
    }
    try:
        for name, upload in (("upload", True), ("download", False)):
            before = proxy.cpu_seconds()
            wall = phase(proxy.port, args.connections, per_connection, upload)
            cpu = proxy.cpu_seconds() - before
            report[name] = {
                "wall_s": round(wall, 2),
                "mb_per_s": round(total / wall / 1e6, 1),
                "proxy_cpu_s": round(cpu, 2),
                "proxy_cpu_s_per_gib": round(cpu / (total / GiB), 3),
            }
            print(f"{name}: {json.dumps(report[name])}", flush=True)
    finally:
        stats = proxy.stop()
        listener.close()
    report["relayed"] = {"up": stats.bytes_up, "down": stats.bytes_down}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
