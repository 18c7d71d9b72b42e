"""The pre-flight estimate as a dry run reports it: from the requests counted by `estimate`,
what a probe measured and a price table, how long the copy may take and what AWS may charge.
Pure: no request is made here (the probe is `probe`'s)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from s3longbow.plan.estimate import (
    ASSUMED,
    BASIS,
    READ_CLASS,
    WRITE_CLASS,
    Estimator,
    Kind,
)
from s3longbow.plan.prices import GB, PriceTable, partition
from s3longbow.stores.base import EndpointFacts

# --- duration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What the probe measured.

    Attributes:
        latency: Per pair: the median seconds of the source's and the destination's bucket
            HEADs (None: a directory, or no reply).
        sample_bytes: Bytes of the ranged GET read at the source (0: none read).
        sample_seconds: How long it took.
        failed: Why a measurement could not be made (empty: none failed).
    """

    latency: Mapping[int, tuple[float | None, float | None]] = field(default_factory=dict)
    sample_bytes: int = 0
    sample_seconds: float = 0.0
    failed: tuple[str, ...] = ()

    @property
    def throughput(self) -> float | None:
        """Bytes per second of the sample read."""
        if not self.sample_bytes or self.sample_seconds <= 0:
            return None
        return self.sample_bytes / self.sample_seconds


@dataclass(frozen=True)
class Duration:
    """How long the copy may take, and on what that rests.

    Attributes:
        seconds: The estimate (None: it could not be made; `basis` says why).
        basis: What it rests on, in words.
        listing_seconds: The listing, as long as the dry run's took.
        request_seconds: The replies' waits, spread over the requests in flight.
        transfer_seconds: The bytes through this machine, at the probed rate per stream.
        in_flight: Requests (objects or parts) assumed in flight at once.
    """

    seconds: float | None
    basis: str
    listing_seconds: float = 0.0
    request_seconds: float = 0.0
    transfer_seconds: float = 0.0
    in_flight: int = 0


def duration(
    estimator: Estimator, probe: Probe, planning_seconds: float, *, parallel_lists: bool = True
) -> Duration:
    """The copy's duration from the plan and the probe.

    The model: listing takes as long as the dry run's did, and the copy goes on beside it
    (`parallel_lists`, as in a sync) or after it. The copy's requests wait for their side's
    round trip (the probe's HEADs), and its bytes come at the probed rate per stream; with
    `in_flight` requests at once, the copy takes the longer of the two. `in_flight` is the
    most objects in flight (--workers), or as many as --memory-limit holds of the average
    request's bytes, or the requests there are, whichever is least. Server-side copies are
    timed by their requests only; deletes come after, one batch at a time.
    """
    settings = estimator.settings
    if probe.failed:
        return Duration(None, f"{BASIS} that failed: {'; '.join(probe.failed)}")
    request_seconds = delete_seconds = 0.0
    requests = transfers = streamed = 0
    for index, tally in estimator.pairs.items():
        src_latency, dst_latency = probe.latency.get(index, (None, None))
        for counts, latency in ((tally.source, src_latency), (tally.destination, dst_latency)):
            work = sum(n for kind, n in counts.items() if kind not in (Kind.LIST, Kind.DELETE))
            requests += work
            request_seconds += work * (latency or 0.0)
        delete_seconds += tally.destination[Kind.DELETE] * (dst_latency or 0.0)
        transfers += tally.transfers
        streamed += tally.streamed
    rate = probe.throughput
    if streamed and rate is None:
        return Duration(None, f"{BASIS}: no throughput sample was read")
    held = streamed / transfers if transfers else settings.part_size
    most = min(settings.workers, settings.memory_limit // max(1, int(held)))
    in_flight = max(1, min(most, max(requests, transfers)))
    request_part = request_seconds / in_flight
    transfer_part = streamed / (rate * in_flight) if streamed and rate else 0.0
    if streamed and settings.bandwidth_limit:
        transfer_part = max(transfer_part, streamed / settings.bandwidth_limit)
    copy_seconds = max(request_part, transfer_part)
    total = (
        max(planning_seconds, copy_seconds) if parallel_lists else planning_seconds + copy_seconds
    )
    total += delete_seconds
    return Duration(
        seconds=total,
        basis=BASIS,
        listing_seconds=planning_seconds,
        request_seconds=request_part,
        transfer_seconds=transfer_part,
        in_flight=in_flight,
    )


# --- cost ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostItem:
    """One line of the cost: a quantity at a price, in a region's currency.

    Attributes:
        what: What is billed ("source write requests", "transfer us-east-1 -> cn-north-1").
        region: The region that bills it.
        currency: In what.
        quantity: How many (requests, or GB).
        unit: "1,000 requests" or "GB".
        price: Per unit.
    """

    what: str
    region: str
    currency: str
    quantity: float
    unit: str
    price: float

    @property
    def amount(self) -> float:
        return self.quantity * self.price


@dataclass(frozen=True)
class Cost:
    """What AWS may charge, by line and by currency.

    Attributes:
        items: The lines priced.
        not_priced: Why parts of the copy are not priced (an endpoint that is not AWS, a
            region the table lacks).
        table: The price table used.
    """

    items: tuple[CostItem, ...]
    not_priced: tuple[str, ...]
    table: PriceTable

    @property
    def applicable(self) -> bool:
        """Whether anything could be priced."""
        return bool(self.items)

    def totals(self) -> dict[str, float]:
        """The amount in each currency."""
        out: dict[str, float] = {}
        for item in self.items:
            out[item.currency] = out.get(item.currency, 0.0) + item.amount
        return out


def transfer_route(src: EndpointFacts, dst: EndpointFacts | None, *, explicit: bool) -> str:
    """How bytes read from `src` leave its region: "same-region" (no charge), "inter-region"
    or "internet" (to another partition, to an endpoint that is not AWS, or to this machine
    for a local destination). With a price table given `explicit`ly, every endpoint counts
    as in the region it names."""
    if dst is None or not (dst.at_aws or explicit):
        return "internet"
    if dst.region == src.region:
        return "same-region"
    if partition(dst.region) != partition(src.region):
        return "internet"
    return "inter-region"


def cost(estimator: Estimator, table: PriceTable, *, explicit: bool) -> Cost:
    """The copy's cost at `table`'s prices.

    A side is priced when its endpoint is AWS's, or when the table was given explicitly
    (then any endpoint is priced by its region's row). Requests are billed by the region of
    the side they go to; bytes read through this machine are billed by the source's region
    as they leave it (see `transfer_route`); server-side copies move no byte out.
    """
    lines: dict[tuple[str, str, str, str, float], float] = {}
    not_priced: list[str] = []

    def line(what: str, region: str, currency: str, unit: str, price: float, n: float) -> None:
        key = (what, region, currency, unit, price)
        lines[key] = lines.get(key, 0.0) + n

    for tally in estimator.pairs.values():
        for role, facts, counts in (
            ("source", tally.src, tally.source),
            ("destination", tally.dst, tally.destination),
        ):
            if facts is None:
                continue
            if not (facts.at_aws or explicit):
                not_priced.append(f"the {role} endpoint {facts.endpoint} is not AWS")
                continue
            prices = table.prices(facts.region)
            if prices is None:
                not_priced.append(f"{table.origin} has no prices for region {facts.region}")
                continue
            writes = sum(n for kind, n in counts.items() if kind in WRITE_CLASS)
            reads = sum(n for kind, n in counts.items() if kind in READ_CLASS)
            region, currency, unit = facts.region, prices.currency, "1,000 requests"
            if writes:
                what = f"{role} PUT, COPY, POST, LIST requests"
                line(what, region, currency, unit, prices.write_requests, writes / 1000)
            if reads:
                what = f"{role} GET, HEAD requests"
                line(what, region, currency, unit, prices.read_requests, reads / 1000)
            if role != "source" or not tally.streamed:
                continue
            route = transfer_route(facts, tally.dst, explicit=explicit)
            dst = tally.dst
            if dst is None:
                to = "this machine"
            else:
                to = dst.region if dst.at_aws or explicit else dst.endpoint
            price = {
                "same-region": 0.0,
                "inter-region": prices.inter_region_out,
                "internet": prices.internet_out,
            }[route]
            what = f"data transfer {facts.region} -> {to} ({route})"
            line(what, facts.region, prices.currency, "GB", price, tally.streamed / GB)
    items = tuple(
        CostItem(what, region, currency, quantity, unit, price)
        for (what, region, currency, unit, price), quantity in lines.items()
    )
    return Cost(items=items, not_priced=tuple(dict.fromkeys(not_priced)), table=table)


# --- the whole estimate ----------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """The pre-flight estimate a dry run reports.

    Attributes:
        source: Requests to the sources, by kind.
        destination: Requests to the destinations, by kind.
        objects: Objects to copy.
        paths: Objects by path (SINGLE, MULTIPART, SERVER_COPY, SERVER_PARTS).
        streamed: Bytes through this machine.
        on_server: Bytes copied by the servers.
        deletes: Destination objects --delete removes.
        duration: How long it may take.
        cost: What AWS may charge.
        probe: What the probe measured.
    """

    source: Counter[Kind]
    destination: Counter[Kind]
    objects: int
    paths: Counter[str]
    streamed: int
    on_server: int
    deletes: int
    duration: Duration
    cost: Cost
    probe: Probe

    def requests(self) -> Counter[Kind]:
        """Both sides' requests, by kind."""
        return self.source + self.destination

    def to_json(self) -> dict[str, object]:
        cost = self.cost
        totals = cost.totals()
        return {
            "requests": {
                "source": _by_kind(self.source),
                "destination": _by_kind(self.destination),
                "total": _by_kind(self.requests()),
            },
            "objects": {"to_copy": self.objects, "by_path": dict(sorted(self.paths.items()))},
            "bytes": {
                "total": self.streamed + self.on_server,
                "through_this_machine": self.streamed,
                "copied_by_server": self.on_server,
            },
            "deletes": self.deletes,
            "duration": {
                "seconds": None
                if self.duration.seconds is None
                else round(self.duration.seconds, 3),
                "basis": self.duration.basis,
                "listing_seconds": round(self.duration.listing_seconds, 3),
                "request_seconds": round(self.duration.request_seconds, 3),
                "transfer_seconds": round(self.duration.transfer_seconds, 3),
                "in_flight": self.duration.in_flight,
                "probe": {
                    "latency_seconds": {
                        str(i): {"source": s, "destination": d}
                        for i, (s, d) in sorted(self.probe.latency.items())
                    },
                    "sample_bytes": self.probe.sample_bytes,
                    "sample_seconds": round(self.probe.sample_seconds, 6),
                    "throughput_bytes_per_second": self.probe.throughput,
                    "failed": list(self.probe.failed),
                },
            },
            "cost": {
                "applicable": cost.applicable,
                "by_currency": {c: round(a, 6) for c, a in sorted(totals.items())},
                "items": [
                    {
                        "what": i.what,
                        "region": i.region,
                        "currency": i.currency,
                        "quantity": round(i.quantity, 9),
                        "unit": i.unit,
                        "price": i.price,
                        "amount": round(i.amount, 6),
                    }
                    for i in cost.items
                ],
                "not_priced": list(cost.not_priced),
                "price_table": {"date": cost.table.date, "origin": cost.table.origin},
            },
            "assumptions": list(ASSUMED),
        }


def _by_kind(counts: Counter[Kind]) -> dict[str, int]:
    return {str(kind): counts[kind] for kind in Kind if counts[kind]}


def estimate(
    estimator: Estimator,
    probe: Probe,
    table: PriceTable,
    *,
    explicit: bool,
    planning_seconds: float,
    parallel_lists: bool = True,
) -> Estimate:
    """The whole estimate from the plan, the probe and the prices."""
    source, destination = estimator.totals()
    paths: Counter[str] = Counter()
    for tally in estimator.pairs.values():
        paths.update(tally.paths)
    tallies = list(estimator.pairs.values())
    return Estimate(
        source=source,
        destination=destination,
        objects=sum(t.objects for t in tallies),
        paths=paths,
        streamed=sum(t.streamed for t in tallies),
        on_server=sum(t.on_server for t in tallies),
        deletes=sum(t.deletes for t in tallies),
        duration=duration(estimator, probe, planning_seconds, parallel_lists=parallel_lists),
        cost=cost(estimator, table, explicit=explicit),
        probe=probe,
    )


__all__ = [
    "Cost",
    "CostItem",
    "Duration",
    "Estimate",
    "Probe",
    "cost",
    "duration",
    "estimate",
    "transfer_route",
]
