"""ListObjectsV2 replies parsed by the lean data plane, as S3 and other servers send them."""

from __future__ import annotations

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
            ("a b+c/é", 12, "abc", "2026-01-02T03:04:05.000Z"),
            ("\x01ctl", 0, None, None),
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
        ("a&b<c>\"d'e", 1, "abc", None),
        ("&lt;&amp;", 2, "x-2", None),
        ("café/&", 3, None, None),
    ]


def test_keys_are_left_alone_when_the_server_did_not_encode_them() -> None:
    body = "<IsTruncated>false</IsTruncated><Contents><Key>a+b%41</Key><Size>1</Size></Contents>"
    parsed = parse_list_page(page(body, ns=""))
    assert parsed.objects == [("a+b%41", 1, None, None)]
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
