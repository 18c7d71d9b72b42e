"""botocore for one side: its session (profile, keys, region), its S3 client (the control
plane), and what both clients of the side share: the certificate authorities it trusts and
whether its keys can be used without botocore's session at all.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ProfileNotFound

from s3longbow.config import SideSettings
from s3longbow.errors import ConfigError
from s3longbow.meter import RequestMeter
from s3longbow.ratelimit import PrefixRates
from s3longbow.stores.location import check_endpoint_url
from s3longbow.stores.s3.signing import StaticCredentials

if TYPE_CHECKING:
    import botocore.session

log = logging.getLogger("s3longbow.stores.s3")


def _check_side(side: SideSettings) -> None:
    """Refuse an unsafe endpoint URL; warn (once per endpoint) when TLS is not verified."""
    check_endpoint_url(side.endpoint_url, allow_http=side.allow_http)
    if not side.verify_ssl and side.endpoint_url not in _UNVERIFIED_WARNED:
        _UNVERIFIED_WARNED.add(side.endpoint_url)
        log.warning(
            "TLS certificates of %s are not checked: anyone on the network path could read "
            "or change the data",
            side.endpoint_url or "the AWS endpoint",
        )


def resolve_ca_bundle(side: SideSettings, session: botocore.session.Session | None) -> str | None:
    """The certificate authorities one side's https endpoint is checked against, the same
    for the lean client and for botocore, chosen as botocore chooses: the side's own
    ``ca_bundle`` (flag or config file) > ``AWS_CA_BUNDLE`` > the profile's ``ca_bundle`` >
    ``REQUESTS_CA_BUNDLE`` > certifi's bundle. None for a plain-http endpoint.

    Raises:
        ConfigError: The bundle chosen is not a readable file (it says where it came from).
    """
    if side.endpoint_url is not None and side.endpoint_url.lower().startswith("http://"):
        return None
    chosen: tuple[str, str] | None = None
    if side.ca_bundle:
        chosen = (side.ca_bundle, "ca_bundle of this side (--src-ca-bundle / --dst-ca-bundle)")
    elif os.environ.get("AWS_CA_BUNDLE"):
        chosen = (os.environ["AWS_CA_BUNDLE"], "AWS_CA_BUNDLE")
    elif session is not None and session.get_config_variable("ca_bundle"):
        chosen = (str(session.get_config_variable("ca_bundle")), "the profile's ca_bundle")
    elif os.environ.get("REQUESTS_CA_BUNDLE"):
        chosen = (os.environ["REQUESTS_CA_BUNDLE"], "REQUESTS_CA_BUNDLE")
    if chosen is None:
        try:
            import certifi
        except ImportError:  # pragma: no cover - botocore's own copy, where certifi is absent
            import botocore

            return str(Path(botocore.__file__).parent / "cacert.pem")
        return str(certifi.where())
    path, origin = chosen
    if not Path(path).expanduser().is_file():
        raise ConfigError(
            f"CA bundle {path} ({origin}) is not a file",
            hint="give the PEM file of the certificate authorities to trust",
        )
    return str(Path(path).expanduser())


# Where botocore would find a profile or a region for keys given without one.
_AWS_CONFIG_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")


def _static_keys(side: SideSettings) -> StaticCredentials | None:
    """The side's keys when they are given outright and botocore's configuration has nothing
    to add: no profile, and a region given or none configured (environment or config file)."""
    if side.profile or not (side.access_key_id and side.secret_access_key):
        return None
    if not side.region:
        config_file = Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser()
        if any(os.environ.get(name) for name in _AWS_CONFIG_ENV) or config_file.is_file():
            return None
    return StaticCredentials(side.access_key_id, side.secret_access_key, side.session_token)


def make_session(side: SideSettings) -> botocore.session.Session:
    """A botocore session for one side: its profile, static keys and region, if given."""
    import botocore.parsers
    import botocore.session

    try:
        session = botocore.session.Session(profile=side.profile)
        if side.profile and side.profile not in session.available_profiles:
            raise ProfileNotFound(profile=side.profile)
    except ProfileNotFound:
        raise ConfigError(
            f"AWS profile {side.profile!r} is not configured",
            hint="list profiles with `aws configure list-profiles`, or pass another profile",
        ) from None
    if side.access_key_id and side.secret_access_key:  # set together, or not at all
        session.set_credentials(side.access_key_id, side.secret_access_key, side.session_token)
    if side.region:
        session.set_config_variable("region", side.region)
    # Listings carry a timestamp per key; botocore parses each with dateutil, which cost
    # more CPU than the rest of planning. S3's ISO 8601 form has a fast path.
    parsers = botocore.parsers.ResponseParserFactory()
    parsers.set_parser_defaults(timestamp_parser=_parse_timestamp)
    session.register_component("response_parser_factory", parsers)
    return session


def make_s3_client(
    side: SideSettings,
    session: botocore.session.Session,
    region: str,
    *,
    max_connections: int = 64,
    verify: str | bool = True,
) -> Any:
    """A botocore S3 client for one side, tuned for many threads and S3-compatible servers.

    `verify`: the CA bundle its certificates are checked against (the same one the lean
    client trusts), True for botocore's own choice, or False for none.
    """
    import botocore.handlers
    from botocore.config import Config

    s3: dict[str, Any] = {
        "addressing_style": "path" if side.path_style else "auto",
        # Said either way, so a profile's or the environment's own choice cannot send
        # botocore elsewhere than the lean client (see endpoints.py).
        "use_accelerate_endpoint": side.use_accelerate_endpoint,
        "use_dualstack_endpoint": side.use_dualstack_endpoint,
        # Content-MD5 protects each body; SHA-256 of every payload costs CPU for nothing.
        "payload_signing_enabled": False,
    }
    config = Config(
        max_pool_connections=max_connections,
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=60,
        signature_version="s3v4",
        s3=cast(Any, s3),  # the stubs lack use_dualstack_endpoint, which botocore reads
        # Newer botocore adds CRC32 to every upload and validates response checksums, which
        # S3-compatible servers reject or break on ranged GETs. MD5 is sent explicitly instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = session.create_client(
        "s3",
        endpoint_url=side.endpoint_url,
        region_name=region,
        config=config,
        verify=None if verify is True else verify,
    )
    # `Expect: 100-continue` costs a round trip per PUT; a rejected body is cheap to resend.
    client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
    # Metadata is copied as the source has it, UTF-8 or not: botocore's check that it is
    # ASCII is dropped, and what it signs goes out as those bytes.
    for operation in ("PutObject", "CopyObject", "CreateMultipartUpload"):
        client.meta.events.unregister(
            f"before-parameter-build.s3.{operation}", botocore.handlers.validate_ascii_metadata
        )
    client.meta.events.register("before-send.s3", _send_header_text_as_utf8)
    return client


# botocore's operations that read (the rest count against a prefix's writes).
_READ_OPERATIONS = frozenset({"GetObject", "HeadObject", "GetObjectTagging", "ListParts"})
_SLOW_DOWN = frozenset({429, 503})


def pace_by_prefix(client: Any, rates: PrefixRates, meter: RequestMeter | None) -> None:
    """botocore's object calls (server-side copies, deletes, tags) wait for their key
    prefix's turn too, and a final SlowDown (after botocore's own retries) slows the prefix."""

    def wait(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        key = params.get("Key")
        if not isinstance(key, str) or not key:
            return
        write = model.name not in _READ_OPERATIONS
        context["longbow_prefix"] = (key, write)
        if rates.wait(key, write=write) and meter is not None:
            meter.paced()

    def answered(http_response: Any, context: dict[str, Any], **_: Any) -> None:
        asked = context.get("longbow_prefix")
        if asked is not None and getattr(http_response, "status_code", 0) in _SLOW_DOWN:
            rates.slow_down(asked[0], write=asked[1])

    client.meta.events.register("before-parameter-build.s3", wait)
    client.meta.events.register("after-call.s3", answered)


def _send_header_text_as_utf8(request: Any, **_: Any) -> None:
    """Header values go out as the UTF-8 bytes botocore signed, not as Latin-1.

    botocore signs a header's text as UTF-8, while http.client sends text as Latin-1: a
    value such as "José" (user metadata) would go out as other bytes than were signed, and
    the server would refuse the signature.
    """
    for name, value in list(request.headers.items()):
        if isinstance(value, str) and not value.isascii():
            request.headers[name] = value.encode("utf-8")


_UNVERIFIED_WARNED: set[str | None] = set()  # endpoints already warned about, once each


def _parse_timestamp(value: str) -> datetime.datetime:
    """S3's timestamps (2026-11-26T05:32:10.000Z) at C speed; anything else as botocore does."""
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        import botocore.utils

        return botocore.utils.parse_timestamp(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def _acknowledge_requester_pays(request: Any, **_: Any) -> None:
    """Every request to a requester-pays bucket says that the requester pays."""
    request.headers["x-amz-request-payer"] = "requester"
