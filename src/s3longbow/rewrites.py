"""What a run changes in the properties it writes: a Content-Type from a map of name
extensions (--content-type-map) and user metadata set on every copy (--set-metadata).

The rule for the map: a copy whose source gives no Content-Type, or only a generic one
(`application/octet-stream`, `binary/octet-stream`: "some bytes"), gets the type its key's
extension maps to; a source with any other type keeps it. A file from a local directory has no
Content-Type of its own (only a guess from its name), so the map comes before the guess there.
The extension is what follows the last "." of the key's last segment, compared without case;
a key with none is left as it is.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from s3longbow.errors import ConfigError
from s3longbow.model import ObjectProperties

# Types that say nothing of the content: a map may replace them.
GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})

# A user metadata name as S3 takes it in an x-amz-meta-* header: an HTTP token, stored in
# lower case.
_META_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# A media type: type/subtype, then parameters.
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$")


def parse_content_type_map(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """A content-type map's lines: `.ext type` (or `ext type`), `#` comments, blank lines.

    Returns:
        (extension in lower case without its dot, content type) pairs, in the file's order
        (a later line for the same extension replaces an earlier one).

    Raises:
        ConfigError: A line is not an extension and a media type (naming the line).
    """
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        extension, _, content_type = line.partition(" ")
        extension = extension.removeprefix(".").lower()
        content_type = content_type.strip()
        if not extension or "." in extension or "/" in extension or not content_type:
            raise ConfigError(
                f"{where}, line {number}: {raw.strip()!r} is not an extension and a type",
                hint="write one extension and its Content-Type a line, e.g. .json application/json",
            )
        if not _MEDIA_TYPE.match(content_type) or not content_type.isascii():
            raise ConfigError(
                f"{where}, line {number}: {content_type!r} is not a media type",
                hint="a Content-Type is type/subtype, e.g. text/html or image/webp",
            )
        found[extension] = content_type
    return tuple(found.items())


def read_content_type_map(path: Path) -> tuple[tuple[str, str], ...]:
    """The map in a file (see parse_content_type_map).

    Raises:
        ConfigError: The file cannot be read or holds a line that is no mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read content-type map {path}: {exc.strerror or exc}",
            hint="check the path given to --content-type-map (or content_type_map)",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"content-type map {path} is not UTF-8 text") from None
    return parse_content_type_map(text, f"content-type map {path}")


def parse_metadata(items: list[str] | tuple[str, ...], what: str) -> tuple[tuple[str, str], ...]:
    """`K=V` items (--set-metadata) as (name in lower case, value) pairs; a later item for
    the same name replaces an earlier one.

    Raises:
        ConfigError: An item has no "=", or a name or value S3 cannot carry in a header.
    """
    found: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(
                f"{what}: {item!r} is not NAME=VALUE",
                hint="e.g. --set-metadata owner=storage-team",
            )
        found[_meta_name(name.strip(), what)] = _meta_value(value, name, what)
    return tuple(found.items())


def metadata_table(table: object, what: str) -> tuple[tuple[str, str], ...]:
    """A config file's `set_metadata` table (name = "value") as (name, value) pairs."""
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ConfigError(
            f"{what} must be a table of strings",
            hint='e.g. set_metadata = { owner = "storage-team" }',
        )
    return tuple((_meta_name(k, what), _meta_value(v, k, what)) for k, v in table.items())


def _meta_name(name: str, what: str) -> str:
    if not _META_NAME.match(name):
        raise ConfigError(
            f"{what}: {name!r} is not a metadata name S3 takes",
            hint="use letters, digits and - _ . (it is sent as x-amz-meta-NAME)",
        )
    return name.lower()


def _meta_value(value: str, name: str, what: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{what}: the value of {name!r} holds a control character")
    return value


def extension(key: str) -> str | None:
    """The extension of a key's last segment, in lower case, without its dot."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem and ext else None


def rewrite(
    properties: ObjectProperties,
    key: str,
    *,
    content_types: tuple[tuple[str, str], ...],
    metadata: tuple[tuple[str, str], ...],
    guessed_type: bool = False,
) -> ObjectProperties:
    """The properties to write for source key `key` (see the module's rule).

    Args:
        properties: The source's.
        key: The source key (its extension chooses the type).
        content_types: The map, (extension, type) pairs.
        metadata: User metadata to add, replacing the source's of the same name (names
            compare without case, as S3 stores them).
        guessed_type: The source's Content-Type is a guess from the name (a local file),
            which the map comes before.
    """
    content_type, user_metadata = properties.content_type, properties.metadata
    if content_types and (guessed_type or _generic(content_type)):
        content_type = dict(content_types).get(extension(key) or "") or content_type
    if metadata:
        names = {name for name, _ in metadata}
        user_metadata = tuple((k, v) for k, v in user_metadata if k.lower() not in names)
        user_metadata += metadata
    if (content_type, user_metadata) == (properties.content_type, properties.metadata):
        return properties
    return dataclasses.replace(properties, content_type=content_type, metadata=user_metadata)


def _generic(content_type: str | None) -> bool:
    if not content_type:
        return True
    return content_type.split(";", 1)[0].strip().lower() in GENERIC_TYPES


__all__ = [
    "GENERIC_TYPES",
    "extension",
    "metadata_table",
    "parse_content_type_map",
    "parse_metadata",
    "read_content_type_map",
    "rewrite",
]
