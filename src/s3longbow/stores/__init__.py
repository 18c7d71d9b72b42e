"""Object stores: the only code that speaks S3 or the filesystem."""

from __future__ import annotations

from s3longbow.config import SideSettings
from s3longbow.meter import RequestMeter
from s3longbow.ratelimit import PrefixRates
from s3longbow.stores.base import Capabilities, ObjectStore
from s3longbow.stores.location import Location, parse_location


def open_store(
    location: Location,
    side: SideSettings,
    *,
    destination: bool,
    max_connections: int = 64,
    read_only: bool = False,
    min_rate: float = 0,
    meter: RequestMeter | None = None,
    rates: PrefixRates | None = None,
    preserve_mtime: bool = False,
    open_ahead: int = 0,
) -> ObjectStore:
    """The adapter for a location: S3 for s3:// URLs, the filesystem for paths.

    A local destination is created when missing, unless `read_only` (a dry run) says to
    treat it as empty instead. `min_rate`: bytes per second an S3 exchange must keep up
    once it flows (see TransferSettings.min_rate). `meter`: where an S3 store records its
    replies' waits and requests to slow down. `rates`: an S3 store's request rate per key
    prefix. `preserve_mtime`: a directory keeps files' modification times (see LocalStore).
    `open_ahead`: connections an S3 store opens at once when its first one shows a long path.
    """
    if location.is_s3:
        from s3longbow.stores.s3 import S3Store

        return S3Store(
            location.bucket,
            side,
            max_connections=max_connections,
            min_rate=min_rate,
            meter=meter,
            rates=rates,
            open_ahead=open_ahead,
        )
    from s3longbow.stores.local import LocalStore

    assert location.root is not None
    return LocalStore(
        location.root,
        create=destination and not read_only,
        missing_ok=destination and read_only,
        preserve_mtime=preserve_mtime,
    )


__all__ = ["Capabilities", "Location", "ObjectStore", "open_store", "parse_location"]
