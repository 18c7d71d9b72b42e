"""ListObjectsV2 replies parsed by the lean data plane, as S3 and other servers send them."""

from __future__ import annotations

import random
from html import escape
from urllib.parse import quote
from xml.etree import ElementTree

import pytest

from s3longbow.model import RestoreStatus
from s3longbow.stores.s3 import wire
from s3longbow.stores.s3.wire import ListPage, parse_list_page

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def page(body: str, ns: str = NS) -> bytes:
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    return f"{head}<ListBucketResult {ns}>{body}</ListBucketResult>".encode()


def test_objects_prefixes_and_the_next_token() -> None:
    body = (
        "<IsTruncated>true</IsTruncated><NextContinuationToken>tok/+=</NextContinuationToken>"
        "<EncodingType>url</EncodingType>"
        "<Contents><Key>a+b%2Bc/%C3%A9</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag>"
        "<LastModified>2026-01-02T03:04:05.000Z</LastModified></Contents>"
        "<Contents><Key>%01ctl</Key><Size>0</Size></Contents>"
        "<CommonPrefixes><Prefix>sub+dir/</Prefix></CommonPrefixes>"
    )
    assert parse_list_page(page(body)) == ListPage(
        objects=[
            ("a b+c/é", 12, "abc", "2026-01-02T03:04:05.000Z", None, None),
            ("\x01ctl", 0, None, None, None, None),
        ],
        prefixes=["sub dir/"],
        next_token="tok/+=",
        truncated=True,
    )


def test_xml_entities_and_character_references_in_values() -> None:
    body = (
        "<IsTruncated>false</IsTruncated>"
        "<Contents><Key>a&amp;b&lt;c&gt;&quot;d&apos;e</Key><Size>1</Size>"
        "<ETag>&quot;abc&quot;</ETag></Contents>"
        '<Contents><Key>&amp;lt;&amp;amp;</Key><Size>2</Size><ETag>"x-2"</ETag></Contents>'
        "<Contents><Key>caf&#233;&#x2F;&amp;</Key><Size>3</Size></Contents>"
    )
    assert parse_list_page(page(body, ns="")).objects == [
        ("a&b<c>\"d'e", 1, "abc", None, None, None),
        ("&lt;&amp;", 2, "x-2", None, None, None),
        ("café/&", 3, None, None, None, None),
    ]


def test_keys_are_left_alone_when_the_server_did_not_encode_them() -> None:
    body = "<IsTruncated>false</IsTruncated><Contents><Key>a+b%41</Key><Size>1</Size></Contents>"
    parsed = parse_list_page(page(body, ns=""))
    assert parsed.objects == [("a+b%41", 1, None, None, None, None)]
    assert parsed.next_token is None


def test_a_token_on_a_last_page_is_ignored() -> None:
    body = "<IsTruncated>false</IsTruncated><NextContinuationToken>x</NextContinuationToken>"
    assert parse_list_page(page(body)).next_token is None


def _both_ways(body: str) -> list[ListPage]:
    """The reply read by the fast scan and by the XML tree (a namespace prefix forces it)."""
    tree = body.replace("<", "<s3:").replace("<s3:/", "</s3:")
    tree_page = page(tree, ns='xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"')
    return [
        parse_list_page(page(body)),
        parse_list_page(tree_page.replace(b"ListBucketResult", b"s3:ListBucketResult")),
    ]


def test_a_truncated_page_without_a_token_says_it_is_truncated() -> None:
    body = (
        "<KeyCount>1</KeyCount><IsTruncated>true</IsTruncated>"
        "<Contents><Key>a</Key><Size>1</Size></Contents>"
    )
    for parsed in _both_ways(body):
        assert parsed.truncated and parsed.next_token is None and not parsed.v1


def test_a_reply_in_the_older_listobjects_form_is_told_apart() -> None:
    body = (
        "<Marker></Marker><NextMarker>b%2Bc%2F</NextMarker><EncodingType>url</EncodingType>"
        "<IsTruncated>true</IsTruncated><Contents><Key>a</Key><Size>1</Size></Contents>"
    )
    for parsed in _both_ways(body):
        assert parsed.truncated and parsed.v1
        assert parsed.next_marker == "b+c/"
        assert parsed.next_token is None


def test_storage_classes_and_restore_statuses_are_read_both_ways() -> None:
    body = (
        "<KeyCount>4</KeyCount><IsTruncated>false</IsTruncated>"
        "<Contents><Key>cold</Key><Size>1</Size><StorageClass>GLACIER</StorageClass></Contents>"
        "<Contents><Key>coming</Key><Size>2</Size><StorageClass>DEEP_ARCHIVE</StorageClass>"
        "<RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress></RestoreStatus>"
        "</Contents>"
        "<Contents><Key>thawed</Key><Size>3</Size><StorageClass>GLACIER</StorageClass>"
        "<RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress>"
        "<RestoreExpiryDate>2026-01-09T00:00:00.000Z</RestoreExpiryDate></RestoreStatus>"
        "</Contents>"
        "<Contents><Key>warm</Key><Size>4</Size><StorageClass>STANDARD</StorageClass></Contents>"
    )
    for parsed in _both_ways(body):
        assert [(o[0], o[4], o[5]) for o in parsed.objects] == [
            ("cold", "GLACIER", None),
            ("coming", "DEEP_ARCHIVE", RestoreStatus.IN_PROGRESS),
            ("thawed", "GLACIER", RestoreStatus.RESTORED),
            ("warm", None, None),  # STANDARD is kept as nothing
        ]


def _s3_shaped_page(rng: random.Random) -> bytes:
    """A random page laid out as S3 lays it out: awkward keys, URL-encoded or escaped as
    XML, ETags quoted either way (or empty), checksums, common prefixes, page fields."""
    encoded = rng.random() < 0.5
    alphabet = "ab/+% &<>\"'é\x01"

    def name(text: str) -> str:
        return quote(text, safe="/") if encoded else escape(text)  # escape: &#x27; too

    keys = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(20)}
    body = f"<IsTruncated>{rng.choice(['true', 'false'])}</IsTruncated><KeyCount>0</KeyCount>"
    if rng.random() < 0.5:
        body += "<NextContinuationToken>t&amp;k/+=</NextContinuationToken>"
    if encoded:
        body += "<EncodingType>url</EncodingType>"
    for key in sorted(keys)[: rng.randint(0, 20)]:
        checksum = rng.choice(["", "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm>"])
        etag = rng.choice(["&quot;9b2cf5-2&quot;", '"d41d8cd98f"', "", "&quot;&quot;", "x"])
        body += (
            f"<Contents><Key>{name(key)}</Key><LastModified>2026-01-02T03:04:05.000Z"
            f"</LastModified><ETag>{etag}</ETag>{checksum}<Size>{rng.randint(0, 10**13)}</Size>"
            "<Owner><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>"
        )
    for group in sorted(keys)[: rng.randint(0, 3)]:
        body += f"<CommonPrefixes><Prefix>{name(group)}/</Prefix></CommonPrefixes>"
    return page(body)


def test_pages_laid_out_as_s3_does_are_read_as_the_token_scan_reads_them() -> None:
    rng = random.Random(20261206)
    for _ in range(300):
        body = _s3_shaped_page(rng)
        fast = wire._parse_s3_shaped(body)
        assert fast is not None, body  # the layout is recognised...
        assert fast == wire._parse_tokens(body) == parse_list_page(body)  # ...and read alike


def test_other_layouts_and_broken_pages_are_left_to_the_token_scan() -> None:
    size_first = (
        "<IsTruncated>false</IsTruncated><Contents><Key>a&amp;b</Key><Size>3</Size>"
        "<ETag>&quot;e&quot;</ETag><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
        "</Contents><Contents><Key>c</Key><LastModified>2026-01-02T03:04:05.000Z"
        "</LastModified><ETag>&quot;f&quot;</ETag><Size>4</Size></Contents>"
    )
    assert wire._parse_s3_shaped(page(size_first)) is None
    assert parse_list_page(page(size_first)).objects == [
        ("a&b", 3, "e", "2026-01-02T03:04:05.000Z", None, None),
        ("c", 4, "f", "2026-01-02T03:04:05.000Z", None, None),
    ]
    # A page cut short inside an entry is an error, not a shorter page.
    cut = page(size_first).split(b"<Size>4")[0] + b"<Size>4</Size>"
    assert wire._parse_s3_shaped(cut) is None
    with pytest.raises(ElementTree.ParseError):
        parse_list_page(cut)


def test_the_s3_layout_reads_each_entrys_storage_class_and_restore_status() -> None:
    entries = "".join(
        f"<Contents><Key>k{n}</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
        f"<ETag>&quot;e{n}&quot;</ETag><Size>{n}</Size>{tail}</Contents>"
        for n, tail in enumerate(
            [
                "<Owner><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass>",
                "<StorageClass>GLACIER</StorageClass>",
                "<StorageClass>DEEP_ARCHIVE</StorageClass><RestoreStatus>"
                "<IsRestoreInProgress>true</IsRestoreInProgress></RestoreStatus>",
                "<StorageClass>GLACIER</StorageClass><RestoreStatus><IsRestoreInProgress>false"
                "</IsRestoreInProgress><RestoreExpiryDate>2026-02-01T00:00:00.000Z"
                "</RestoreExpiryDate></RestoreStatus>",
                "",
            ]
        )
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name>'
        f"<KeyCount>5</KeyCount><IsTruncated>false</IsTruncated>{entries}</ListBucketResult>"
    ).encode()
    objects = parse_list_page(body).objects
    assert [(o[0], o[4], o[5]) for o in objects] == [
        ("k0", None, None),
        ("k1", "GLACIER", None),
        ("k2", "DEEP_ARCHIVE", RestoreStatus.IN_PROGRESS),
        ("k3", "GLACIER", RestoreStatus.RESTORED),
        ("k4", None, None),
    ]
