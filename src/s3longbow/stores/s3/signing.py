"""SigV4 header signing of the lean client's requests, with ``UNSIGNED-PAYLOAD`` (every body is
protected by its ``Content-MD5`` or by an additional checksum the server checks).

Our own signer signs the bytes each header goes out as (text, or the rare value whose bytes
are not UTF-8) for about what awscrt's costs, without loading awscrt (~50 ms of every
start-up); awscrt's and botocore's signers can be chosen instead, and tests hold all three to
the same signatures. Credentials are frozen once per request, so refreshable ones rotate
between requests, never inside one.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import logging
import threading
from typing import Any, Literal, NamedTuple, Protocol

from botocore.exceptions import NoCredentialsError, PartialCredentialsError

from s3longbow.stores.s3.http1 import encode_value

SignerName = Literal["auto", "python", "botocore", "crt"]


@functools.cache
def crt_available() -> bool:
    """Return whether ``awscrt`` is installed, so the ``"crt"`` signer can be used (it is
    not imported here)."""
    import importlib.util

    return importlib.util.find_spec("awscrt") is not None


def _utcnow() -> datetime.datetime:
    """The signing clock (a function so tests can pin it)."""
    return datetime.datetime.now(datetime.UTC)


class FrozenCredentials(NamedTuple):
    """One snapshot of a key pair (and session token), as botocore's ReadOnlyCredentials."""

    access_key: str
    secret_key: str
    token: str | None

    def __repr__(self) -> str:
        return "FrozenCredentials(...)"  # never the keys


class CredentialSource(Protocol):
    """Static or refreshable credentials: botocore's, or StaticCredentials."""

    def get_frozen_credentials(self) -> FrozenCredentials: ...


class StaticCredentials:
    """Keys given outright (options or environment): nothing to resolve or refresh.

    Lets a store sign without loading botocore's credential chain (~0.3 s of CPU to import).
    """

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self._frozen = FrozenCredentials(access_key, secret_key, token)

    def get_frozen_credentials(self) -> FrozenCredentials:
        return self._frozen

    def __repr__(self) -> str:
        return "StaticCredentials(...)"  # never the keys


class _Signer(Protocol):
    name: str

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        """Add the SigV4 headers (date, payload hash, token, Authorization) to ``headers``,
        signed as of `when` (UTC)."""


_SIGV4_TIME = "%Y%m%dT%H%M%SZ"


@functools.cache
def _unsigned_payload_auth() -> type:
    """botocore's S3 signer (no path normalisation) with the payload never hashed, signing
    as of a given time (imported only when this signer is used)."""
    from botocore.auth import S3SigV4Auth

    class UnsignedPayloadS3Auth(S3SigV4Auth):
        when: datetime.datetime

        def _should_sha256_sign_payload(self, request: Any) -> bool:
            # Content-MD5 protects every body; hashing it again costs CPU for nothing.
            return False

        def add_auth(self, request: Any) -> None:
            # botocore's own steps, dated by our clock (corrected for the server's offset).
            request.context["timestamp"] = self.when.strftime(_SIGV4_TIME)
            self._modify_request_before_signing(request)  # type: ignore[attr-defined]
            canonical = self.canonical_request(request)
            signature = self.signature(self.string_to_sign(request, canonical), request)
            self._inject_signature_to_request(request, signature)  # type: ignore[attr-defined]

    return UnsignedPayloadS3Auth


class _QuietSigning(logging.Filter):
    """Drops botocore.auth's debug records while this module signs in the current thread.

    They hold the canonical request (with the session token) and the signature; the boto3 path
    is left as botocore makes it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._state = threading.local()

    @property
    def active(self) -> bool:
        return getattr(self._state, "active", False)

    @active.setter
    def active(self, value: bool) -> None:
        self._state.active = value

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active


_QUIET_SIGNING = _QuietSigning()

logging.getLogger("botocore.auth").addFilter(_QUIET_SIGNING)


class _BotocoreSigner:
    """Signs with botocore's own S3 SigV4 implementation (about 0.1 ms per request)."""

    name = "botocore"

    def __init__(self, credentials: CredentialSource | None, region: str) -> None:
        self._credentials = credentials
        self._region = region

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, headers=headers)
        # Frozen per request: refreshable credentials rotate between requests, never inside one.
        frozen = _frozen(self._credentials)
        auth = _unsigned_payload_auth()(frozen, "s3", self._region)
        auth.when = when
        _QUIET_SIGNING.active = True
        try:
            auth.add_auth(request)
        finally:
            _QUIET_SIGNING.active = False
        headers.clear()
        headers.update(request.headers.items())


class _PythonSigner:
    """Signs the exact bytes a request's headers go out as: text as its UTF-8, and values
    that hold bytes that are not UTF-8 as those bytes (S3 signs the bytes on the wire;
    awscrt and botocore take text and sign its UTF-8, which would not be those bytes). SigV4
    with ``UNSIGNED-PAYLOAD``, every header signed; tests hold it to awscrt's and botocore's
    signatures of the same text requests."""

    name = "python"

    def __init__(self, credentials: CredentialSource | None, region: str) -> None:
        self._credentials = credentials
        self._region = region
        # ((secret key, day), signing key): the four HMACs that derive it change once a day.
        self._key: tuple[tuple[str, str], bytes] | None = None

    def _signing_key(self, secret_key: str, day: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == (secret_key, day):
            return cached[1]
        key = f"AWS4{secret_key}".encode()
        for part in (day, self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = ((secret_key, day), key)  # one reference swap: safe across threads
        return key

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        frozen = _frozen(self._credentials)
        stamp = when.strftime(_SIGV4_TIME)
        headers["X-Amz-Date"] = stamp
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        if frozen.token:
            headers["X-Amz-Security-Token"] = frozen.token
        uri, _, query = path.partition("?")
        fields = sorted(
            (name.lower(), b" ".join(encode_value(value).split()))
            for name, value in headers.items()
        )
        signed_names = ";".join(name for name, _ in fields)
        canonical = b"\n".join(
            [
                method.encode("ascii"),
                uri.encode("utf-8"),
                _canonical_query(query).encode("ascii"),
                b"".join(name.encode("ascii") + b":" + value + b"\n" for name, value in fields),
                signed_names.encode("ascii"),
                b"UNSIGNED-PAYLOAD",
            ]
        )
        scope = f"{stamp[:8]}/{self._region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical).hexdigest()}"
        key = self._signing_key(frozen.secret_key, stamp[:8])
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )


def _canonical_query(query: str) -> str:
    """A query string already encoded, in SigV4's order (a bare name gets an empty value)."""
    if not query:
        return ""
    pairs = [item.partition("=") for item in query.split("&")]
    return "&".join(f"{name}={value}" for name, _, value in sorted(pairs))


# awscrt's modules, imported by the first crt signer.
_crt_auth: Any = None
_crt_http: Any = None

# What SigV4 header signing adds to a request (the token only with a session token).
_SIGNING_HEADERS = ("X-Amz-Date", "X-Amz-Security-Token", "x-amz-content-sha256", "Authorization")


class _CrtSigner:
    """Signs with ``awscrt.auth.aws_sign_request`` (about 0.02 ms per request)."""

    name = "crt"

    def __init__(self, credentials: CredentialSource | None, region: str) -> None:
        global _crt_auth, _crt_http
        from awscrt import auth, http

        _crt_auth, _crt_http = auth, http
        self._credentials = credentials
        self._region = region
        # (frozen credentials, static provider): rebuilt only when the credentials change.
        self._provider: tuple[FrozenCredentials, Any] | None = None
        # (frozen credentials, signing time, config): a signature's date has whole seconds, so
        # requests signed within the same second share one config.
        self._config: tuple[FrozenCredentials, datetime.datetime, Any] | None = None

    def _provider_for(self, frozen: FrozenCredentials) -> Any:
        cached = self._provider
        if cached is not None and cached[0] == frozen:
            return cached[1]
        assert _crt_auth is not None
        provider = _crt_auth.AwsCredentialsProvider.new_static(
            frozen.access_key, frozen.secret_key, frozen.token or None
        )
        self._provider = (frozen, provider)  # one reference swap: safe across threads
        return provider

    def _config_for(self, frozen: FrozenCredentials, when: datetime.datetime) -> Any:
        now = when.replace(microsecond=0)
        cached = self._config
        if cached is not None and cached[1] == now and cached[0] == frozen:
            return cached[2]
        assert _crt_auth is not None
        config = _crt_auth.AwsSigningConfig(
            algorithm=_crt_auth.AwsSigningAlgorithm.V4,
            signature_type=_crt_auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=self._provider_for(frozen),
            region=self._region,
            service="s3",
            date=now,
            # S3 signs the path exactly as sent: no second encoding, no dot-segment removal.
            use_double_uri_encode=False,
            should_normalize_uri_path=False,
            signed_body_value=_crt_auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
            signed_body_header_type=_crt_auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
        )
        self._config = (frozen, now, config)  # one reference swap: safe across threads
        return config

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        assert _crt_auth is not None and _crt_http is not None
        config = self._config_for(_frozen(self._credentials), when)
        request = _crt_http.HttpRequest(method, path, _crt_http.HttpHeaders(headers.items()))
        _crt_auth.aws_sign_request(request, config).result()
        # Only the headers signing adds are read back (copying all of them cost more).
        signed = request.headers
        for name in _SIGNING_HEADERS:
            value = signed.get(name)
            if value is not None:
                headers[name] = value


def _frozen(credentials: CredentialSource | None) -> FrozenCredentials:
    if credentials is None:
        raise NoCredentialsError()
    frozen = credentials.get_frozen_credentials()
    if not frozen.access_key or not frozen.secret_key:
        raise PartialCredentialsError(provider="the given credentials", cred_var="secret_key")
    return frozen


def _make_signer(name: SignerName, credentials: CredentialSource | None, region: str) -> _Signer:
    if name in ("auto", "python"):
        return _PythonSigner(credentials, region)
    if name == "crt":
        if not crt_available():
            raise ValueError("the 'crt' signer needs the awscrt package")
        return _CrtSigner(credentials, region)
    if name != "botocore":
        raise ValueError(f"unknown signer {name!r}")
    return _BotocoreSigner(credentials, region)


def _is_text(value: str) -> bool:
    """Whether `value` is text, not bytes kept as surrogate escapes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
