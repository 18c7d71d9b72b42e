"""Planning at scale: the merge alone, and a sync's planning end to end into the SQLite job
database, at 10^6 and 10^7 keys, with the cost at 10^8 and 10^9 keys projected from the slope.

The buckets are the test kit's synthetic listing endpoint (`longbow_testkit.synthetic`), in a
process of its own: a source of N keys (`data/000123/object-000123456.bin`, 1,000 a folder)
and a destination of the same keys with every other one missing and every third of another
size, so two keys in three become jobs and every branch of the merge runs. Each measurement
runs in a fresh process, so that its peak RSS (VmHWM) is its own:

- `serve`: the endpoint's own share: the source's listing drained by a trivial client (one
  connection, no parsing), keys/s and the server's CPU per key;
- `merge`: the merge alone (`bench/diff_micro.py`'s measurement: two streamed listings of N
  keys made in chunks, their making timed apart);
- `plan`: the product's planning as `longbow sync` runs it (`s3longbow.sync.plan_all`, with no
  worker: nothing is copied): S3 stores listing both buckets by folder on their threads, the
  merge, and the job database's planning sink. Keys/s (source keys over wall time, and per
  CPU second: the steadier figure on a shared machine), the CPU of the listing threads and of
  the planning thread (and of its ledger writes, `upsert_jobs`), peak RSS (and RSS through
  the run), the database's size, the connections the stores opened.

Then the slope through the sizes measured (least squares) projects wall time, CPU time,
database size and RSS to 10^8 and 10^9 keys, and the listing time at AWS-like latency (pages
of 1,000 keys, `--page-ms` per page per listing thread, `--listing-threads` folders listed at
once per side).

    python bench/scale.py                                   # 10^6 and 10^7 keys
    python bench/scale.py --keys 1000000 --json scale.json
    python bench/scale.py --keys 1000000 --only plan --delay 0.05   # replies held 50 ms
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import diff_micro

from longbow_testkit.synthetic import KeySpace, SyntheticProcess, start_process

MiB = 1024 * 1024
KINDS = ("serve", "merge", "plan")
GOAL_KEYS = 10**8
GOAL_SECONDS = 600.0
PROJECT_TO = (10**8, 10**9)
# The destination: every other key missing, every third of another size.
MISSING_EVERY, DIFFERS_EVERY = 2, 3


def spaces(keys: int) -> dict[str, KeySpace]:
    return {
        "src": KeySpace(keys),
        "dst": KeySpace(keys, missing_every=MISSING_EVERY, differs_every=DIFFERS_EVERY),
    }


def expected_jobs(keys: int) -> int:
    """Keys missing at the destination, and present ones of another size."""
    dst = KeySpace(keys, missing_every=MISSING_EVERY, differs_every=DIFFERS_EVERY)
    missing = keys - dst.present_count
    # Present (odd) indexes that are multiples of 3: 3, 9, 15, ...
    differ = len(range(3, keys, 6))
    return missing + differ


# -- the measurements, each in a child process ---------------------------------------------------


def serve(url: str, keys: int) -> dict[str, Any]:
    """Drain the source's listing with a trivial client: the endpoint's own speed."""
    parts = url.split("//", 1)[1]
    host, port = parts.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    token: str | None = None
    listed = pages = 0
    started = time.perf_counter()
    while True:
        query = "list-type=2&encoding-type=url&prefix=data/"
        if token:
            query += f"&continuation-token={quote(token, safe='')}"
        conn.request("GET", f"/src?{query}")
        body = conn.getresponse().read()
        pages += 1
        listed += body.count(b"<Key>")
        found = re.search(rb"<NextContinuationToken>([^<]*)<", body)
        if found is None:
            break
        token = found.group(1).decode()
    wall = time.perf_counter() - started
    conn.close()
    if listed != keys:
        raise AssertionError(f"the endpoint listed {listed} keys, not {keys}")
    return {"keys": keys, "pages": pages, "wall_s": round(wall, 3)}


def plan(url: str, keys: int, db: Path, listing_threads: int) -> dict[str, Any]:
    """A sync's planning of the pair into a fresh job database, without copying."""
    from s3longbow.config import PairSettings, Settings, SideSettings, TransferSettings
    from s3longbow.jobs.sqlite import JobDatabase, SqliteQueue, new_owner_id
    from s3longbow.pairs import open_pairs, run_signature
    from s3longbow.progress.stats import Stats
    from s3longbow.sync import SyncReport, plan_all

    # The time spent writing the ledger, measured where the planner calls it: wall time, and
    # the planning thread's own CPU (its wall time also counts waits for the listing threads
    # to hand the interpreter back).
    ledger = {"wall": 0.0, "cpu": 0.0, "batches": 0}
    upsert = JobDatabase.upsert_jobs

    def timed_upsert(self: JobDatabase, *args: Any, **kwargs: Any) -> Any:
        began, began_cpu = time.perf_counter(), time.thread_time()
        try:
            return upsert(self, *args, **kwargs)
        finally:
            ledger["wall"] += time.perf_counter() - began
            ledger["cpu"] += time.thread_time() - began_cpu
            ledger["batches"] += 1

    JobDatabase.upsert_jobs = timed_upsert  # type: ignore[method-assign]

    side = SideSettings(endpoint_url=url, access_key_id="bench", secret_access_key="bench")
    settings = Settings(
        pairs=(PairSettings("s3://src/data/", "s3://dst/data/"),),
        source=side,
        destination=side,
        transfer=TransferSettings(listing_threads=listing_threads),
        db_path=db,
    )
    t = settings.transfer
    rss = RssSampler()
    started = time.perf_counter()
    cpu = os.times()
    planner_cpu = time.thread_time()  # this thread plans: the merge, the sink, the ledger
    report = SyncReport(dry_run=False, memory_limit=t.memory_limit)
    with open_pairs(settings) as pairs:
        database = JobDatabase(settings.db_path)
        try:
            run, _ = database.open_run(run_signature(settings), {"bench": "scale"})
            jobs = SqliteQueue(database, run.id, new_owner_id(), t.lease_seconds, threading.Event())
            plan_all(jobs, pairs, settings, Stats(), threading.Event(), report)
            totals = database.totals(run.id)
            # Each folder is listed on a thread of its own, on a connection of its own.
            stores = {id(s): s for p in pairs for s in (p.src_store, p.dst_store)}.values()
            connections = sum(s.data.connections_opened for s in stores)  # S3 stores
        finally:
            database.close()
    wall = time.perf_counter() - started
    done = os.times()
    rss.stop()
    planner_cpu = time.thread_time() - planner_cpu
    cpu_s = done.user - cpu.user + done.system - cpu.system
    if report.fatal is not None:
        raise RuntimeError(f"planning failed: {report.fatal.message}")
    pending, pending_bytes = totals["pending"]
    if pending != expected_jobs(keys) or report.objects_to_copy != pending:
        raise AssertionError(f"{pending} jobs planned, {expected_jobs(keys)} expected")
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {
        "keys": keys,
        "listing_threads": listing_threads,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu_s, 3),
        "keys_per_s": round(keys / wall),
        # On a machine shared with other work, CPU time is the steadier measure.
        "keys_per_cpu_s": round(keys / cpu_s),
        # The listing threads (requests, pages parsed into objects) and the planning thread.
        # Where the pair is planned by key ranges (a store listing in byte order, as this
        # synthetic one does) each range merges and writes on its own thread, so the
        # planning thread's share is small and "listing" holds the ranges' merges too.
        "listing_cpu_s": round(cpu_s - planner_cpu, 3),
        "planner_cpu_s": round(planner_cpu, 3),
        "jobs": pending,
        "job_bytes": pending_bytes,
        "already_present": report.objects_same,
        "ledger_wall_s": round(ledger["wall"], 3),
        "ledger_cpu_s": round(ledger["cpu"], 3),
        "ledger_batches": ledger["batches"],
        "db_bytes": size,
        "connections_opened": connections,
        "peak_rss_mib": round(diff_micro.peak_rss_mib(), 1),
        # RSS through the run, at a tenth, half and the end of it: growth, or a plateau.
        "rss_mib_at": rss.at((0.1, 0.5, 1.0)),
    }


class RssSampler:
    """The process's resident set, read when made, every `every` seconds on a thread of its
    own, and when stopped."""

    def __init__(self, every: float = 0.5) -> None:
        self.samples = [_rss_mib()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(_rss_mib())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(_rss_mib())

    def at(self, fractions: tuple[float, ...]) -> list[float]:
        last = len(self.samples) - 1
        return [round(self.samples[round(f * last)], 1) for f in fractions]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(args: argparse.Namespace) -> int:
    if args.child == "serve":
        result = serve(args.url, args.keys)
    elif args.child == "merge":
        result = dict(diff_micro.measure(args.keys))
    else:
        result = plan(args.url, args.keys, Path(args.db), args.listing_threads)
    print(json.dumps(result))
    return 0


def run_child(kind: str, keys: int, **options: Any) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", kind, "--keys", str(keys)]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} at {keys:,} keys failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the whole run --------------------------------------------------------------------------------


def measure(keys: int, kinds: list[str], args: argparse.Namespace, db_dir: Path) -> dict[str, Any]:
    """Every measurement of `kinds` at `keys` keys, against one endpoint process."""
    out: dict[str, Any] = {"keys": keys, "calibration_cpu_s": calibrate()}
    if "merge" in kinds:
        out["merge"] = run_child("merge", keys)
        report(f"merge {keys:,}", out["merge"])
    if not {"serve", "plan"} & set(kinds):
        return out
    server: SyntheticProcess = start_process(spaces(keys), delay=args.delay)
    with server:
        if "serve" in kinds:
            before = server.cpu_seconds()
            out["serve"] = run_child("serve", keys, url=server.url)
            cpu = server.cpu_seconds() - before
            out["serve"].update(
                keys_per_s=round(keys / out["serve"]["wall_s"]),
                server_cpu_s=round(cpu, 3),
                server_us_per_key=round(cpu / keys * 1e6, 2),
            )
            report(f"serve {keys:,}", out["serve"])
        if "plan" in kinds:
            db = db_dir / f"plan-{keys}.db"
            before = server.cpu_seconds()
            out["plan"] = run_child(
                "plan", keys, url=server.url, db=db, listing_threads=args.listing_threads
            )
            out["plan"]["server_cpu_s"] = round(server.cpu_seconds() - before, 3)
            out["plan"]["delay_s"] = args.delay
            for path in db_dir.glob(db.name + "*"):
                path.unlink()
            report(f"plan {keys:,}", out["plan"])
    return out


def calibrate() -> float:
    """CPU seconds of a fixed piece of pure Python: how fast the machine runs the interpreter
    at the moment. On a shared machine it moved by a quarter within an hour, and CPU seconds
    per key with it; figures measured at different times compare through it."""
    began = time.process_time()
    total = 0
    for number in range(5_000_000):
        total += number
    return round(time.process_time() - began, 3)


def report(what: str, figures: dict[str, Any]) -> None:
    print(f"  {what}: {json.dumps(figures)}", flush=True)


def slope(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(intercept, per key) of the least-squares line through the points (through the
    origin when there is one point)."""
    if len(points) == 1:
        return 0.0, points[0][1] / points[0][0]
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    per_key = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return mean_y - per_key * mean_x, per_key


def projections(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Wall time, CPU time, database size and peak RSS at 10^8 and 10^9 keys from the
    measured slope, and the listing time at AWS-like latency."""
    planned = [r["plan"] for r in results if "plan" in r]
    out: dict[str, Any] = {}
    # Listing at AWS-like latency: each listing thread has one page of 1,000 keys in flight
    # at a time; both sides are listed at once, while the merge and the ledger run.
    per_thread = 1000 / (args.page_ms / 1000)
    listing_rate = per_thread * args.listing_threads
    out["aws_like"] = {
        "page_ms": args.page_ms,
        "listing_threads_per_side": args.listing_threads,
        "listing_keys_per_s_per_side": round(listing_rate),
        "threads_for_goal": -(-GOAL_KEYS // round(per_thread * GOAL_SECONDS)),
    }
    if not planned:
        return out
    wall0, wall_per_key = slope([(p["keys"], p["wall_s"]) for p in planned])
    # The process's CPU: what its wall time is on a machine it has to itself (one
    # interpreter: the listing threads and the planning thread share one core, mostly).
    cpu0, cpu_per_key = slope([(p["keys"], p["cpu_s"]) for p in planned])
    db0, db_per_key = slope([(p["keys"], p["db_bytes"]) for p in planned])
    # RSS has a large fixed part (the interpreter, the libraries): a slope needs two sizes.
    rss = [(p["keys"], p["peak_rss_mib"]) for p in planned]
    rss_per_key = slope(rss)[1] if len(rss) > 1 else None
    out["wall_s_per_million_keys"] = round(wall_per_key * 1e6, 2)
    out["cpu_s_per_million_keys"] = round(cpu_per_key * 1e6, 2)
    out["db_bytes_per_key"] = round(db_per_key, 1)
    out["rss_mib_per_million_keys"] = None if rss_per_key is None else round(rss_per_key * 1e6, 3)
    out["goal_keys_per_s"] = round(GOAL_KEYS / GOAL_SECONDS)
    for keys in PROJECT_TO:
        cpu_bound = cpu0 + cpu_per_key * keys
        listing = keys / listing_rate
        out[str(keys)] = {
            "wall_s": round(wall0 + wall_per_key * keys),
            "cpu_s": round(cpu_bound),
            "db_gib": round((db0 + db_per_key * keys) / 1024**3, 1),
            "peak_rss_mib": None
            if rss_per_key is None
            else round(max(rss)[1] + max(rss_per_key, 0.0) * (keys - max(rss)[0]), 1),
            "aws_like_listing_s": round(listing),
            "aws_like_wall_s": round(max(cpu_bound, listing)),
        }
    return out


def flatness(results: list[dict[str, Any]]) -> dict[str, Any]:
    """From the smallest to the largest size: RSS within 10% and keys/s within 20%, the rate
    by CPU time (wall time moves with the machine's other work; it is reported too)."""
    out: dict[str, Any] = {}
    rates = {
        "merge": ("merge_keys_per_s", "merge_keys_per_cpu_s"),
        "plan": ("keys_per_s", "keys_per_cpu_s"),
    }
    for kind, (by_wall, by_cpu) in rates.items():
        measured = [r for r in results if kind in r]
        if len(measured) < 2:
            continue
        small, large = measured[0][kind], measured[-1][kind]
        # The same fixed work took this much more CPU at the larger size than at the smaller
        # (unknown in files written before it was measured).
        calibrations = [r.get("calibration_cpu_s") for r in (measured[0], measured[-1])]
        slower = None
        if calibrations[0] and calibrations[1]:
            slower = round(calibrations[1] / calibrations[0] - 1, 3)
        rss = large["peak_rss_mib"] / small["peak_rss_mib"] - 1
        wall = large[by_wall] / small[by_wall] - 1
        cpu = large[by_cpu] / small[by_cpu] - 1
        out[kind] = {
            "from_keys": small["keys"],
            "to_keys": large["keys"],
            "rss_change": round(rss, 3),
            "keys_per_s_change": round(wall, 3),
            "keys_per_cpu_s_change": round(cpu, 3),
            "machine_slower_by": slower,
            "flat": abs(rss) <= 0.10 and abs(cpu) <= 0.20,
        }
    return out


def commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def table(document: dict[str, Any]) -> str:
    rows = [
        "| keys | merge keys/s (per CPU s) | merge RSS MiB | plan keys/s | plan CPU s: listing "
        "+ planning (ledger) | plan RSS MiB | DB MiB | server keys/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in document["results"]:
        merge, planned, served = r.get("merge", {}), r.get("plan", {}), r.get("serve", {})
        cpu = "-"
        if planned:
            cpu = (
                f"{planned['cpu_s']:,.1f}: {planned['listing_cpu_s']:,.1f} + "
                f"{planned['planner_cpu_s']:,.1f} ({planned['ledger_cpu_s']:,.1f})"
            )
        rows.append(
            f"| {r['keys']:,} | {_n(merge.get('merge_keys_per_s'))} "
            f"({_n(merge.get('merge_keys_per_cpu_s'))}) "
            f"| {_n(merge.get('peak_rss_mib'))} | {_n(planned.get('keys_per_s'))} | {cpu} "
            f"| {_n(planned.get('peak_rss_mib'))} "
            f"| {_n(planned['db_bytes'] / MiB if planned else None)} "
            f"| {_n(served.get('keys_per_s'))} |"
        )
    lines = ["\n".join(rows)]
    for kind, flat in document["flatness"].items():
        lines.append(
            f"{kind} {flat['from_keys']:,} -> {flat['to_keys']:,} keys: RSS "
            f"{flat['rss_change']:+.1%}, keys per CPU second {flat['keys_per_cpu_s_change']:+.1%}"
            f" (by wall time {flat['keys_per_s_change']:+.1%}"
            + (
                ""
                if flat["machine_slower_by"] is None
                else f"; the machine {flat['machine_slower_by']:+.1%} slower"
            )
            + f"): {'flat' if flat['flat'] else 'NOT flat'}"
        )
    p = document["projections"]
    aws = p["aws_like"]
    for keys in PROJECT_TO:
        if str(keys) in p:
            at = p[str(keys)]
            lines.append(
                f"{keys:.0e} keys: {at['wall_s'] / 60:,.0f} min here ({at['cpu_s'] / 60:,.0f} "
                f"min of CPU), DB {at['db_gib']} GiB, RSS {at['peak_rss_mib']} MiB; at "
                f"{aws['page_ms']} ms a page with "
                f"{aws['listing_threads_per_side']} listing threads a side: listing "
                f"{at['aws_like_listing_s'] / 60:,.1f} min, planning "
                f"{at['aws_like_wall_s'] / 60:,.0f} min"
            )
    if "goal_keys_per_s" in p:
        lines.append(
            f"10^8 keys in 10 minutes needs {p['goal_keys_per_s']:,} keys/s end to end and "
            f"{aws['threads_for_goal']} listing threads a side at {aws['page_ms']} ms a page"
        )
    return "\n".join(lines)


def _n(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--keys",
        default="1000000,10000000",
        help="comma-separated key counts, smallest first (default: 10^6 and 10^7)",
    )
    parser.add_argument("--only", default=",".join(KINDS), help="serve,merge,plan (a subset)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--db-dir", type=Path, help="where the job databases go (a temp dir)")
    parser.add_argument("--listing-threads", type=int, default=8, help="per side (default 8)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each reply waits")
    parser.add_argument(
        "--page-ms", type=float, default=50.0, help="AWS-like page latency for projections"
    )
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.keys = int(args.keys)
        return child(args)

    counts = [int(float(k)) for k in args.keys.split(",")]
    kinds = [k for k in args.only.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"--only: unknown measurement {', '.join(sorted(unknown))}")
    owned = args.db_dir is None
    db_dir = Path(tempfile.mkdtemp(prefix="longbow-scale-")) if owned else args.db_dir
    db_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "bench": "scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "destination": {"missing_every": MISSING_EVERY, "differs_every": DIFFERS_EVERY},
        "listing_threads": args.listing_threads,
        "delay_s": args.delay,
        "results": [],
    }
    started = time.monotonic()
    try:
        for keys in counts:
            print(f"{keys:,} keys", flush=True)
            document["results"].append(measure(keys, kinds, args, db_dir))
    finally:
        if owned:
            shutil.rmtree(db_dir, ignore_errors=True)
    document["minutes"] = round((time.monotonic() - started) / 60, 1)
    document["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    document["flatness"] = flatness(document["results"])
    document["projections"] = projections(document["results"], args)
    print(table(document))
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
