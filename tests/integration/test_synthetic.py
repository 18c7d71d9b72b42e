"""The synthetic listing endpoint, read with boto3: every page, continuation, start-after,
marker, prefix and delimiter as a plain sorted list of the same keys would answer them, and
the key space's sizes and ETags in its listings, without the keys held anywhere."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from longbow_testkit.synthetic import KeySpace, SyntheticS3, start_process

# 25 folders of 100 keys; every third index missing, every fifth of another size.
SPACE = KeySpace(2500, missing_every=3, differs_every=5, per_folder=100)
DENSE = KeySpace(2000, per_folder=100)


def reference(
    space: KeySpace, prefix: str = "", delimiter: str = "", after: str | None = None
) -> list[str]:
    """What a listing of `space` must hold, from a plain sorted list of its keys: the keys
    after `after` (and past every key under it when it names a common prefix, as S3 goes on
    after one), rolled up at the delimiter."""
    keys = [space.key(i) for i in range(space.count) if space.present(i)]
    keys = [k for k in keys if k.startswith(prefix)]
    if after is not None:
        cut = after.find(delimiter, len(prefix)) if delimiter else -1
        names_group = after.startswith(prefix) and cut >= 0 and cut + len(delimiter) == len(after)
        keys = [k for k in keys if k > after and not (names_group and k.startswith(after))]
    names: list[str] = []
    for key in keys:
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        name = key if cut < 0 else key[: cut + len(delimiter)]
        if not names or names[-1] != name:
            names.append(name)
    return names


@pytest.fixture(scope="module")
def server() -> Iterator[SyntheticS3]:
    buckets = {"spaced": SPACE, "dense": DENSE, "huge": KeySpace(10**9), "empty": KeySpace(0)}
    with SyntheticS3(buckets) as s3:
        yield s3


def listed_v2(server: SyntheticS3, bucket: str, page_size: int, **kwargs: str) -> list[str]:
    """Every name of a ListObjectsV2 listing, through boto3's paginator (continuation
    tokens), checking that each page holds at most `page_size` names."""
    client = server.endpoint.client()
    names: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": page_size}, **kwargs
    )
    for page in pages:
        held = [o["Key"] for o in page.get("Contents", [])]
        held += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert len(held) <= page_size and page["KeyCount"] == len(held)
        names += sorted(held)  # S3 sends a page's keys, then its common prefixes
    return names


@pytest.mark.parametrize("page_size", [1, 7, 1000])
def test_a_whole_listing_in_pages_holds_every_present_key_once(
    server: SyntheticS3, page_size: int
) -> None:
    names = listed_v2(server, "spaced", page_size)
    assert names == reference(SPACE)
    assert len(names) == SPACE.present_count == 2500 - 834


def test_listed_sizes_and_etags_are_the_key_space_s(server: SyntheticS3) -> None:
    client = server.endpoint.client()
    page = client.list_objects_v2(Bucket="spaced", Prefix="data/000007/")
    listed = {o["Key"]: (o["Size"], o["ETag"].strip('"')) for o in page["Contents"]}
    expected = {
        SPACE.key(i): (SPACE.size(i), SPACE.etag(i)) for i in range(700, 800) if SPACE.present(i)
    }
    assert listed == expected
    # Every fifth index differs from the same index in a space without the variant.
    assert SPACE.size(710) == DENSE.size(710) + 1 and SPACE.etag(710) != DENSE.etag(710)
    assert SPACE.size(701) == DENSE.size(701) and SPACE.etag(701) == DENSE.etag(701)
    head = client.head_object(Bucket="spaced", Key=SPACE.key(710))
    assert head["ContentLength"] == SPACE.size(710) and head["ETag"] == f'"{SPACE.etag(710)}"'
    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket="spaced", Key=SPACE.key(6))  # a multiple of 3: missing
    assert missing.value.response["Error"]["Code"] == "404"


@pytest.mark.parametrize(
    ("prefix", "delimiter"),
    [
        ("", "/"),
        ("data/", "/"),
        ("data/0000", "/"),
        ("data/00001", "/"),
        ("data/000012/", "/"),
        ("data/000012/object-00000125", ""),
        ("data/000012/object-", "-"),
        ("data/", "1"),
        ("nothing/", "/"),
    ],
)
def test_prefixes_and_delimiters(server: SyntheticS3, prefix: str, delimiter: str) -> None:
    extra = {"Delimiter": delimiter} if delimiter else {}
    for page_size in (3, 1000):
        assert listed_v2(server, "spaced", page_size, Prefix=prefix, **extra) == reference(
            SPACE, prefix, delimiter
        )


@pytest.mark.parametrize(
    ("after", "prefix", "delimiter"),
    [
        ("data/000003/object-000000350.bin", "", ""),  # a key that is there
        ("data/000003/object-000000351.bin", "", ""),  # one that is missing (351 = 3 x 117)
        ("data/000003/obj", "", ""),  # a name between keys
        ("a", "", ""),  # before every key
        ("z", "", ""),  # after every key
        ("data/000005/", "data/", "/"),  # a common prefix: the listing goes on past it
        ("data/000005/object-000000550.bin", "data/", "/"),  # inside a group: it comes again
    ],
)
def test_start_after(server: SyntheticS3, after: str, prefix: str, delimiter: str) -> None:
    extra = {"Delimiter": delimiter} if delimiter else {}
    names = listed_v2(server, "spaced", 10, StartAfter=after, Prefix=prefix, **extra)
    assert names == reference(SPACE, prefix, delimiter, after)


def test_the_older_listobjects_pages_by_marker(server: SyntheticS3) -> None:
    client = server.endpoint.client()
    for kwargs in ({}, {"Prefix": "data/", "Delimiter": "/"}):
        names: list[str] = []
        for page in client.get_paginator("list_objects").paginate(
            Bucket="spaced", PaginationConfig={"PageSize": 9}, **kwargs
        ):
            names += sorted(
                [o["Key"] for o in page.get("Contents", [])]
                + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            )
        assert names == reference(SPACE, kwargs.get("Prefix", ""), kwargs.get("Delimiter", ""))
    page = client.list_objects(Bucket="spaced", Marker=SPACE.key(1000), MaxKeys=2)
    assert [o["Key"] for o in page["Contents"]] == [SPACE.key(1001), SPACE.key(1003)]


def test_a_billion_keys_are_listed_from_anywhere_at_once(server: SyntheticS3) -> None:
    huge = KeySpace(10**9)
    client = server.endpoint.client()
    page = client.list_objects_v2(Bucket="huge", StartAfter=huge.key(987_654_321), MaxKeys=3)
    assert [o["Key"] for o in page["Contents"]] == [huge.key(987_654_322 + i) for i in range(3)]
    assert page["IsTruncated"]
    last = client.list_objects_v2(Bucket="huge", StartAfter=huge.key(10**9 - 2))
    assert [o["Key"] for o in last["Contents"]] == [huge.key(10**9 - 1)]
    assert not last["IsTruncated"]
    folders = client.list_objects_v2(Bucket="huge", Prefix="data/", Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == ["data/000000/", "data/000001/"]


def test_bucket_calls_and_refusals(server: SyntheticS3) -> None:
    client = server.endpoint.client()
    head = client.head_bucket(Bucket="dense")["ResponseMetadata"]["HTTPHeaders"]
    assert head["x-amz-bucket-region"] == "us-east-1" and head["server"] == "SyntheticS3"
    assert client.get_bucket_location(Bucket="dense").get("LocationConstraint") is None
    assert client.list_objects_v2(Bucket="empty")["KeyCount"] == 0
    with pytest.raises(ClientError) as gone:
        client.list_objects_v2(Bucket="nosuchbucket")
    assert gone.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket="dense", Key="x", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(ClientError) as bad_token:
        client.list_objects_v2(Bucket="dense", ContinuationToken="***")
    assert bad_token.value.response["Error"]["Code"] == "InvalidArgument"


def test_url_encoding_is_said_when_asked(server: SyntheticS3) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for query, said in (("list-type=2&max-keys=1&encoding-type=url", True), ("list-type=2", False)):
        conn.request("GET", f"/dense?{query}")
        body = conn.getresponse().read()
        assert (b"<EncodingType>url</EncodingType>" in body) is said
    conn.close()


def test_as_a_process_it_serves_and_counts_its_cpu() -> None:
    with start_process({"b": KeySpace(5000, missing_every=2)}) as process:
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=10)
        conn.request("GET", "/b?list-type=2&prefix=data/000004/")
        body = conn.getresponse().read()
        assert body.count(b"<Key>") == 500 and b"<IsTruncated>false</IsTruncated>" in body
        conn.close()
        assert process.cpu_seconds() > 0
    assert process.proc.returncode == 0
