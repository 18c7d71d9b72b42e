"""What a run report shows, assembled from the job database: the timeline of an invocation
(from its samples), its totals and outcomes, the slowest and largest copies, the failures by
reason and the verification summary. Views (the HTML page, the PNG chart) only render it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from s3longbow.errors import ConfigError
from s3longbow.jobs.sqlite import KEPT_INVOCATIONS, Invocation, JobDatabase, Run
from s3longbow.model import RunSample

# The most points a chart draws: rates between samples further apart than the samples kept
# are exact averages over their span, so a long run loses detail, never bytes.
CHART_POINTS = 600
TOP_OBJECTS = 10  # rows of the slowest and of the largest copies


@dataclass(frozen=True, slots=True)
class Timeline:
    """The charts' points: seconds since the invocation began, and at each point the rates
    since the point before it (since `origin` for the first) and the concurrency at that
    moment."""

    origin: float = 0.0
    seconds: list[float] = field(default_factory=list)
    bytes_per_second: list[float] = field(default_factory=list)
    objects_per_second: list[float] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    concurrency: list[int] = field(default_factory=list)

    @property
    def peak_bytes_per_second(self) -> float:
        return max(self.bytes_per_second, default=0.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A share of the work by what became of it (bytes: None where it was not counted)."""

    label: str
    objects: int
    bytes: int | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class CopiedObject:
    key: str
    dst_key: str
    size: int
    seconds: float


@dataclass(frozen=True, slots=True)
class FailureGroup:
    reason: str
    objects: int
    bytes: int
    keys: list[str]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One invocation of the run (or one worker of a cluster), for the table of them."""

    label: str
    started_at: float
    seconds: float | None
    objects_copied: int | None
    bytes_copied: int | None
    outcome: str


@dataclass
class ReportData:
    """Everything a run report shows.

    Attributes:
        title: The page's title.
        facts: What the run was (label, text), in order.
        objects_copied: Objects copied.
        bytes_copied: Their bytes.
        bytes_sent: Bytes the destination accepted (less than copied where parts were reused).
        seconds: How long it ran.
        timeline: The charts' points.
        outcomes: Bytes and objects by what became of them.
        slowest: The copies that took longest.
        largest: The largest copies.
        failures: Failed jobs by reason.
        failed_objects: How many jobs failed in all.
        verification: Done jobs by verification method or reason.
        history: The run's invocations (or the cluster's workers).
        history_label: What the rows of `history` are.
        notes: Remarks on what the report could not know.
        generated_at: When the report was made.
    """

    title: str
    facts: list[tuple[str, str]]
    objects_copied: int
    bytes_copied: int
    bytes_sent: int
    seconds: float
    timeline: Timeline
    outcomes: list[Outcome]
    slowest: list[CopiedObject]
    largest: list[CopiedObject]
    failures: list[FailureGroup]
    failed_objects: int
    verification: list[tuple[str, int]]
    history: list[HistoryRow]
    history_label: str = "Invocations of this run"
    notes: list[str] = field(default_factory=list)
    generated_at: float = field(default_factory=time.time)

    @property
    def average_bytes_per_second(self) -> float:
        return self.bytes_sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def verified_objects(self) -> int:
        return sum(n for text, n in self.verification if text.startswith("verified"))


def spread(count: int, most: int) -> list[int]:
    """At most `most` indexes of `count` items, evenly spread, the first and last included."""
    if count <= most:
        return list(range(count))
    if most < 2:
        return [count - 1][:most]
    step = (count - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})


def timeline(samples: Sequence[RunSample], start: float, most: int = CHART_POINTS) -> Timeline:
    """The charts' points from an invocation's samples (oldest first): at most `most` of them,
    each rate the average since the point before it."""
    chosen = _evenly_spaced([samples[i] for i in spread(len(samples), most + 1)])
    out = Timeline(origin=chosen[0].at - start if chosen else 0.0)
    for before, now in zip(chosen, chosen[1:], strict=False):
        span = now.at - before.at
        if span <= 0:
            continue
        out.seconds.append(now.at - start)
        out.bytes_per_second.append(max(0, now.bytes_sent - before.bytes_sent) / span)
        out.objects_per_second.append(max(0, now.objects_done - before.objects_done) / span)
        out.in_flight.append(now.in_flight)
        out.concurrency.append(now.concurrency)
    return out


def _evenly_spaced(samples: list[RunSample]) -> list[RunSample]:
    """The samples without those closer than half the usual spacing to the next one kept
    (the last sample, taken as the run ends, often comes right after a periodic one: a rate
    over a few milliseconds would be noise). The first and the last are always kept."""
    if len(samples) < 3:
        return samples
    gaps = sorted(b.at - a.at for a, b in zip(samples, samples[1:], strict=False))
    least = gaps[len(gaps) // 2] / 2
    kept = [samples[-1]]
    for sample in reversed(samples[1:-1]):
        if kept[-1].at - sample.at >= least:
            kept.append(sample)
    kept.append(samples[0])
    return kept[::-1]


def _count(summary: Mapping[str, object] | None, *path: str) -> int | None:
    """A number in an invocation's summary (None where it is not there)."""
    value: object = summary
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def invocation_outcome(invocation: Invocation) -> str:
    """What became of an invocation, in a word or two."""
    summary = invocation.summary
    if invocation.ended_at is None or summary is None:
        return "did not finish (stopped or still running)"
    error = summary.get("error")
    if isinstance(error, Mapping):
        return f"stopped: {error.get('message', '')}"
    if summary.get("interrupted"):
        return "interrupted"
    return "ok" if summary.get("ok") else "some jobs failed or are not finished"


def _history_row(invocation: Invocation, last: RunSample | None) -> HistoryRow:
    summary = invocation.summary
    objects = _count(summary, "copied", "objects")
    nbytes = _count(summary, "copied", "bytes")
    if objects is None and last is not None:
        objects, nbytes = last.objects_copied, last.bytes_copied
    ended = invocation.ended_at or (last.at if last is not None else None)
    return HistoryRow(
        label=f"#{invocation.id}",
        started_at=invocation.started_at,
        seconds=None if ended is None else max(0.0, ended - invocation.started_at),
        objects_copied=objects,
        bytes_copied=nbytes,
        outcome=invocation_outcome(invocation),
    )


def pick_run(db: JobDatabase, run_id: int | None) -> Run:
    """The run asked for, or the latest; a clear error where there is none."""
    run = db.get_run(run_id=run_id)
    if run is None:
        what = f"no run {run_id}" if run_id is not None else "no run"
        raise ConfigError(
            f"{what} in the job database {db.path}",
            hint="longbow status --all --db FILE lists the runs it holds",
        )
    return run


def assemble(
    db: JobDatabase, run_id: int | None = None, invocation_id: int | None = None
) -> ReportData:
    """The report of one invocation of a run (by default the latest of the latest run).

    The timeline, the copies, the slowest and the largest are the invocation's; failures,
    skipped, archived and unfinished jobs and the verification summary are the run's jobs as
    they stand now.
    """
    run = pick_run(db, run_id)
    invocations = db.invocations(run.id)
    if not invocations:
        raise ConfigError(
            f"run {run.id} in {db.path} has no recorded invocation to report on",
            hint="runs are recorded for reports from this version on: run the same "
            "longbow sync again, then longbow report",
        )
    if invocation_id is None:
        invocation = invocations[-1]
    else:
        found = [i for i in invocations if i.id == invocation_id]
        if not found:
            raise ConfigError(
                f"run {run.id} has no invocation {invocation_id}",
                hint="its invocations are " + ", ".join(str(i.id) for i in invocations),
            )
        invocation = found[0]
    samples = db.samples(invocation.id)
    last = samples[-1] if samples else None
    summary = invocation.summary
    notes = []
    if not samples:
        notes.append(
            "No samples were recorded for this invocation: it stopped before copying, or it "
            f"is older than the latest {KEPT_INVOCATIONS} of its run, which alone keep theirs."
        )

    objects_copied = _count(summary, "copied", "objects")
    bytes_copied = _count(summary, "copied", "bytes")
    bytes_sent = _count(summary, "bytes_sent")
    if objects_copied is None or bytes_copied is None or bytes_sent is None:
        notes.append(
            "This invocation did not end normally (killed, or still running): its numbers "
            "are those of its last sample."
        )
        objects_copied = last.objects_copied if last else 0
        bytes_copied = last.bytes_copied if last else 0
        bytes_sent = last.bytes_sent if last else 0
    ended = invocation.ended_at or (last.at if last else invocation.started_at)
    seconds = max(0.0, ended - invocation.started_at)

    totals = db.totals(run.id)
    outcomes = [Outcome("copied", objects_copied, bytes_copied, "by this invocation")]
    present = _count(summary, "already_present", "objects")
    if present is not None:
        present_bytes = _count(summary, "already_present", "bytes")
        outcomes.append(Outcome("already present", present, present_bytes, "at the destination"))
    for state, label in (
        ("failed", "failed"),
        ("skipped", "skipped"),
        ("archived", "archived"),
        ("pending", "not copied yet"),
        ("in_progress", "in progress"),
    ):
        count, nbytes = totals.get(state, (0, 0))
        if count:
            outcomes.append(Outcome(label, count, nbytes, "jobs of the run, now"))
    for name, label in (("ignored", "ignored"), ("filtered", "filtered out")):
        left_out = _count(summary, name)
        if left_out:
            outcomes.append(Outcome(label, left_out, None, "not counted in bytes"))

    pairs = run.description.get("pairs", [])
    facts = [("Run", f"{run.id} (invocation {invocation.id}, {len(invocations)} in all)")]
    if isinstance(pairs, list):
        facts += [("Pair", " → ".join(str(side) for side in pair)) for pair in pairs]
    facts += [
        ("Started", format_time(invocation.started_at)),
        ("Ended", format_time(invocation.ended_at) if invocation.ended_at else "—"),
        ("Outcome", invocation_outcome(invocation)),
        ("Job database", str(db.path)),
    ]
    # Copies are the invocation's when they ended while it ran (a killed one ran until the
    # next began).
    following = [i.started_at for i in invocations if i.id > invocation.id]
    until = invocation.ended_at or (following[0] if following else None)
    window = {"since": invocation.started_at, "until": until}
    return ReportData(
        title=f"Longbow run {run.id}",
        facts=facts,
        objects_copied=objects_copied,
        bytes_copied=bytes_copied,
        bytes_sent=bytes_sent,
        seconds=seconds,
        timeline=timeline(samples, invocation.started_at),
        outcomes=outcomes,
        slowest=[
            CopiedObject(*row)
            for row in db.copied_jobs(run.id, by="duration", limit=TOP_OBJECTS, **window)
        ],
        largest=[
            CopiedObject(*row)
            for row in db.copied_jobs(run.id, by="size", limit=TOP_OBJECTS, **window)
        ],
        failures=[FailureGroup(*group) for group in db.failure_groups(run.id)],
        failed_objects=totals.get("failed", (0, 0))[0],
        verification=sorted(db.verification(run.id).items(), key=lambda kv: -kv[1]),
        history=[_history_row(i, last if i is invocation else _last(db, i)) for i in invocations],
        notes=notes,
    )


def _last(db: JobDatabase, invocation: Invocation) -> RunSample | None:
    if invocation.summary is not None:
        return None  # its summary has what its row shows
    samples = db.samples(invocation.id)
    return samples[-1] if samples else None


def format_time(at: float) -> str:
    """A moment for people: 2024-05-01 12:00:03 UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def format_duration(seconds: float) -> str:
    """A span for people: 42.0 s, 3 min 05 s, 2 h 04 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
