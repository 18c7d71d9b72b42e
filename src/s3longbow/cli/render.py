"""Rendering of summaries, status tables and errors. No decisions are made here."""

from __future__ import annotations

from s3longbow.cli.terminal import Console, escape, new_table
from s3longbow.config import Settings, format_size
from s3longbow.errors import LongbowError
from s3longbow.jobs.sqlite import JobDatabase, Run
from s3longbow.plan.estimate import MULTIPART, SERVER_COPY, SERVER_PARTS, SINGLE, Kind
from s3longbow.plan.preflight import Estimate
from s3longbow.plan.prices import BUILT_IN
from s3longbow.sync import SyncReport
from s3longbow.transfer.archive import NEEDS_RESTORE_HINT, RESTORING_HINT
from s3longbow.verify import VerifyReport

_STATES = ("done", "pending", "in_progress", "failed", "skipped", "archived")


def error(console: Console, exc: LongbowError) -> None:
    """An error in one or two lines: what went wrong, then how to fix it."""
    console.print(
        f"[bold red]error:[/bold red] {escape(exc.message)}", highlight=False, soft_wrap=True
    )
    if exc.hint:
        console.print(f"[bold]hint:[/bold] {escape(exc.hint)}", highlight=False, soft_wrap=True)


def summary(console: Console, report: SyncReport, settings: Settings) -> None:
    """The table printed at the end of a sync or a dry run."""
    if report.dry_run:
        table = new_table(title="Dry run: nothing was changed", title_justify="left")
        table.add_column("")
        table.add_column("objects", justify="right")
        table.add_column("bytes", justify="right")
        table.add_row("would copy", str(report.objects_to_copy), format_size(report.bytes_to_copy))
        if report.objects_to_restore:
            table.add_row("  archived: need a restore first", str(report.objects_to_restore), "")
        table.add_row("already present", str(report.objects_same), format_size(report.bytes_same))
        table.add_row("ignored", str(report.objects_ignored), "")
        if report.objects_filtered:
            table.add_row("filtered out", str(report.objects_filtered), "")
        if report.objects_unsupported:
            table.add_row("cannot be stored", str(report.objects_unsupported), "")
        if report.objects_not_replaced:
            table.add_row("exists, not replaced", str(report.objects_not_replaced), "")
        if settings.delete:
            table.add_row("would delete", str(report.objects_extra), "")
        console.print(table)
        for key in report.extra_samples:
            console.print(f"  delete {escape(key)}", highlight=False, soft_wrap=True)
        for d in report.samples:
            console.print(
                f"  copy {escape(d.src.key)} -> {escape(d.dst_key)} ({escape(d.reason)})",
                highlight=False,
                soft_wrap=True,
            )
        t = settings.transfer
        console.print(
            f"memory: at most {format_size(t.memory_limit)} of object data in flight "
            f"(up to {t.workers} objects x {t.part_threads} parts of "
            f"{format_size(t.part_size)}, capped by --memory-limit)",
            highlight=False,
        )
        if report.estimate is not None:
            estimate(console, report.estimate)
        return
    table = new_table(
        title=f"Run {report.run_id}" + (" (continued)" if report.resumed else ""),
        title_justify="left",
    )
    table.add_column("")
    table.add_column("objects", justify="right")
    table.add_column("bytes", justify="right")
    table.add_row("copied now", str(report.objects_copied), format_size(report.bytes_copied))
    table.add_row("  bytes sent", "", format_size(report.bytes_sent))
    if report.bytes_reused:
        table.add_row("  resumed (not re-sent)", "", format_size(report.bytes_reused))
    table.add_row("already present", str(report.objects_same), format_size(report.bytes_same))
    if report.objects_ignored:
        table.add_row("ignored", str(report.objects_ignored), "")
    if report.objects_filtered:
        table.add_row("filtered out", str(report.objects_filtered), "")
    if report.objects_unsupported:
        table.add_row("cannot be stored", str(report.objects_unsupported), "")
    if report.unstorable:
        table.add_row("cannot be stored under its key", str(len(report.unstorable)), "")
    if report.source_gone:
        table.add_row("gone from the source since the inventory", str(len(report.source_gone)), "")
    if report.objects_not_replaced:
        table.add_row("exists, not replaced", str(report.objects_not_replaced), "")
    if report.needs_restore:
        table.add_row("archived: needs restore", str(len(report.needs_restore)), "")
    if report.restore_requested:
        table.add_row("archived: restore requested", str(len(report.restore_requested)), "")
    if settings.delete:
        table.add_row("deleted (not at source)", str(report.deleted), "")
    if report.properties is not None:
        table.add_row("properties updated", str(report.properties.updated), "")
    for state in _STATES:
        # Done and failed always show; the other states only when a job is in them.
        if state in ("done", "failed") or report.jobs.get(state, 0):
            table.add_row(
                f"jobs {state.replace('_', ' ')}",
                str(report.jobs.get(state, 0)),
                format_size(report.job_bytes.get(state, 0)),
            )
    console.print(table)
    for verdict, count in sorted(report.verification.items()):
        console.print(f"  {count} object(s) {escape(verdict)}", highlight=False, soft_wrap=True)
    rate = report.bytes_sent / report.elapsed if report.elapsed else 0
    in_flight = (
        f", {report.concurrency_highest} objects in flight at most"
        if report.concurrency_highest
        else ""
    )
    console.print(
        f"elapsed {report.elapsed:.1f}s, {format_size(rate)}/s{in_flight}", highlight=False
    )
    _failed(console, [(f.key, f.reason) for f in report.failed])
    _unstorable(console, [(f.key, f.reason) for f in report.unstorable])
    _gone(console, [(f.key, f.reason) for f in report.source_gone])
    _skipped(
        console,
        "key(s) appeared at the destination during their copy (left as they are)",
        [(f.key, f.reason) for f in report.not_replaced],
    )
    for where, count in sorted(report.locks_not_kept.items()):
        console.print(
            f"[yellow]{count} object(s) had Object Lock retention or a legal hold; {escape(where)}"
            " has no Object Lock, so they were copied without them[/yellow]",
            highlight=False,
            soft_wrap=True,
        )
    _archived(
        console,
        [(f.key, f.reason) for f in report.needs_restore],
        [(f.key, f.reason) for f in report.restore_requested],
    )
    _failed(console, [(f.key, f.reason) for f in report.delete_failed])
    if report.properties is not None:
        _failed(console, report.properties.failed)
    if report.delete_refused:
        console.print(escape(report.delete_refused), style="bold red", soft_wrap=True)
    if report.interrupted:
        console.print("[yellow]interrupted: run the same command to continue[/yellow]")


_PATHS = {
    SINGLE: "in one PUT",
    MULTIPART: "multipart",
    SERVER_COPY: "copied by the server (CopyObject)",
    SERVER_PARTS: "copied by the server in parts (UploadPartCopy)",
}


def estimate(console: Console, est: Estimate) -> None:
    """The pre-flight estimate of a dry run: requests by kind and side, bytes, duration with
    its basis, and cost with its currency and the price table's date."""
    table = new_table(title="Pre-flight estimate", title_justify="left")
    table.add_column("requests")
    table.add_column("source", justify="right")
    table.add_column("destination", justify="right")
    for kind in Kind:
        src, dst = est.source[kind], est.destination[kind]
        if src or dst:
            table.add_row(str(kind), f"{src:,}" if src else "", f"{dst:,}" if dst else "")
    total = est.requests()
    table.add_row("total", f"{sum(est.source.values()):,}", f"{sum(est.destination.values()):,}")
    console.print(table)
    if not total:
        console.print("  no request to an S3 endpoint", highlight=False)
    paths = ", ".join(f"{n:,} {_PATHS.get(p, p)}" for p, n in sorted(est.paths.items()))
    console.print(f"objects: {est.objects:,} to copy" + (f" ({paths})" if paths else ""))
    console.print(
        f"bytes: {format_size(est.streamed + est.on_server)} "
        f"({format_size(est.streamed)} through this machine, "
        f"{format_size(est.on_server)} copied by the servers)",
        highlight=False,
    )
    if est.deletes:
        console.print(f"deletes: {est.deletes} object(s)", highlight=False)
    console.print(f"duration: {escape(_duration_text(est))}", highlight=False, soft_wrap=True)
    for line in _cost_lines(est):
        console.print(escape(line), highlight=False, soft_wrap=True)


def _seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _duration_text(est: Estimate) -> str:
    d, probe = est.duration, est.probe
    if d.seconds is None:
        return f"not estimated ({d.basis})"
    basis = [f"listing {_seconds(d.listing_seconds)} as this dry run's"]
    trips = [
        f"{role} {span}"
        for role, i in (("source", 0), ("destination", 1))
        if (span := _span([pair[i] for pair in probe.latency.values()]))
    ]
    if trips:
        basis.append(f"round trips {', '.join(trips)} (median of 3 bucket HEADs each)")
    rate = probe.throughput
    if rate is not None:
        basis.append(f"{format_size(probe.sample_bytes)} read at {format_size(rate)}/s per stream")
    elif est.streamed == 0:
        basis.append("no throughput sample: no byte passes through this machine")
    basis.append(f"{d.in_flight} request(s) in flight")
    return f"about {_seconds(d.seconds)} ({d.basis}: {'; '.join(basis)})"


def _span(seconds: list[float | None]) -> str:
    """Round trips in milliseconds: one, or the lowest and highest of several."""
    known = sorted(f"{s * 1000:.1f}" for s in seconds if s is not None)
    if not known:
        return ""
    low, high = min(known, key=float), max(known, key=float)
    return f"{low} ms" if low == high else f"{low}-{high} ms"


def _money(amount: float, currency: str) -> str:
    if amount >= 1:
        return f"{currency} {amount:,.2f}"
    return (
        f"{currency} {amount:.4f}" if amount >= 0.01 or not amount else f"{currency} {amount:.6f}"
    )


def _cost_lines(est: Estimate) -> list[str]:
    cost = est.cost
    table = cost.table
    where = table.origin if table.origin != BUILT_IN else "the built-in price table"
    dated = f"{where}, prices of {table.date}, approximate: prices change"
    hint = "--price-table FILE prices endpoints that are not AWS by the regions given"
    if not cost.applicable:
        why = "; ".join(cost.not_priced) or "no request goes to an S3 endpoint"
        return [f"cost: not applicable: {why} ({hint})"]
    totals = ", ".join(_money(a, c) for c, a in sorted(cost.totals().items()))
    lines = [f"cost: {totals} ({dated})"]
    for item in cost.items:
        if item.unit == "GB":
            quantity = f"{item.quantity:,.3f} GB at {item.price:g} {item.currency} per GB"
        else:
            count = round(item.quantity * 1000)
            quantity = f"{count:,} at {item.price:g} {item.currency} per 1,000"
        where = "" if item.unit == "GB" else f" in {item.region}"
        lines.append(f"  {item.what}{where}: {quantity} = {_money(item.amount, item.currency)}")
    if cost.not_priced:
        lines.append(f"  not priced: {'; '.join(cost.not_priced)} ({hint})")
    return lines


def _keys(console: Console, heading: str, keys: list[tuple[str, str]], most: int = 50) -> None:
    """A heading, then each key with its reason (the first `most` of them)."""
    console.print(heading)
    for key, reason in keys[:most]:
        console.print(f"  {escape(key)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if len(keys) > most:
        console.print(f"  ... and {len(keys) - most} more (longbow status --json lists all)")


def _failed(console: Console, failed: list[tuple[str, str]]) -> None:
    if failed:
        _keys(console, f"[bold red]{len(failed)} failed job(s):[/bold red]", failed)


def _unstorable(console: Console, keys: list[tuple[str, str]]) -> None:
    if keys:
        _keys(
            console,
            f"[bold red]{len(keys)} key(s) the destination cannot store[/bold red] (not copied "
            "again while the source is unchanged; an ignore pattern accepts them):",
            keys,
        )


def _gone(console: Console, keys: list[tuple[str, str]]) -> None:
    _skipped(
        console,
        "key(s) listed by the inventory were deleted from the source since (recorded as "
        "skipped, not copied)",
        keys,
    )


def _skipped(console: Console, heading: str, keys: list[tuple[str, str]]) -> None:
    if keys:
        _keys(console, f"{len(keys)} {heading}:", keys, most=20)


def _archived(
    console: Console, needs_restore: list[tuple[str, str]], requested: list[tuple[str, str]]
) -> None:
    """Archived sources (not copied, not failed), with how to get them copied."""
    for keys, what, hint in (
        (needs_restore, "archived, not copied: they need a restore", NEEDS_RESTORE_HINT),
        (requested, "archived, their restore requested", RESTORING_HINT),
    ):
        if not keys:
            continue
        _keys(console, f"[bold yellow]{len(keys)} object(s) {what}:[/bold yellow]", keys)
        console.print(f"[bold]to copy them:[/bold] {escape(hint)}", highlight=False, soft_wrap=True)


def _archived_json(db: JobDatabase, run: Run) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {"needs_restore": [], "restore_requested": []}
    for key, dst_key, reason, restoring in db.archived_jobs(run.id):
        out["restore_requested" if restoring else "needs_restore"].append(
            {"key": key, "dst_key": dst_key, "reason": reason}
        )
    return out


def run_json(db: JobDatabase, run: Run) -> dict[str, object]:
    totals = db.totals(run.id)
    return {
        "run_id": run.id,
        "pairs": run.description.get("pairs"),
        "planning_complete": run.plan_complete,
        "jobs": {s: n for s, (n, _) in totals.items()},
        "bytes": {s: b for s, (_, b) in totals.items()},
        "verification": db.verification(run.id),
        "failed": [
            {"key": k, "dst_key": d, "reason": r} for k, d, r in db.failed_jobs(run.id, 100_000)
        ],
        "unstorable": [
            {"key": k, "dst_key": d, "reason": r} for k, d, r in db.unstorable_jobs(run.id)
        ],
        "source_gone": [{"key": k, "reason": r} for k, _, r in db.gone_jobs(run.id)],
        "archived": _archived_json(db, run),
    }


def _pairs_of(run: Run) -> list[tuple[str, str]]:
    """The (source, destination) pairs a run's description records."""
    recorded = run.description.get("pairs")
    if not isinstance(recorded, list):
        return []
    return [(str(pair[0]), str(pair[1])) for pair in recorded if len(pair) == 2]


def status(console: Console, db: JobDatabase, run: Run) -> None:
    totals = db.totals(run.id)
    pairs = ", ".join(f"{s} -> {d}" for s, d in _pairs_of(run))
    table = new_table(title=f"Run {run.id}: {escape(pairs)}", title_justify="left")
    table.add_column("state")
    table.add_column("jobs", justify="right")
    table.add_column("bytes", justify="right")
    for state in _STATES:
        n, b = totals[state]
        table.add_row(state, str(n), format_size(b))
    console.print(table)
    if not run.plan_complete:
        console.print("planning has not finished: run the sync again to complete it")
    _failed(console, [(k, r) for k, _, r in db.failed_jobs(run.id)])
    _unstorable(console, [(k, r) for k, _, r in db.unstorable_jobs(run.id, 1000)])
    archived = db.archived_jobs(run.id, 1000)
    _archived(
        console,
        [(k, r) for k, _, r, restoring in archived if not restoring],
        [(k, r) for k, _, r, restoring in archived if restoring],
    )


def runs_table(console: Console, db: JobDatabase, runs: list[Run]) -> None:
    table = new_table(title="Runs", title_justify="left")
    for column in ("id", "pairs", "done", "pending", "failed"):
        table.add_column(column)
    for run in runs:
        totals = db.totals(run.id)
        pairs = "; ".join(f"{s} -> {d}" for s, d in _pairs_of(run))
        table.add_row(
            str(run.id),
            escape(pairs),
            str(totals["done"][0]),
            str(totals["pending"][0] + totals["in_progress"][0]),
            str(totals["failed"][0]),
        )
    console.print(table)


def verify_report(console: Console, report: VerifyReport) -> None:
    """Counts by verdict, then the keys that did not match."""
    table = new_table(title="Verify" + (" (deep)" if report.deep else ""), title_justify="left")
    table.add_column("verdict")
    table.add_column("objects", justify="right")
    for verdict, count in report.counts.items():
        table.add_row(verdict, str(count))
    if report.ignored:
        table.add_row("ignored", str(report.ignored))
    if report.filtered:
        table.add_row("filtered out", str(report.filtered))
    console.print(table)
    for verdict, items in report.keys.items():
        for key, reason in items[:50]:
            console.print(
                f"  {verdict}: {escape(key)} ({escape(reason)})", highlight=False, soft_wrap=True
            )
        if len(items) > 50:
            console.print(f"  ... {len(items) - 50} more {verdict} (--json lists them)")
    if not report.ok and report.counts["unverifiable"] and not report.deep:
        console.print("hint: --deep reads the unverifiable objects and compares their bytes")
