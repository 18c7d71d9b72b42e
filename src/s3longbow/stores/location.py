"""Parse the SRC and DST arguments: `s3://bucket[/prefix]` or a local directory path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s3longbow.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Location:
    """Where objects live: an S3 bucket and key prefix, or a local directory.

    For S3 the prefix is kept exactly as written (no normalisation): `s3://b/a//x` has the
    prefix `a//x`. For a directory the prefix is always empty and `root` is absolute.
    """

    scheme: str  # "s3" or "file"
    bucket: str = ""
    prefix: str = ""
    root: Path | None = None

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    def __str__(self) -> str:
        if self.is_s3:
            return f"s3://{self.bucket}/{self.prefix}"
        return str(self.root)


def parse_location(text: str) -> Location:
    """Turn a command-line location into a Location, or raise ConfigError saying why not."""
    if not text:
        raise ConfigError("an empty location was given", hint="use s3://bucket/prefix or a path")
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() == "file":
            return _local(rest)
        if scheme.lower() != "s3":
            raise ConfigError(
                f"unsupported location {text!r}",
                hint="use s3://bucket[/prefix] or a local directory path",
            )
        bucket, _, prefix = rest.partition("/")
        _check_bucket(bucket, text)
        return Location(scheme="s3", bucket=bucket, prefix=prefix)
    return _local(text)


def _local(path_text: str) -> Location:
    root = Path(path_text).expanduser().resolve()
    return Location(scheme="file", root=root)


def _check_bucket(bucket: str, text: str) -> None:
    # Only what can never be a bucket is refused here; the server judges the rest.
    if not bucket:
        raise ConfigError(
            f"{text!r} names no bucket", hint="write s3://bucket-name/optional/prefix"
        )
    if len(bucket) > 255 or any(c in bucket for c in " \\?#"):
        raise ConfigError(f"{bucket!r} is not a valid bucket name")
