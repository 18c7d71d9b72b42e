"""What travels in an S3 request's URL and in its replies' XML: key and query encoding,
ListObjectsV2 pages (and the older ListObjects form), error documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape, unescape
from urllib.parse import quote, unquote_plus
from xml.etree import ElementTree

from s3longbow.model import RestoreStatus

# One listed object: key, size, ETag without quotes, LastModified text, storage class, and
# the state of its restored copy (where the listing tells it).
ListedObject = tuple[str, int, str | None, str | None, str | None, RestoreStatus | None]


def encode_key(key: str) -> str:
    """Percent-encode an object key for the request path.

    Everything except RFC 3986 unreserved characters (``A-Z a-z 0-9 - _ . ~``) and ``/`` is
    encoded from the key's UTF-8 bytes. Nothing is normalised: ``//``, a leading ``/`` and
    ``.``/``..`` segments reach the server as they are, which is what S3 signs and stores.

    Args:
        key: The object key, any unicode.

    Returns:
        The encoded key, ASCII only.
    """
    return quote(key, safe="/")


def encode_query_value(value: str) -> str:
    """Percent-encode a query-string name or value (everything but unreserved characters).

    Args:
        value: The raw name or value, e.g. an upload id.

    Returns:
        The encoded text, as SigV4's canonical query string needs it.
    """
    return quote(value, safe="")


_ERROR_FIELD = {
    name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL) for name in ("Code", "Message")
}


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing, its values as the server sent them.

    Attributes:
        objects: (key, size, ETag without quotes or None, LastModified text or None, storage
            class or None, restore status or None).
        prefixes: The common prefixes (sub-folders) of a delimited listing.
        next_token: Where the next page starts (None on the last page, and on a truncated
            page that names no token: see `truncated`).
        truncated: The server says more keys follow.
        next_marker: The key after which the next page starts, where the reply is in the
            older ListObjects (V1) form and names one.
        v1: The reply is in the older ListObjects form (a server that ignores list-type=2):
            its next page is asked for with `marker`, not `start-after`.
    """

    objects: list[ListedObject]
    prefixes: list[str]
    next_token: str | None
    truncated: bool = False
    next_marker: str | None = None
    v1: bool = False


def parse_list_page(body: bytes) -> ListPage:
    """Parse a ListObjectsV2 reply (with or without the S3 XML namespace).

    A page of 1,000 keys is read by regular expressions (several times faster than building
    its XML tree, which dominated planning's CPU): one match per entry where every entry is
    laid out as S3 lays it out, else a scan token by token; a reply in a form neither
    expects (namespace prefixes, CDATA) is parsed as XML instead.
    """
    if b"CDATA" in body or b":Contents>" in body:
        return _parse_list_tree(body)
    return _parse_s3_shaped(body) or _parse_tokens(body)


def _parse_s3_shaped(body: bytes) -> ListPage | None:
    """A page whose every entry is laid out as S3 lays it out (Key, LastModified, ETag, any
    checksums, then Size; then the owner, storage class and restore status, looked for only
    where they are), read by one match per entry: over twice the speed of the token scan.
    None for any other layout, or a page cut short (the token scan reads it)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    entries = _S3_CONTENTS.findall(text)
    count = len(entries)
    if text.count("<Contents>") != count or text.count("</Contents>") != count:
        return None
    groups = _S3_PREFIXES.findall(text)
    if text.count("<CommonPrefixes>") != len(groups):
        return None
    top = {name: _unescape(value) for name, value in _S3_PAGE_FIELDS.findall(text)}
    encoded = top.get("EncodingType", "").lower() == "url"
    # A key as the token scan makes it: XML entities, then URL encoding where said.
    objects: list[ListedObject] = [
        (
            _key(key, encoded) if encoded or "&" in key else key,
            int(size),
            etag if etag or quoted else None,
            _unescape(modified),
            _tail_class(rest) if rest else None,
            _tail_restore(rest) if rest else None,
        )
        for key, modified, quoted, etag, size, rest in entries
    ]
    prefixes = [_key(group, encoded) for group in groups]
    marker = top.get("NextMarker")
    if encoded and marker:
        marker = unquote_plus(marker)
    truncated = top.get("IsTruncated", "").lower() == "true"
    token = top.get("NextContinuationToken") if truncated else None
    v1 = "<KeyCount>" not in text and ("<Marker" in text or marker is not None)
    return ListPage(objects, prefixes, token or None, truncated, marker or None, v1)


def _key(name: str, encoded: bool) -> str:
    name = _unescape(name)
    return unquote_plus(name) if encoded else name


# S3's own layout of an entry; what follows Size (Owner, StorageClass, RestoreStatus) is
# taken whole and read only for the fields a copy needs.
_S3_CONTENTS = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>([^<]*)</LastModified>"
    r'<ETag>(&quot;|")?([^<&"]*)(?:&quot;|")?</ETag>'
    r"(?:<Checksum\w*>[^<]*</Checksum\w*>)*<Size>(\d+)</Size>(.*?)</Contents>",
    re.DOTALL,
)
_TAIL_CLASS = re.compile(r"<StorageClass>([^<]*)</StorageClass>")
_TAIL_RESTORE = re.compile(r"<IsRestoreInProgress>([^<]*)</IsRestoreInProgress>")


def _tail_class(rest: str) -> str | None:
    found = _TAIL_CLASS.search(rest) if "<StorageClass>" in rest else None
    return storage_class(found.group(1)) if found else None


def _tail_restore(rest: str) -> RestoreStatus | None:
    found = _TAIL_RESTORE.search(rest) if "<IsRestoreInProgress>" in rest else None
    return restore_status(found.group(1)) if found else None


_S3_PREFIXES = re.compile(r"<CommonPrefixes><Prefix>([^<]*)</Prefix></CommonPrefixes>")
_S3_PAGE_FIELDS = re.compile(
    r"<(NextContinuationToken|IsTruncated|EncodingType|NextMarker)>([^<]*)</\1>"
)


def _parse_tokens(body: bytes) -> ListPage:
    """A page read token by token, whatever the order of each entry's fields."""
    objects: list[ListedObject] = []
    prefixes: list[str] = []
    top: dict[bytes, str] = {}
    fields: dict[bytes, str] = {}
    in_prefixes = False
    for match in _LIST_TOKENS.finditer(body):
        name, value, closing, section = match.groups()
        if section is not None:
            if section == b"Contents" and closing:
                objects.append(_entry(fields))
                fields = {}
            in_prefixes = section == b"CommonPrefixes" and not closing
        elif in_prefixes and name == b"Prefix":
            fields[name] = _text(value)
            prefixes.append(fields.pop(name))
        elif name in _OBJECT_FIELDS:
            fields[name] = _text(value)
        else:
            top[name] = _text(value)
    if fields:
        raise ElementTree.ParseError("a listing entry is not closed")
    marker = top.get(b"NextMarker")
    if top.get(b"EncodingType", "").lower() == "url":
        objects = [(unquote_plus(k), n, e, t, c, r) for k, n, e, t, c, r in objects]
        prefixes = [unquote_plus(p) for p in prefixes]
        marker = unquote_plus(marker) if marker else marker
    truncated = top.get(b"IsTruncated", "").lower() == "true"
    token = top.get(b"NextContinuationToken") if truncated else None
    v1 = b"<KeyCount>" not in body and (b"<Marker" in body or marker is not None)
    return ListPage(objects, prefixes, token or None, truncated, marker or None, v1)


_LIST_TOKENS = re.compile(
    rb"<(Key|Size|ETag|LastModified|StorageClass|IsRestoreInProgress|Prefix"
    rb"|NextContinuationToken|IsTruncated|EncodingType|NextMarker)>"
    rb"([^<]*)</\1>|<(/?)(Contents|CommonPrefixes)>"
)

_OBJECT_FIELDS = frozenset(
    {b"Key", b"Size", b"ETag", b"LastModified", b"StorageClass", b"IsRestoreInProgress"}
)


def _text(value: bytes) -> str:
    return _unescape(value.decode("utf-8"))


def _unescape(text: str) -> str:
    """XML text with its entities and character references replaced."""
    if "&" not in text:
        return text
    if "&#" in text:
        return unescape(text)  # character references
    # XML's five named entities, "&amp;" last. S3 sends every ETag as &quot;...&quot;, and
    # html.unescape's general path cost a fifth of the time a page took to parse.
    for entity, character in _XML_ENTITIES:
        if entity in text:
            text = text.replace(entity, character)
    return text


_XML_ENTITIES = (("&quot;", '"'), ("&apos;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def _entry(fields: dict[bytes, str]) -> ListedObject:
    etag = fields.get(b"ETag")
    return (
        fields.get(b"Key", ""),
        int(fields.get(b"Size") or 0),
        etag.strip('"') if etag else None,
        fields.get(b"LastModified"),
        storage_class(fields.get(b"StorageClass")),
        restore_status(fields.get(b"IsRestoreInProgress")),
    )


def storage_class(name: str | None) -> str | None:
    """A listed storage class; None for STANDARD (what most objects are: kept as nothing)."""
    return None if not name or name == "STANDARD" else name


def restore_status(in_progress: str | None) -> RestoreStatus | None:
    """A listing's RestoreStatus from its IsRestoreInProgress (absent: none asked for, or
    none told); a finished restore carries its expiry date beside "false"."""
    if in_progress is None:
        return None
    if in_progress.strip().lower() == "true":
        return RestoreStatus.IN_PROGRESS
    return RestoreStatus.RESTORED


def _parse_list_tree(body: bytes) -> ListPage:
    """The same reply parsed as an XML tree (the slower, general path)."""
    root = ElementTree.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
    # S3 encodes as HTML forms do: a space is "+", a "+" is "%2B".
    decode: Callable[[str], str] = unquote_plus if encoded else _same
    key_tag, size_tag, etag_tag, time_tag, class_tag = (f"{ns}{n}" for n in _CONTENT_FIELDS)
    restore_tag = f"{ns}RestoreStatus/{ns}IsRestoreInProgress"
    objects: list[ListedObject] = []
    prefixes = []
    for element in root:
        tag = element.tag
        if tag == f"{ns}Contents":
            etag = element.findtext(etag_tag)
            objects.append(
                (
                    decode(element.findtext(key_tag) or ""),
                    int(element.findtext(size_tag) or 0),
                    etag.strip('"') if etag else None,
                    element.findtext(time_tag),
                    storage_class(element.findtext(class_tag)),
                    restore_status(element.findtext(restore_tag)),
                )
            )
        elif tag == f"{ns}CommonPrefixes":
            prefixes.append(decode(element.findtext(f"{ns}Prefix") or ""))
    truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken") if truncated else None
    marker = root.findtext(f"{ns}NextMarker")
    marker = decode(marker) if marker else None
    v1 = root.find(f"{ns}KeyCount") is None and (
        root.find(f"{ns}Marker") is not None or marker is not None
    )
    return ListPage(objects, prefixes, token or None, truncated, marker, v1)


_CONTENT_FIELDS = ("Key", "Size", "ETag", "LastModified", "StorageClass")


def _same(text: str) -> str:
    return text


def _parse_error(body: bytes) -> tuple[str, str]:
    """Code and Message of an S3 XML error body ("" for what is missing or not XML)."""
    text = body.decode("utf-8", errors="replace")
    fields = []
    for name in ("Code", "Message"):
        match = _ERROR_FIELD[name].search(text)
        fields.append(unescape(match.group(1).strip()) if match else "")
    return fields[0], fields[1]


def _xml_field(body: bytes, name: str) -> str | None:
    match = re.search(rf"<{name}>([^<]*)</{name}>".encode(), body)
    return unescape(match.group(1).decode("utf-8", "replace")).strip() if match else None


def _xml_text(value: str) -> str:
    """`value` escaped as XML character data."""
    return escape(value, quote=False)


def unquote_etag(etag: str | None) -> str | None:
    if etag is None:
        return None
    return etag.strip('"')
