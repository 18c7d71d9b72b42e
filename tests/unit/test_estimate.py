"""The pre-flight estimate as tables: requests per object by path and size, part counts at the
part-size boundaries, server-side copies against streamed ones, the duration model, the cost
by region pair (China regions in CNY), and price tables read, refused and replaced."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from s3longbow.config import GiB, MiB, TransferSettings
from s3longbow.errors import ConfigError
from s3longbow.plan.estimate import (
    MULTIPART,
    SERVER_COPY,
    SERVER_PARTS,
    SINGLE,
    Estimator,
    Kind,
    assumed_layout,
    object_requests,
)
from s3longbow.plan.preflight import Probe, cost, duration, estimate, transfer_route
from s3longbow.plan.prices import (
    BUILT_IN,
    GB,
    PriceTable,
    RegionPrices,
    builtin_table,
    parse_price_table,
    read_price_table,
)
from s3longbow.stores.base import Capabilities, EndpointFacts
from s3longbow.transfer.proof import Link

MD5 = hashlib.md5(b"an object").hexdigest()
MP2 = f"{hashlib.md5(b'parts').hexdigest()}-2"
MP3 = f"{hashlib.md5(b'parts').hexdigest()}-3"
SETTINGS = TransferSettings()  # 8 MiB parts, 5 MiB threshold
S3 = Link(src=Capabilities(), dst=Capabilities())
ON_SERVER = Link(src=Capabilities(), dst=Capabilities(), server_copy=True)
FROM_FILES = Link(src=Capabilities(content_etag=False, checksums="MD5"), dst=Capabilities())

H, G, P = Kind.HEAD, Kind.GET, Kind.PUT
CREATE, PART, DONE = Kind.CREATE, Kind.UPLOAD_PART, Kind.COMPLETE


def reqs(**counts: int) -> Counter[Kind]:
    names = {"H": H, "G": G, "P": P, "C": CREATE, "U": PART, "D": DONE}
    names |= {"COPY": Kind.COPY, "UPC": Kind.UPLOAD_PART_COPY}
    return Counter({names[k]: n for k, n in counts.items() if n})


@pytest.mark.parametrize(
    ("size", "etag", "link", "path", "source", "destination"),
    [
        # One PUT: zero bytes, small, at the threshold, over it but within one part.
        (0, hashlib.md5(b"").hexdigest(), S3, SINGLE, reqs(G=1), reqs(P=1)),
        (3 * 1024, MD5, S3, SINGLE, reqs(G=1), reqs(P=1)),
        (5 * MiB, MD5, S3, SINGLE, reqs(G=1), reqs(P=1)),
        (5 * MiB + 1, MD5, S3, SINGLE, reqs(G=1), reqs(P=1)),
        (8 * MiB, MD5, S3, SINGLE, reqs(G=1), reqs(P=1)),
        # Our parts of 8 MiB: one byte over a part makes two.
        (8 * MiB + 1, MD5, S3, MULTIPART, reqs(H=1, G=2), reqs(C=1, U=2, D=1, H=1)),
        (16 * MiB, MD5, S3, MULTIPART, reqs(H=1, G=2), reqs(C=1, U=2, D=1, H=1)),
        (16 * MiB + 1, MD5, S3, MULTIPART, reqs(H=1, G=3), reqs(C=1, U=3, D=1, H=1)),
        # A multipart source copied with its own parts: a HEAD of part 1 more.
        (24 * MiB, MP3, S3, MULTIPART, reqs(H=2, G=3), reqs(C=1, U=3, D=1, H=1)),
        (7 * MiB + 3, MP2, S3, MULTIPART, reqs(H=2, G=2), reqs(C=1, U=2, D=1, H=1)),
        # Files: no HEAD requests at a source that is no S3 endpoint are made, yet counted
        # by kind as the engine asks (the side's counts are dropped for a directory).
        (20 * MiB, None, FROM_FILES, MULTIPART, reqs(H=1, G=3), reqs(C=1, U=3, D=1, H=1)),
        (1024, None, FROM_FILES, SINGLE, reqs(G=1), reqs(P=1)),
        # On the server: CopyObject; a source ETag that is no MD5 needs a HEAD to check.
        (3 * 1024, MD5, ON_SERVER, SERVER_COPY, reqs(), reqs(COPY=1)),
        (100 * MiB, MD5, ON_SERVER, SERVER_COPY, reqs(H=1), reqs(COPY=1)),
        # A multipart source on the server: part by part, its own layout kept.
        (24 * MiB, MP3, ON_SERVER, SERVER_PARTS, reqs(H=2), reqs(C=1, UPC=3, D=1, H=1)),
        # Above 5 GiB: parts of ours (8 MiB), copied by the server.
        (6 * GiB, MD5, ON_SERVER, SERVER_PARTS, reqs(H=1), reqs(C=1, UPC=768, D=1, H=1)),
    ],
)
def test_requests_follow_the_engines_path(
    size: int,
    etag: str | None,
    link: Link,
    path: str,
    source: Counter[Kind],
    destination: Counter[Kind],
) -> None:
    one = object_requests(size, etag, link, SETTINGS)
    assert (one.path, one.source, one.destination) == (path, source, destination)
    through_here = path in (SINGLE, MULTIPART)
    assert (one.streamed, one.on_server) == ((size, 0) if through_here else (0, size))


def test_parts_grow_to_stay_within_ten_thousand() -> None:
    # 8 MiB parts would make 12,800 parts of 100 GiB: they grow to 11 MiB, 9,310 parts.
    one = object_requests(100 * GiB, MD5, S3, SETTINGS)
    assert one.source[G] == one.destination[PART] == 9310
    bigger = object_requests(20 * MiB, MD5, S3, TransferSettings(part_size=16 * MiB))
    assert bigger.destination[PART] == 2


def test_a_server_copy_of_a_source_etag_that_is_no_md5_is_checked_by_a_head() -> None:
    # A multipart source whose layout cannot be reproduced (parts below 5 MiB): CopyObject,
    # then a HEAD of the copy, since its ETag cannot be compared.
    one = object_requests(4 * MiB, MP3, ON_SERVER, SETTINGS)
    assert (one.path, one.destination) == (SERVER_COPY, reqs(COPY=1, H=1))


def test_the_assumed_layout_is_whole_mib_parts_of_at_least_5_mib() -> None:
    assert assumed_layout(7 * MiB + 3, MP2).part_size == 5 * MiB  # type: ignore[union-attr]
    assert assumed_layout(100 * MiB, f"{MD5}-13").part_size == 8 * MiB  # type: ignore[union-attr]
    assert assumed_layout(10 * MiB, MD5) is None


AWS_EAST = EndpointFacts("us-east-1", True, "AWS")
AWS_WEST = EndpointFacts("us-west-2", True, "AWS")
BEIJING = EndpointFacts("cn-north-1", True, "AWS")
NINGXIA = EndpointFacts("cn-northwest-1", True, "AWS")
MINIO = EndpointFacts("us-east-1", False, "https://minio.example")


def table() -> PriceTable:
    return PriceTable(
        date="2025-01-01",
        origin="test",
        regions={
            "us-east-1": RegionPrices("USD", 5.0, 0.4, 90.0, 20.0),
            "us-west-2": RegionPrices("USD", 5.5, 0.5, 95.0, 21.0),
            "cn-north-1": RegionPrices("CNY", 40.0, 2.0, 900.0, 600.0),
            "cn-northwest-1": RegionPrices("CNY", 41.0, 3.0, 800.0, 500.0),
        },
    )


def plan(src: EndpointFacts | None, dst: EndpointFacts | None, *, link: Link = S3) -> Estimator:
    """Two small objects and one of two parts, GB-sized bytes kept small in the counts."""
    estimator = Estimator(SETTINGS)
    estimator.pair(0, link, src, dst)
    for key, size in (("a", 1024), ("b", 2048), ("c", 12 * MiB)):
        estimator.add(0, key, size, MD5)
    estimator.pairs[0].listed(3, 2)
    return estimator


STREAMED = 1024 + 2048 + 12 * MiB
# a, b: 1 GET + 1 PUT; c: 1 HEAD + 2 GET, create + 2 parts + complete + HEAD; listings 3 + 2.
SRC_WRITES, SRC_READS = 3, 1 + 4
DST_WRITES, DST_READS = 2 + 2 + 1 + 1 + 2, 1


@pytest.mark.parametrize(
    ("src", "dst", "route"),
    [
        (AWS_EAST, AWS_EAST, "same-region"),
        (AWS_EAST, AWS_WEST, "inter-region"),
        (AWS_EAST, BEIJING, "internet"),
        (BEIJING, AWS_EAST, "internet"),
        (BEIJING, NINGXIA, "inter-region"),
        (AWS_EAST, MINIO, "internet"),
        (AWS_EAST, None, "internet"),
    ],
)
def test_transfer_route_by_region_pair(
    src: EndpointFacts, dst: EndpointFacts | None, route: str
) -> None:
    assert transfer_route(src, dst, explicit=False) == route


def test_global_to_china_bills_the_source_in_usd_and_the_destination_in_cny() -> None:
    priced = cost(plan(AWS_EAST, BEIJING), table(), explicit=False)
    usd = SRC_WRITES / 1000 * 5.0 + SRC_READS / 1000 * 0.4 + STREAMED / GB * 90.0
    cny = DST_WRITES / 1000 * 40.0 + DST_READS / 1000 * 2.0
    assert priced.totals() == {"USD": pytest.approx(usd), "CNY": pytest.approx(cny)}
    assert priced.not_priced == ()


def test_china_to_china_is_inter_region_in_cny() -> None:
    priced = cost(plan(BEIJING, NINGXIA), table(), explicit=False)
    transfer = [i for i in priced.items if i.unit == "GB"]
    assert [(i.region, i.currency, i.price) for i in transfer] == [("cn-north-1", "CNY", 600.0)]
    assert set(priced.totals()) == {"CNY"}


def test_same_region_transfer_is_free_and_server_copies_move_no_byte_out() -> None:
    same = cost(plan(AWS_EAST, AWS_EAST), table(), explicit=False)
    assert [i.amount for i in same.items if i.unit == "GB"] == [0.0]
    on_server = cost(plan(AWS_EAST, AWS_WEST, link=ON_SERVER), table(), explicit=False)
    assert [i for i in on_server.items if i.unit == "GB"] == []


def test_an_endpoint_that_is_not_aws_is_priced_only_with_a_table_given() -> None:
    priced = cost(plan(AWS_EAST, MINIO), table(), explicit=False)
    assert set(priced.totals()) == {"USD"}  # the AWS source's requests and its bytes out
    assert priced.not_priced == ("the destination endpoint https://minio.example is not AWS",)
    local = cost(plan(MINIO, MINIO), table(), explicit=False)
    assert not local.applicable and len(local.not_priced) == 2
    given = cost(plan(MINIO, MINIO), table(), explicit=True)
    assert given.applicable and given.not_priced == ()
    assert [i.amount for i in given.items if i.unit == "GB"] == [0.0]  # the same region
    # Directories make no request and pay for nothing.
    files = cost(plan(None, None), table(), explicit=False)
    assert not files.applicable and files.not_priced == ()


def test_a_region_missing_from_the_table_is_said_so() -> None:
    priced = cost(plan(EndpointFacts("me-south-1", True, "AWS"), AWS_EAST), table(), explicit=False)
    assert priced.not_priced == ("test has no prices for region me-south-1",)
    assert set(priced.totals()) == {"USD"}


def test_duration_takes_the_longer_of_round_trips_and_bytes() -> None:
    estimator = plan(AWS_EAST, AWS_WEST)
    # 10 ms round trips, 1 MiB/s per stream: the bytes dominate.
    probe = Probe(latency={0: (0.01, 0.01)}, sample_bytes=MiB, sample_seconds=1.0)
    d = duration(estimator, probe, planning_seconds=0.5)
    # As many as there are requests (12 but the listings): fewer than the 32 reads of 3 MiB
    # on average that 96 MiB of memory holds.
    requests = SRC_READS + DST_WRITES + DST_READS - 2
    assert d.in_flight == requests == 12
    assert d.request_seconds == pytest.approx(requests * 0.01 / 12)
    assert d.transfer_seconds == pytest.approx(STREAMED / MiB / 12)
    assert d.seconds == pytest.approx(d.transfer_seconds)
    # Listing longer than copying: a sync copies while it lists.
    assert duration(estimator, probe, planning_seconds=100.0).seconds == pytest.approx(100.0)
    # Less memory holds fewer: 16 MiB, five reads of 3 MiB.
    small = Estimator(TransferSettings(memory_limit=16 * MiB))
    small.pairs = estimator.pairs
    assert duration(small, probe, 0.0).in_flight == 5
    slow = TransferSettings(bandwidth_limit=1024)
    limited = Estimator(slow)
    limited.pairs = estimator.pairs
    assert duration(limited, probe, 0.0).seconds == pytest.approx(STREAMED / 1024)


def test_no_duration_without_a_probe_of_the_bytes() -> None:
    d = duration(plan(AWS_EAST, AWS_WEST), Probe(latency={0: (0.01, 0.01)}), 0.5)
    assert d.seconds is None and "no throughput sample" in d.basis
    failed = Probe(failed=("a HEAD of the bucket at AWS: refused",))
    assert duration(plan(AWS_EAST, AWS_WEST), failed, 0.5).seconds is None


def test_deletes_come_in_batches_of_a_thousand() -> None:
    estimator = plan(AWS_EAST, AWS_EAST)
    estimator.pairs[0].delete(2001)
    whole = estimate(estimator, Probe(), table(), explicit=False, planning_seconds=1.0)
    assert whole.destination[Kind.DELETE] == 3 and whole.deletes == 2001
    json = whole.to_json()
    assert json["requests"]["destination"]["DeleteObjects"] == 3  # type: ignore[index]
    assert json["cost"]["price_table"] == {"date": "2025-01-01", "origin": "test"}  # type: ignore[index]


def test_the_built_in_table_is_dated_and_prices_china_in_cny() -> None:
    built_in = builtin_table()
    assert built_in.origin == BUILT_IN and built_in.date
    for region in ("cn-north-1", "cn-northwest-1"):
        assert built_in.prices(region).currency == "CNY"  # type: ignore[union-attr]
    for region in ("us-east-1", "eu-west-1", "ap-northeast-1"):
        assert built_in.prices(region).currency == "USD"  # type: ignore[union-attr]
    assert "approximate" in built_in.notes


def test_a_table_file_replaces_the_built_in_one(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        "date = 2024-06-30\n"
        "[regions.us-east-1]\n"
        'currency = "usd"\nwrite_requests = 1\nread_requests = 0.5\n'
        "internet_out = 0.05\ninter_region_out = 0.01\n"
    )
    read = read_price_table(path)
    assert (read.date, read.origin, list(read.regions)) == ("2024-06-30", str(path), ["us-east-1"])
    assert read.prices("us-east-1") == RegionPrices("USD", 1.0, 0.5, 0.05, 0.01)
    assert read.prices("cn-north-1") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"regions": {}}, "is not a date"),
        ({"date": "2025-01-01"}, "no [regions]"),
        ({"date": "2025-01-01", "region": {}}, "unknown key(s) region"),
        ({"date": "2025-01-01", "regions": {"x": {"currency": "USD"}}}, "missing write_requests"),
        (
            {
                "date": "2025-01-01",
                "regions": {
                    "x": {
                        "currency": "USD",
                        "write_requests": -1,
                        "read_requests": 0,
                        "internet_out": 0,
                        "inter_region_out": 0,
                    }
                },
            },
            "write_requests -1 is not a price",
        ),
        (
            {
                "date": "2025-01-01",
                "regions": {
                    "x": {
                        "currency": "dollars",
                        "write_requests": 1,
                        "read_requests": 0,
                        "internet_out": 0,
                        "inter_region_out": 0,
                    }
                },
            },
            "is not a currency code",
        ),
    ],
)
def test_a_bad_table_is_refused_with_what_is_wrong(
    document: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match="price table mine") as caught:
        parse_price_table(document, "mine")
    assert message in caught.value.message


def test_an_unreadable_table_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read price table"):
        read_price_table(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("date = [\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_price_table(bad)


@pytest.mark.parametrize(
    ("url", "region", "at_aws"),
    [
        (None, "cn-north-1", True),
        ("https://s3.eu-west-1.amazonaws.com", "eu-west-1", True),
        ("https://s3.cn-northwest-1.amazonaws.com.cn", "cn-northwest-1", True),
        ("http://127.0.0.1:9000", "us-east-1", False),
        ("https://amazonaws.com.example.net", "us-east-1", False),
    ],
)
def test_an_s3_store_says_where_its_requests_go(url: str | None, region: str, at_aws: bool) -> None:
    from s3longbow.config import SideSettings
    from s3longbow.stores.base import RemoteStore
    from s3longbow.stores.local import LocalStore
    from s3longbow.stores.s3 import S3Store

    side = SideSettings(endpoint_url=url, region=region, access_key_id="k", secret_access_key="s")
    store = S3Store("bucket", side)
    try:
        assert isinstance(store, RemoteStore)
        assert store.endpoint_facts() == EndpointFacts(region, at_aws, url or "AWS")
        assert store.listing_requests() == 0
    finally:
        store.close()
    assert not isinstance(LocalStore(Path("/nonexistent")), RemoteStore)
