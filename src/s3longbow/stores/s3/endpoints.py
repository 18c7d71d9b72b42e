"""AWS's S3 endpoints for one side: a region's own, its dual-stack one (IPv6 and IPv4) and
Transfer Acceleration's, with the conditions each sets.

The hosts are the ones botocore's endpoint rules give for the same settings (the tests compare
both clients' URLs), so the lean data plane and botocore's control plane always reach the
same place:

================================  ===================================================
settings                          host (virtual-hosted style; path style drops the bucket)
================================  ===================================================
region                            ``bucket.s3.{region}.amazonaws.com``
dual-stack                        ``bucket.s3.dualstack.{region}.amazonaws.com``
accelerate                        ``bucket.s3-accelerate.amazonaws.com``
accelerate and dual-stack         ``bucket.s3-accelerate.dualstack.amazonaws.com``
================================  ===================================================

China's regions (``cn-``) end in ``amazonaws.com.cn`` and offer no acceleration.
"""

from __future__ import annotations

import ipaddress
import re

from s3longbow.config import SideSettings
from s3longbow.errors import ConfigError

# A bucket name that can lead a host name: DNS labels of lower-case letters, digits and
# hyphens. Acceleration also refuses dots (S3's rule for accelerated buckets).
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def is_china(region: str) -> bool:
    """Whether a region is in AWS's China partition (its own domain and accounts)."""
    return region.startswith("cn-")


def aws_endpoint(region: str, *, dualstack: bool = False, accelerate: bool = False) -> str:
    """The S3 endpoint URL of an AWS region, its dual-stack variant, or Transfer
    Acceleration's (the same in every region of the partition; requests are still signed for
    the bucket's region).

    Raises:
        ConfigError: Acceleration in a China region, which does not offer it.
    """
    if accelerate:
        check_accelerated_region(region)
        variant = "s3-accelerate.dualstack" if dualstack else "s3-accelerate"
        return f"https://{variant}.amazonaws.com"
    suffix = "amazonaws.com.cn" if is_china(region) else "amazonaws.com"
    if dualstack:
        return f"https://s3.dualstack.{region}.{suffix}"
    return f"https://s3.{region}.{suffix}"


def describe_aws(side: SideSettings) -> str:
    """How errors name an AWS endpoint of this side."""
    if side.use_accelerate_endpoint:
        return "AWS (Transfer Acceleration)"
    if side.use_dualstack_endpoint:
        return "AWS (dual-stack)"
    return "AWS"


def check_accelerated_region(region: str) -> None:
    """Refuse Transfer Acceleration in a China region (it is not offered there).

    Raises:
        ConfigError: The region is a China region.
    """
    if is_china(region):
        raise ConfigError(
            f"S3 Transfer Acceleration is not offered in the China regions ({region})",
            hint="leave out --src-use-accelerate-endpoint / --dst-use-accelerate-endpoint "
            "(use_accelerate_endpoint) for this side; --*-use-dualstack-endpoint works there",
        )


def virtual_host_bucket(bucket: str, https: bool) -> bool:
    """Whether a bucket name can lead the host name (else it goes in the path)."""
    if not 3 <= len(bucket) <= 63 or is_ip(bucket):
        return False
    # Dots would break the wildcard certificate match of https endpoints.
    if https and "." in bucket:
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in bucket.split("."))


def check_accelerated_bucket(bucket: str) -> None:
    """Refuse a bucket that Transfer Acceleration cannot reach: it is addressed only as a
    host name (virtual-hosted style), so its name must be a DNS name without dots.

    Raises:
        ConfigError: The name is not such a name.
    """
    if "." in bucket or not virtual_host_bucket(bucket, https=True):
        reason = "dots" if "." in bucket else "characters a host name cannot hold"
        raise ConfigError(
            f"bucket {bucket!r} cannot use S3 Transfer Acceleration: its name has {reason}, "
            "and an accelerated bucket is reached only as a host name",
            hint="leave out the use_accelerate_endpoint setting for this side (S3 accelerates "
            "only buckets whose names are DNS names without dots)",
        )


def is_ip(text: str) -> bool:
    """Whether a host name is an IP address (never addressed with a bucket before it)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


__all__ = [
    "aws_endpoint",
    "check_accelerated_bucket",
    "check_accelerated_region",
    "describe_aws",
    "is_china",
    "is_ip",
    "virtual_host_bucket",
]
