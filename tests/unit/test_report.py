"""The run report's parts on their own: the sampler and its bounded samples, the job
database's history of invocations, the report's data assembled from a database filled by
hand, and the page and chart made from it."""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3longbow.errors import ConfigError
from s3longbow.jobs.sqlite import KEPT_INVOCATIONS, SCHEMA_VERSION, JobDatabase, PlannedCopy
from s3longbow.model import JobResult, JobState, ObjectInfo, RunSample
from s3longbow.progress.sampling import Sampler
from s3longbow.progress.stats import Stats
from s3longbow.report.chart import render_png
from s3longbow.report.data import assemble, spread, timeline
from s3longbow.report.page import render_html
from s3longbow.report.svg import binary_ticks, clock, nice_ticks


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[JobDatabase]:
    database = JobDatabase(tmp_path / "jobs.db")
    yield database
    database.close()


class ListStore:
    """Samples kept in a list, thinned as the job database thins them."""

    def __init__(self) -> None:
        self.samples: list[RunSample] = []

    def add_sample(self, sample: RunSample) -> None:
        self.samples.append(sample)

    def thin_samples(self) -> int:
        self.samples = self.samples[::2]
        return len(self.samples)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# -- sampling ---------------------------------------------------------------------------------


def test_a_sample_holds_the_counters_at_that_moment() -> None:
    stats, store, clock = Stats(), ListStore(), Clock()
    sampler = Sampler(stats, store, clock=clock)
    stats.set_concurrency(16)
    stats.started()
    stats.started()
    stats.sent(700)
    stats.finished(700, ok=True, progressed=700)
    sampler.take()
    assert store.samples == [
        RunSample(
            at=1_000.0,
            bytes_sent=700,
            bytes_done=700,
            objects_done=1,
            objects_copied=1,
            bytes_copied=700,
            objects_failed=0,
            in_flight=1,
            concurrency=16,
        )
    ]


def test_samples_stay_bounded_and_keep_the_whole_timeline_at_a_coarser_grain() -> None:
    stats, store, clock = Stats(), ListStore(), Clock()
    sampler = Sampler(stats, store, interval=1.0, max_samples=9, clock=clock)
    sampler.take()
    for _ in range(30):  # as the sampler's thread takes them: one each interval
        clock.now += sampler.interval
        stats.sent(10)
        sampler.take()
        assert len(store.samples) < 9
    # Halved at 9 samples (after 8 takes, then every 4), each time from the first to the
    # last: the kept samples are evenly spread over the whole run, the latest holds the final
    # counts, and each rate between two of them is exact.
    assert sampler.interval == 64.0
    assert store.samples[0].at == 1_000.0 and store.samples[-1].at == clock.now
    gaps = {b.at - a.at for a, b in zip(store.samples, store.samples[1:], strict=False)}
    assert gaps == {64.0}
    assert store.samples[-1].bytes_sent == 300
    with pytest.raises(ValueError, match="odd"):
        Sampler(stats, store, max_samples=8)


def test_the_sampler_takes_a_first_and_a_last_sample() -> None:
    stats, store = Stats(), ListStore()
    with Sampler(stats, store, interval=3600):
        stats.sent(5)
    assert [s.bytes_sent for s in store.samples] == [0, 5]


def test_a_sample_that_cannot_be_written_does_not_stop_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(ListStore):
        def add_sample(self, sample: RunSample) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    with Sampler(Stats(), Broken(), interval=3600):
        pass
    assert "could not record a sample" in caplog.text


# -- the job database's history -------------------------------------------------------------


def test_invocations_and_their_samples_are_kept_in_order(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    first = db.begin_invocation(run.id, now=10.0)
    db.add_sample(first, RunSample(at=10.0))
    db.add_sample(first, RunSample(at=11.0, bytes_sent=5, objects_done=1))
    db.end_invocation(first, {"ok": True, "copied": {"objects": 1, "bytes": 5}}, now=12.0)
    second = db.begin_invocation(run.id, now=20.0)
    [one, two] = db.invocations(run.id)
    assert (one.id, one.started_at, one.ended_at) == (first, 10.0, 12.0)
    assert one.summary == {"ok": True, "copied": {"objects": 1, "bytes": 5}}
    assert (two.id, two.ended_at, two.summary) == (second, None, None)
    assert db.samples(first) == [
        RunSample(at=10.0),
        RunSample(at=11.0, bytes_sent=5, objects_done=1),
    ]
    assert db.samples(second) == []


def test_thinning_keeps_every_other_sample_from_the_first(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    invocation = db.begin_invocation(run.id)
    other = db.begin_invocation(run.id)
    for second in range(7):
        db.add_sample(invocation, RunSample(at=float(second), bytes_sent=second))
    db.add_sample(other, RunSample(at=0.0))
    assert db.thin_samples(invocation) == 4
    assert [s.at for s in db.samples(invocation)] == [0.0, 2.0, 4.0, 6.0]
    assert len(db.samples(other)) == 1  # another invocation's samples are its own


def test_only_the_latest_invocations_keep_their_samples(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    ids = []
    for n in range(KEPT_INVOCATIONS + 2):
        ids.append(db.begin_invocation(run.id, now=float(n)))
        db.add_sample(ids[-1], RunSample(at=float(n)))
    assert [len(db.samples(i)) for i in ids[:3]] == [0, 0, 1]
    assert len(db.invocations(run.id)) == KEPT_INVOCATIONS + 2  # their records stay


def test_a_database_of_schema_3_gains_the_run_history(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    JobDatabase(path).close()
    with sqlite3.connect(path) as old:  # as version 3 left it: no history tables
        old.execute("DROP TABLE samples")
        old.execute("DROP TABLE invocations")
        old.execute("UPDATE meta SET value='3' WHERE name='schema'")
    db = JobDatabase(path)
    try:
        run, _ = db.open_run("sig", {})
        invocation = db.begin_invocation(run.id)
        db.add_sample(invocation, RunSample(at=1.0, bytes_sent=3))
        assert db.samples(invocation) == [RunSample(at=1.0, bytes_sent=3)]
    finally:
        db.close()
    with sqlite3.connect(path) as again:
        assert again.execute("SELECT value FROM meta WHERE name='schema'").fetchone() == (
            str(SCHEMA_VERSION),
        )
    assert SCHEMA_VERSION == 4


# -- the report's data ------------------------------------------------------------------------


def test_spread_picks_evenly_with_both_ends() -> None:
    assert spread(5, 10) == [0, 1, 2, 3, 4]
    assert spread(101, 5) == [0, 25, 50, 75, 100]
    assert spread(1000, 2) == [0, 999]


def test_rates_are_averages_between_the_points_kept() -> None:
    samples = [
        RunSample(at=100.0 + s, bytes_sent=s * 1000, objects_done=s * 2, in_flight=s)
        for s in range(11)
    ]
    full = timeline(samples, start=100.0)
    assert full.seconds == [float(s) for s in range(1, 11)]
    assert set(full.bytes_per_second) == {1000.0} and set(full.objects_per_second) == {2.0}
    coarse = timeline(samples, start=99.0, most=2)
    assert coarse.seconds == [6.0, 11.0]
    assert coarse.bytes_per_second == [1000.0, 1000.0]
    assert coarse.in_flight == [5, 10]


def test_a_last_sample_right_after_another_makes_no_point_of_its_own() -> None:
    samples = [RunSample(at=float(s), bytes_sent=s * 10) for s in range(5)]
    samples.append(RunSample(at=4.01, bytes_sent=41))
    points = timeline(samples, start=0.0)
    assert points.seconds == [1.0, 2.0, 3.0, 4.01]
    assert points.bytes_per_second[-1] == pytest.approx(11 / 1.01)


def _copy_jobs(
    db: JobDatabase, path: Path, run_id: int, jobs: dict[str, tuple[int, float, float, str]]
) -> None:
    """Plan jobs key -> (size, started, finished, outcome) and end them so: "done", or a
    failure reason."""
    generation = db.begin_plan(run_id)
    db.upsert_jobs(
        run_id,
        generation,
        [PlannedCopy(0, ObjectInfo(k, v[0], "e"), k, "missing") for k, v in jobs.items()],
        max_attempts=3,
    )
    for job in db.claim(run_id, "me", len(jobs), lease_seconds=60):
        outcome = jobs[job.src_key][3]
        if outcome == "done":
            result = JobResult(bytes_sent=job.size, verified=True, verify="source-md5")
            assert db.finish(job, JobState.DONE, None, result)
        else:
            assert db.finish(job, JobState.FAILED, outcome, None)
    with sqlite3.connect(path) as conn:
        for key, (_, started, finished, _) in jobs.items():
            conn.execute(
                "UPDATE jobs SET started_at=?, finished_at=? WHERE src_key=?",
                (started, finished, key),
            )


@pytest.fixture()
def filled(db: JobDatabase, tmp_path: Path) -> JobDatabase:
    """A run of two invocations: the first killed, the second ended with its summary."""
    run, _ = db.open_run("sig", {"pairs": [["s3://src/", "s3://dst/"]]})
    killed = db.begin_invocation(run.id, now=1_000.0)
    db.add_sample(killed, RunSample(at=1_000.0))
    db.add_sample(killed, RunSample(at=1_010.0, objects_copied=3, bytes_copied=300))
    latest = db.begin_invocation(run.id, now=2_000.0)
    for second in range(0, 61, 2):
        db.add_sample(
            latest,
            RunSample(
                at=2_000.0 + second,
                bytes_sent=second * 1024 * 1024,
                objects_done=second // 2,
                in_flight=4,
                concurrency=16,
            ),
        )
    _copy_jobs(
        db,
        tmp_path / "jobs.db",
        run.id,
        {
            "early/copied-before": (9_000_000, 1_001.0, 1_009.0, "done"),
            "big.bin": (5_000_000, 2_001.0, 2_003.0, "done"),
            "slow.bin": (1_000, 2_010.0, 2_040.0, "done"),
            "small": (10, 2_020.0, 2_021.0, "done"),
            "denied/a": (7, 2_030.0, 2_031.0, "HTTP 403 AccessDenied"),
            "denied/b": (8, 2_030.0, 2_031.0, "HTTP 403 AccessDenied"),
            "odd\x1b[2Jkey": (9, 2_030.0, 2_031.0, "checksum mismatch <b>"),
        },
    )
    summary = {
        "ok": False,
        "copied": {"objects": 3, "bytes": 5_001_010},
        "bytes_sent": 5_001_010,
        "already_present": {"objects": 12, "bytes": 12_345},
        "ignored": 2,
        "filtered": 0,
        "interrupted": False,
        "error": None,
    }
    db.end_invocation(latest, summary, now=2_060.0)
    return db


def test_the_report_is_of_the_latest_invocation(filled: JobDatabase) -> None:
    data = assemble(filled)
    assert (data.objects_copied, data.bytes_copied, data.bytes_sent) == (3, 5_001_010, 5_001_010)
    assert data.seconds == 60.0
    assert data.timeline.seconds[0] == 2.0 and data.timeline.seconds[-1] == 60.0
    assert set(data.timeline.bytes_per_second) == {1024 * 1024.0}
    assert set(data.timeline.concurrency) == {16}
    outcomes = {o.label: (o.objects, o.bytes) for o in data.outcomes}
    assert outcomes == {
        "copied": (3, 5_001_010),
        "already present": (12, 12_345),
        "failed": (3, 24),
        "ignored": (2, None),
    }
    # The copies finished during this invocation, by time taken and by size.
    assert [o.key for o in data.slowest] == ["slow.bin", "big.bin", "small"]
    assert data.slowest[0].seconds == 30.0
    assert [o.key for o in data.largest] == ["big.bin", "slow.bin", "small"]
    assert [(g.reason, g.objects, g.bytes, g.keys) for g in data.failures] == [
        ("HTTP 403 AccessDenied", 2, 15, ["denied/a", "denied/b"]),
        ("checksum mismatch <b>", 1, 9, ["odd\x1b[2Jkey"]),
    ]
    assert data.failed_objects == 3
    assert data.verification == [("verified: source-md5", 4)]
    assert [(h.objects_copied, h.outcome) for h in data.history] == [
        (3, "did not finish (stopped or still running)"),
        (3, "some jobs failed or are not finished"),
    ]
    assert data.history[0].seconds == 10.0  # a killed invocation lasts until its last sample


def test_a_killed_invocation_is_reported_from_its_last_sample(filled: JobDatabase) -> None:
    run = filled.get_run()
    assert run is not None
    first = filled.invocations(run.id)[0]
    data = assemble(filled, run.id, first.id)
    assert (data.objects_copied, data.bytes_copied, data.seconds) == (3, 300, 10.0)
    assert any("did not end normally" in note for note in data.notes)
    assert [o.key for o in data.largest] == ["early/copied-before"]  # its own window


def test_what_is_not_there_is_a_clear_error(db: JobDatabase) -> None:
    with pytest.raises(ConfigError, match="no run"):
        assemble(db)
    run, _ = db.open_run("sig", {})
    with pytest.raises(ConfigError, match="no recorded invocation"):
        assemble(db)
    db.begin_invocation(run.id)
    with pytest.raises(ConfigError, match="no run 7"):
        assemble(db, 7)
    with pytest.raises(ConfigError, match="has no invocation 99"):
        assemble(db, run.id, 99)


# -- the page and the chart -------------------------------------------------------------------


def test_the_page_shows_the_numbers_and_escapes_what_the_run_wrote(filled: JobDatabase) -> None:
    page = render_html(assemble(filled))
    assert page.startswith("<!DOCTYPE html>")
    assert "5,001,010 bytes" in page and ">3<" in page
    assert "HTTP 403 AccessDenied" in page and "denied/b" in page
    assert "checksum mismatch &lt;b&gt;" in page and "<b>" not in page.split("<body>")[1]
    assert "odd\\x1b[2Jkey" in page and "\x1b" not in page
    assert page.count('<svg class="chart') == 3
    # Nothing is fetched: no source or link that leaves the file.
    for outside in ("src=", "href=", "http://", "https://", "@import", "url("):
        assert outside not in page
    chart = page.split('data-chart="', 1)[1].split('"', 1)[0]
    points = json.loads(chart.replace("&quot;", '"'))
    assert points["seconds"][-1] == 60.0 and points["lines"][0]["bytes"] is True


def test_a_report_without_samples_says_so(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    invocation = db.begin_invocation(run.id, now=5.0)
    db.end_invocation(invocation, {"copied": {"objects": 0, "bytes": 0}, "bytes_sent": 0})
    data = assemble(db)
    page = render_html(data)
    assert "No samples were recorded" in page
    assert render_png(data).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_chart_is_a_png_of_the_throughput(filled: JobDatabase) -> None:
    png = render_png(assemble(filled))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1200, 504)


def test_axis_ticks_are_round_numbers() -> None:
    assert nice_ticks(9.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert nice_ticks(0.0) == [0.0, 1.0]
    ticks, unit, name = binary_ticks(300 * 1024 * 1024)
    assert (unit, name) == (1024.0**2, "MiB") and ticks[-1] >= 300 * 1024 * 1024
    assert [t / unit for t in ticks] == [0.0, 100.0, 200.0, 300.0]
    assert (clock(65), clock(3725)) == ("1:05", "1:02:05")


# -- the cluster's samples ---------------------------------------------------------------------


def test_the_cluster_series_sums_its_workers_and_forgets_the_stopped_ones_in_flight() -> None:
    from s3longbow.cluster.samples import combined

    early = [
        RunSample(at=0.0, in_flight=2, concurrency=8),
        RunSample(at=10.0, bytes_sent=100, objects_done=1, in_flight=2, concurrency=8),
    ]
    late = [
        RunSample(at=20.0, in_flight=1, concurrency=4),
        RunSample(at=30.0, bytes_sent=50, objects_done=5, in_flight=1, concurrency=4),
        RunSample(at=40.0, bytes_sent=70, objects_done=7, in_flight=1, concurrency=4),
    ]
    series = combined({"a": early, "b": late}, step=10.0)
    assert [s.at for s in series] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert [s.bytes_sent for s in series] == [0, 100, 100, 150, 170]
    assert [s.objects_done for s in series] == [0, 1, 1, 6, 8]
    # Worker a stopped at 10 s: from two steps later on, nothing of it is in flight.
    assert [s.in_flight for s in series] == [2, 2, 3, 1, 1]
    assert [s.concurrency for s in series] == [8, 8, 12, 4, 4]
    assert combined({}, step=10.0) == []
