"""Parse the SRC and DST arguments (`s3://bucket[/prefix]` or a local directory path) and
check endpoint URLs."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
    # Only what can never be a bucket is refused here; the side's naming rules are applied
    # when its store opens (check_bucket_name), where they are known.
    if not bucket:
        raise ConfigError(
            f"{text!r} names no bucket", hint="write s3://bucket-name/optional/prefix"
        )
    problem = _never_a_bucket(bucket)
    if problem:
        raise ConfigError(
            f"{bucket!r} in {text!r} is not a valid bucket name: {problem}",
            hint="bucket names have no spaces, control characters, backslashes, '?' or '#'; "
            "quote the whole URL",
        )


# S3's rules for bucket names: 3-63 lowercase letters, digits, dots and hyphens, a letter or
# digit at each end.
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _never_a_bucket(bucket: str) -> str | None:
    """Why `bucket` can be no store's bucket name (it would break the request line or the
    URL), or None."""
    if len(bucket) > 255:
        return "longer than 255 characters"
    for char in bucket:
        if char in " /?#\\" or not char.isprintable():
            return f"it holds {char!r}"
    return None


def check_bucket_name(bucket: str, naming: str = "strict") -> None:
    """Refuse a bucket name the side's rules do not allow.

    Args:
        bucket: The name.
        naming: "strict" (S3's rules, the default) or "relaxed" (other stores' names, such
            as capitals or underscores; still no control characters, spaces, '/', '?', '#'
            or backslashes).

    Raises:
        ConfigError: The name breaks the rules, saying which and how to relax them.
    """
    problem = _never_a_bucket(bucket) if bucket else "it is empty"
    if problem is None and naming != "relaxed":
        if not _S3_BUCKET.fullmatch(bucket):
            problem = "S3 bucket names are 3-63 lowercase letters, digits, dots and hyphens"
        elif ".." in bucket or _is_ip_address(bucket):
            problem = "S3 bucket names have no '..' and are not IP addresses"
        elif bucket.startswith(_RESERVED_PREFIXES) or bucket.endswith(_RESERVED_SUFFIXES):
            problem = "S3 reserves that prefix or suffix"
    if problem is not None:
        raise ConfigError(
            f"{bucket!r} is not a valid bucket name: {problem}",
            hint='for a store with other naming rules, set bucket_names = "relaxed" for '
            "that side (or pass --src-bucket-names relaxed / --dst-bucket-names relaxed)",
        )


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine: 127.0.0.0/8, ::1 or localhost."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(
    url: str | None,
    *,
    allow_http: bool,
    flag: str = "--src-allow-http / --dst-allow-http (allow_http = true in a config file)",
) -> None:
    """Refuse an endpoint URL that cannot work, or that would send data and signatures in the
    clear to another machine without being told to.

    Args:
        url: The endpoint URL (None: the provider's own https endpoint).
        allow_http: Plain http to a host other than this machine was asked for explicitly.
        flag: The option that allows it, for the hint (e.g. "--src-allow-http").
    """
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"endpoint URL {url!r} is not an http(s)://host[:port] URL",
            hint="e.g. https://s3.example.net or http://127.0.0.1:9000",
        )
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise ConfigError(
            f"endpoint URL {url} uses plain http to another machine: data and request "
            "signatures would cross the network unencrypted",
            hint=f"use https, or pass {flag} if that network is trusted",
        )
