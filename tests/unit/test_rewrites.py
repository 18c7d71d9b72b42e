"""What a run changes in the properties it writes: the content-type map's rule, metadata set
on every copy, and the reading of both (and of SSE-C keys) with errors that name the place."""

from __future__ import annotations

import base64
import os

import pytest

from s3longbow.customerkeys import decode_key, key_args, key_headers
from s3longbow.errors import ConfigError
from s3longbow.model import ObjectProperties
from s3longbow.rewrites import extension, parse_content_type_map, parse_metadata, rewrite

MAP = parse_content_type_map(
    "# web\n.json application/json\nHTML text/html; charset=utf-8\n\n.webp image/webp\n", "m"
)


def test_a_map_is_read_as_extensions_without_dot_or_case() -> None:
    assert MAP == (
        ("json", "application/json"),
        ("html", "text/html; charset=utf-8"),
        ("webp", "image/webp"),
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [(".json", "is not an extension and a type"), (".json json", "is not a media type")],
)
def test_a_line_that_is_no_mapping_is_refused_with_its_number(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_content_type_map(f".txt text/plain\n{line}\n", "content-type map m.txt")
    assert "m.txt, line 2" in caught.value.message and problem in caught.value.message


@pytest.mark.parametrize(
    ("key", "source_type", "written"),
    [
        ("a/b.json", None, "application/json"),  # no type: mapped
        ("a/b.JSON", "binary/octet-stream", "application/json"),  # generic: mapped
        ("b.json", "application/octet-stream; x=1", "application/json"),
        ("b.json", "text/plain", "text/plain"),  # a type of its own: kept
        ("b.txt", None, None),  # not in the map
        ("dir.json/b", None, None),  # the extension is the last segment's
        (".json", None, None),  # a dot file has no extension
    ],
)
def test_the_map_replaces_only_a_missing_or_generic_type(
    key: str, source_type: str | None, written: str | None
) -> None:
    props = ObjectProperties(content_type=source_type)
    got = rewrite(props, key, content_types=MAP, metadata=())
    assert got.content_type == written


def test_a_guessed_type_gives_way_to_the_map() -> None:
    props = ObjectProperties(content_type="text/plain")
    assert rewrite(props, "x.json", content_types=MAP, metadata=(), guessed_type=True).content_type
    assert extension("a.tar.gz") == "gz" and extension("noext") is None


def test_set_metadata_adds_and_replaces_names_without_case() -> None:
    metadata = parse_metadata(["Owner=ops", "note=a=b", "owner=storage"], "--set-metadata")
    assert metadata == (("owner", "storage"), ("note", "a=b"))
    props = ObjectProperties(metadata=(("OWNER", "someone"), ("kept", "1")))
    got = rewrite(props, "k", content_types=(), metadata=metadata)
    assert got.metadata == (("kept", "1"), ("owner", "storage"), ("note", "a=b"))
    assert rewrite(props, "k", content_types=(), metadata=()) is props


@pytest.mark.parametrize("item", ["novalue", "bad name=1", "x=line\nbreak"])
def test_bad_metadata_is_refused(item: str) -> None:
    with pytest.raises(ConfigError):
        parse_metadata([item], "--set-metadata")


def test_an_sse_c_key_is_base64_of_32_bytes_or_32_raw_bytes_and_never_echoed() -> None:
    key = os.urandom(32)
    text = base64.b64encode(key).decode()
    assert decode_key(f" {text}\n", "LONGBOW_SRC_SSE_C_KEY") == key
    assert decode_key(key, "the file") == key
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(ConfigError) as caught:
        decode_key(short, "LONGBOW_DST_SSE_C_KEY")
    assert "LONGBOW_DST_SSE_C_KEY" in caught.value.message
    assert short not in caught.value.message and short not in (caught.value.hint or "")
    headers = key_headers(key, copy_source=True)
    assert headers["x-amz-copy-source-server-side-encryption-customer-key"] == text
    assert key_args(key) == {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
