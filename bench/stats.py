"""Per-run figures, their medians across rounds, and the ratios the benchmark reports.

Pure functions over plain records, so the JSON file, the table and the chart agree.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GiB = 1024**3


@dataclass
class Result:
    """One tool's run on one workload in one round."""

    tool: str
    workload: str
    round: int
    objects: int
    bytes: int
    wall_s: float
    mb_per_s: float
    objects_per_s: float
    cpu_s: float
    cpu_ms_per_object: float
    cpu_s_per_gib: float | None
    peak_rss_mib: float
    extra: dict[str, float] = field(default_factory=dict)


def make_result(
    tool: str,
    workload: str,
    rnd: int,
    objects: int,
    total_bytes: int,
    usage: Mapping[str, float],
    extra: Mapping[str, float] | None = None,
) -> Result:
    """Derive the per-unit figures from a run's wall time, CPU seconds and peak RSS."""
    wall, cpu = max(usage["wall_s"], 1e-9), usage["cpu_s"]
    return Result(
        tool=tool,
        workload=workload,
        round=rnd,
        objects=objects,
        bytes=total_bytes,
        wall_s=round(wall, 3),
        mb_per_s=round(total_bytes / wall / 1e6, 1),
        objects_per_s=round(objects / wall, 1),
        cpu_s=round(cpu, 2),
        cpu_ms_per_object=round(cpu * 1000 / objects, 3) if objects else 0.0,
        # Zero-byte sets (planning) have no per-GiB figure.
        cpu_s_per_gib=round(cpu / (total_bytes / GiB), 2) if total_bytes else None,
        peak_rss_mib=round(usage["peak_rss_mib"], 1),
        extra={k: round(v, 3) for k, v in (extra or {}).items()},
    )


def concurrent_limit(get: Mapping[str, float], put: Mapping[str, float]) -> dict[str, float]:
    """Combine a raw GET and a raw PUT of the same bytes that ran at the same time.

    A copy can go no faster than the slower of the two, so the limit's wall time is the longer
    one; its client CPU is both processes' and its peak RSS the larger one.
    """
    return {
        "wall_s": max(get["wall_s"], put["wall_s"]),
        "cpu_s": get["cpu_s"] + put["cpu_s"],
        "peak_rss_mib": max(get["peak_rss_mib"], put["peak_rss_mib"]),
    }


MEDIAN_FIELDS = (
    "wall_s",
    "mb_per_s",
    "objects_per_s",
    "cpu_s",
    "cpu_ms_per_object",
    "cpu_s_per_gib",
    "peak_rss_mib",
)


def medians(rows: Iterable[Result | Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(workload, tool) -> median of each figure over its rounds, plus min/max and rounds."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        record = row.__dict__ if isinstance(row, Result) else row
        groups.setdefault((record["workload"], record["tool"]), []).append(record)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, records in groups.items():
        med: dict[str, Any] = {"rounds": len(records)}
        for name in MEDIAN_FIELDS:
            values = [r[name] for r in records if r.get(name) is not None]
            med[name] = statistics.median(values) if values else None
            if values:
                med[f"{name}_min"], med[f"{name}_max"] = min(values), max(values)
        out[key] = med
    return out


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def versus(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, float | None]:
    """Our medians against theirs on the same work: speed (theirs' wall time over ours), CPU
    and peak RSS (ours over theirs).

    Every tool does the same work, so the speed ratio is the inverse ratio of wall times (the
    rounded objects/s of five large objects would hide any difference).
    """
    return {
        "speed": ratio(theirs["wall_s"], ours["wall_s"]),
        "cpu": ratio(ours["cpu_s"], theirs["cpu_s"]),
        "rss": ratio(ours["peak_rss_mib"], theirs["peak_rss_mib"]),
    }


def ratios(
    meds: Mapping[tuple[str, str], Mapping[str, Any]], workload: str
) -> dict[str, float | None]:
    """longbow against rclone (speed, CPU, RSS) and against the limit (speed) for a workload."""
    ours = meds.get((workload, "longbow"))
    if ours is None:
        return {}
    out: dict[str, float | None] = {}
    rclone, limit = meds.get((workload, "rclone")), meds.get((workload, "limit"))
    if rclone:
        out.update({f"{k}_vs_rclone": v for k, v in versus(ours, rclone).items()})
    if limit:
        out["speed_vs_limit"] = versus(ours, limit)["speed"]
    return out


def cpu_per_unit(workload: str, med: Mapping[str, Any]) -> tuple[float | None, str]:
    """The steadiest CPU figure for a workload and its unit, for the chart."""
    if workload in ("large", "mixed"):
        return med.get("cpu_s_per_gib"), "CPU s/GiB"
    if workload == "planning":
        # ms per key is the same number as s per 1,000 keys, the readier unit here.
        return med.get("cpu_ms_per_object"), "CPU s/1,000 keys"
    return med.get("cpu_ms_per_object"), "CPU ms/object"


def throughput(workload: str, med: Mapping[str, Any]) -> tuple[float | None, str]:
    """The throughput figure for a workload and its unit, for the chart."""
    if workload == "planning":
        return med.get("objects_per_s"), "keys/s"
    if workload == "small":
        return med.get("objects_per_s"), "objects/s"
    return med.get("mb_per_s"), "MB/s"
