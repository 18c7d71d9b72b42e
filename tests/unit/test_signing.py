"""The lean data plane builds and signs requests exactly as botocore's own S3 client does.

Reference requests come from a real boto3 client, stopped in its ``before-send`` event (nothing
is sent). Its per-attempt ``amz-sdk-*`` headers are removed before signing, so both sides sign
the same header set and the Authorization headers must match byte for byte.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import CredentialRetrievalError
from botocore.utils import percent_encode

from s3longbow import __version__
from s3longbow.errors import FatalError, TransientError
from s3longbow.stores.s3 import signing, wire
from s3longbow.stores.s3.lean import S3DataPlane
from s3longbow.stores.s3.signing import StaticCredentials, crt_available
from s3longbow.stores.s3.wire import encode_key, encode_query_value

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//////////token+with/odd=chars"
FIXED = datetime.datetime(2026, 1, 2, 3, 4, 5)
MD5 = "XUFAKrxLKna5cZ2REBfFkg=="  # md5(b"hello")

AWKWARD_KEYS = [
    "plain.txt",
    "with space",
    "plus+sign",
    "per%cent%20",
    "unicodé/日本語/😀",
    "double//slash",
    "/leading",
    "//",
    "./dot",
    "a/../up",
    "..",
    "tab\there",
    "reserved!*'();:@&=+$,?#[]",
    "tilde~-_.",
    "k" * 1024,
]

# The crt signer is exercised wherever awscrt is installed (see the skip below otherwise).
SIGNERS = ["python", "botocore", "crt"] if crt_available() else ["python", "botocore"]


class _Captured(Exception):
    """Stops a boto3 call once its request is signed."""


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore's signer reads this clock (naive UTC); our crt signer reads the module's own.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FIXED)
    if crt_available():
        # With awscrt installed, boto3 itself signs through botocore's crt glue.
        crt_auth = importlib.import_module("botocore.crt.auth")
        aware = FIXED.replace(tzinfo=datetime.UTC)
        monkeypatch.setattr(crt_auth, "get_current_datetime", lambda *a, **k: aware)
    monkeypatch.setattr(signing, "_utcnow", lambda: FIXED.replace(tzinfo=datetime.UTC))


_captured: dict[str, Any] = {}


def _drop_attempt_headers(request: Any, **_: Any) -> None:
    for name in ("amz-sdk-invocation-id", "amz-sdk-request"):
        if name in request.headers:
            del request.headers[name]


def _stop(request: Any, **_: Any) -> None:
    _captured["request"] = request
    raise _Captured


@functools.cache
def _client(endpoint_url: str | None, region: str, path_style: bool) -> Any:
    """A boto3 client configured like S3Store's, whose requests are never sent."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=TOKEN,
        config=Config(
            signature_version="s3v4",
            s3={
                "addressing_style": "path" if path_style else "auto",
                "payload_signing_enabled": False,
                "us_east_1_regional_endpoint": "regional",
            },
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1},
            proxies={},
        ),
    )
    client.meta.events.register("before-sign.s3", _drop_attempt_headers)
    client.meta.events.register("before-send.s3", _stop)
    return client


def boto_request(
    operation: str,
    *,
    endpoint_url: str | None = "http://127.0.0.1:9000",
    region: str = "eu-west-3",
    path_style: bool = True,
    **params: Any,
) -> Any:
    """The request boto3 would send for ``operation``: signed, captured, not sent."""
    with pytest.raises(_Captured):
        getattr(_client(endpoint_url, region, path_style), operation)(**params)
    return _captured.pop("request")


@pytest.fixture()
def plane_factory(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., tuple[S3DataPlane, list[Any]]]]:
    """Data planes whose requests are recorded instead of sent."""
    planes: list[S3DataPlane] = []

    def make(
        signer: str = "botocore",
        *,
        endpoint_url: str | None = "http://127.0.0.1:9000",
        region: str = "eu-west-3",
        path_style: bool = True,
        credentials: Any = None,
    ) -> tuple[S3DataPlane, list[Any]]:
        plane = S3DataPlane(
            endpoint_url,
            region,
            path_style,
            credentials or Credentials(ACCESS_KEY, SECRET_KEY, TOKEN),
            max_connections=4,
            signer=signer,  # type: ignore[arg-type]
        )
        sent: list[Any] = []

        def record(call: Any, body: bytes | None, read: Any, **options: Any) -> Any:
            request = plane._prepare(call)
            sent.append(request)
            return b"" if request.method == "GET" else "etag"

        monkeypatch.setattr(plane, "_perform", record)
        planes.append(plane)
        return plane, sent

    yield make
    for plane in planes:
        plane.close()


def lower(headers: Any) -> dict[str, str]:
    return {
        name.lower(): value.decode() if isinstance(value, bytes) else value
        for name, value in headers.items()
    }


def assert_same_request(ours: Any, reference: Any) -> None:
    """Same target, same signed headers, same Authorization."""
    ref_url = urlsplit(reference.url)
    our_path, _, our_query = ours.target.partition("?")
    assert ours.method == reference.method
    assert our_path == ref_url.path
    # The query's order on the wire is free; SigV4 signs it sorted.
    assert sorted(parse_qsl(our_query)) == sorted(parse_qsl(ref_url.query))
    assert ours.connect_host == ref_url.hostname
    ref_headers = lower(reference.headers)
    our_headers = lower(ours.headers)
    assert our_headers["authorization"] == ref_headers["authorization"]
    signed = ref_headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    for name in signed:
        if name != "host":  # botocore derives Host from the URL
            assert our_headers[name] == ref_headers[name], name
    assert our_headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert our_headers["x-amz-security-token"] == TOKEN
    assert our_headers["user-agent"] == f"longbow/{__version__}"
    assert "expect" not in our_headers


# --------------------------------------------------------------------------------------------
# Key and query encoding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
        ("a//b", "a//b"),
        ("/lead", "/lead"),
        ("./x/../y", "./x/../y"),
        ("tab\t", "tab%09"),
        ("AZaz09-_.~", "AZaz09-_.~"),
        ("!*'()", "%21%2A%27%28%29"),
        ("?#[]@", "%3F%23%5B%5D%40"),
        ("\x00\x7f", "%00%7F"),
    ],
)
def test_encode_key(key: str, encoded: str) -> None:
    assert encode_key(key) == encoded
    assert unquote(encoded) == key


def test_encode_key_matches_botocore_on_random_unicode() -> None:
    rng = random.Random(1234)
    alphabet = [chr(c) for c in range(1, 0x2FF)] + list("/日本語😀\u200b\ufeff")
    for _ in range(2000):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        encoded = encode_key(key)
        assert encoded == percent_encode(key, safe="/~")
        assert encoded.isascii()
        assert unquote(encoded, errors="strict") == key


def test_encode_query_value() -> None:
    assert encode_query_value("a+b/c=d e%~") == "a%2Bb%2Fc%3Dd%20e%25~"
    assert encode_query_value("Zé") == quote("Zé", safe="-_.~")


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_request_path_is_the_one_boto3_uses(plane_factory: Any, key: str) -> None:
    plane, sent = plane_factory()
    plane.get_range("bkt", key, 0, 0)
    reference = boto_request("get_object", Bucket="bkt", Key=key)
    assert sent[0].target == urlsplit(reference.url).path
    assert unquote(sent[0].target) == f"/bkt/{key}"


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_ranged_get_with_if_match(plane_factory: Any, signer: str, key: str) -> None:
    plane, sent = plane_factory(signer)
    plane.get_range("bkt", key, 100, 50, etag="0123456789abcdef0123456789abcdef")
    reference = boto_request(
        "get_object",
        Bucket="bkt",
        Key=key,
        Range="bytes=100-149",
        IfMatch='"0123456789abcdef0123456789abcdef"',
    )
    assert_same_request(sent[0], reference)


@pytest.mark.parametrize("signer", SIGNERS)
def test_whole_get_without_range(plane_factory: Any, signer: str) -> None:
    plane, sent = plane_factory(signer)
    plane.get_range("bkt", "empty", 0, 0)
    assert "range" not in lower(sent[0].headers)
    assert_same_request(sent[0], boto_request("get_object", Bucket="bkt", Key="empty"))


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("key", AWKWARD_KEYS)
@pytest.mark.parametrize("storage_class", [None, "STANDARD_IA"])
def test_put_with_content_md5_and_storage_class(
    plane_factory: Any, signer: str, key: str, storage_class: str | None
) -> None:
    plane, sent = plane_factory(signer)
    plane.put_object("bkt", key, b"hello", md5_b64=MD5, storage_class=storage_class)
    params: dict[str, Any] = {"Bucket": "bkt", "Key": key, "Body": b"hello"}
    params.update(ContentMD5=MD5, ContentLength=5)
    if storage_class:
        params["StorageClass"] = storage_class
    assert_same_request(sent[0], boto_request("put_object", **params))
    headers = lower(sent[0].headers)
    assert headers["content-length"] == "5"
    assert headers["content-md5"] == MD5
    assert headers.get("x-amz-storage-class") == storage_class


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize(
    "upload_id",
    [
        "simple",
        "2~abc-DEF_123.xyz",
        "a+b/c=d e%f",
        "VXBsb2FkSWQ+/==",
        "ünï/cødé",
    ],
)
def test_upload_part_query_string(plane_factory: Any, signer: str, upload_id: str) -> None:
    plane, sent = plane_factory(signer)
    plane.upload_part("bkt", "dir/part file+", upload_id, 7, b"hello", md5_b64=MD5)
    reference = boto_request(
        "upload_part",
        Bucket="bkt",
        Key="dir/part file+",
        UploadId=upload_id,
        PartNumber=7,
        Body=b"hello",
        ContentMD5=MD5,
        ContentLength=5,
    )
    assert_same_request(sent[0], reference)
    query = sent[0].target.partition("?")[2]
    assert dict(parse_qsl(query)) == {"partNumber": "7", "uploadId": upload_id}


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize(
    ("region", "bucket", "key"),
    [
        ("eu-west-3", "bkt", "k"),
        ("eu-west-3", "bkt", "/leading//slashes"),
        ("eu-west-3", "my.dotted.bucket", "k"),  # dots break https wildcards: path-style
        ("eu-west-3", "Upper_Case", "k"),  # not a DNS name: path-style
        ("us-east-1", "bkt", "k"),
        ("cn-north-1", "bkt", "k"),
    ],
)
def test_aws_virtual_hosted_addressing(
    plane_factory: Any, signer: str, region: str, bucket: str, key: str
) -> None:
    plane, sent = plane_factory(signer, endpoint_url=None, region=region, path_style=False)
    plane.put_object(bucket, key, b"hello", md5_b64=MD5)
    reference = boto_request(
        "put_object",
        endpoint_url=None,
        region=region,
        path_style=False,
        Bucket=bucket,
        Key=key,
        Body=b"hello",
        ContentMD5=MD5,
        ContentLength=5,
    )
    assert reference.url.startswith("https://")
    assert_same_request(sent[0], reference)
    assert sent[0].scheme == "https" and sent[0].port == 443


@pytest.mark.parametrize("signer", SIGNERS)
def test_aws_path_style(plane_factory: Any, signer: str) -> None:
    plane, sent = plane_factory(signer, endpoint_url=None, region="ap-south-1")
    plane.get_range("bkt", "a b", 0, 10)
    where = {"endpoint_url": None, "region": "ap-south-1"}
    reference = boto_request("get_object", **where, Bucket="bkt", Key="a b", Range="bytes=0-9")
    assert_same_request(sent[0], reference)
    assert sent[0].connect_host == "s3.ap-south-1.amazonaws.com"


@pytest.mark.parametrize("signer", SIGNERS)
def test_endpoint_with_default_port_and_path_prefix(plane_factory: Any, signer: str) -> None:
    plane, sent = plane_factory(signer, endpoint_url="https://Objects.Example.COM/s3/")
    plane.get_range("bkt", "k", 0, 1)
    request = sent[0]
    assert request.connect_host == "objects.example.com"
    assert request.port == 443
    assert request.target == "/s3/bkt/k"
    assert lower(request.headers)["host"] == "objects.example.com"
    url = "https://Objects.Example.COM/s3/"
    reference = boto_request(
        "get_object", endpoint_url=url, Bucket="bkt", Key="k", Range="bytes=0-0"
    )
    assert_same_request(request, reference)


@pytest.mark.parametrize("signer", SIGNERS)
def test_refreshable_credentials_are_used_as_they_rotate(plane_factory: Any, signer: str) -> None:
    now = [datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)]
    generation = iter(range(1, 100))

    def fetch() -> dict[str, str]:
        n = next(generation)
        expiry = now[0] + datetime.timedelta(minutes=30)
        return {
            "access_key": f"ROTATED{n}",
            "secret_key": f"secret{n}",
            "token": f"token{n}",
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="test"
    )
    credentials._time_fetcher = lambda: now[0]
    plane, sent = plane_factory(signer, credentials=credentials)
    plane.put_object("bkt", "k", b"hello", md5_b64=MD5)
    now[0] += datetime.timedelta(hours=1)  # the first credentials have expired
    plane.put_object("bkt", "k", b"hello", md5_b64=MD5)
    first, second = (lower(r.headers) for r in sent)
    assert "Credential=ROTATED1/" in first["authorization"]
    assert first["x-amz-security-token"] == "token1"
    assert "Credential=ROTATED2/" in second["authorization"]
    assert second["x-amz-security-token"] == "token2"


def test_static_credentials_without_token(plane_factory: Any) -> None:
    plane, sent = plane_factory(credentials=Credentials(ACCESS_KEY, SECRET_KEY))
    plane.put_object("bkt", "k", b"hello", md5_b64=MD5)
    headers = lower(sent[0].headers)
    assert "x-amz-security-token" not in headers
    assert "x-amz-security-token" not in headers["authorization"]


@pytest.mark.parametrize("signer", SIGNERS)
def test_signing_logs_no_secrets(
    plane_factory: Any, signer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Other tests may have capped botocore's loggers (the CLI does): open this one fully.
    caplog.set_level(logging.DEBUG, logger="botocore.auth")
    plane, sent = plane_factory(signer)
    plane.upload_part("bkt", "k", "up", 1, b"hello", md5_b64=MD5)
    signature = lower(sent[0].headers)["authorization"].rsplit("Signature=", 1)[1]
    for secret in (TOKEN, SECRET_KEY, signature):
        assert secret not in caplog.text
    # botocore's own debug records are untouched outside this module's signing.
    logging.getLogger("botocore.auth").debug("still logged")
    assert "still logged" in caplog.text


def test_missing_credentials_are_fatal() -> None:
    plane = S3DataPlane("http://127.0.0.1:1", "us-east-1", True, None, 1)
    with pytest.raises(FatalError, match="no AWS credentials found"):
        plane.get_range("bkt", "k", 0, 1)
    assert plane.connections_opened == 0
    plane.close()


def test_credentials_that_cannot_be_refreshed_are_transient() -> None:
    def fail() -> dict[str, str]:
        raise CredentialRetrievalError(provider="test", error_msg="metadata service is down")

    credentials = RefreshableCredentials.create_from_metadata(
        metadata={
            "access_key": "OLD",
            "secret_key": "old-secret",
            "token": "old-token",
            "expiry_time": "2000-01-01T00:00:00Z",
        },
        refresh_using=fail,
        method="test",
    )
    plane = S3DataPlane("http://127.0.0.1:1", "us-east-1", True, credentials, 1)
    with pytest.raises(TransientError, match="metadata service is down") as info:
        plane.put_object("bkt", "k", b"x", md5_b64=MD5)
    assert "old-secret" not in str(info.value)
    assert plane.connections_opened == 0
    plane.close()


def test_signers_agree_when_crt_is_installed(plane_factory: Any) -> None:
    if not crt_available():
        pytest.skip("awscrt is not installed")
    for key in AWKWARD_KEYS:
        (ours, ours_sent), (crt, crt_sent) = plane_factory("botocore"), plane_factory("crt")
        ours.upload_part("bkt", key, "u+p/l=oad id", 2, b"hello", md5_b64=MD5)
        crt.upload_part("bkt", key, "u+p/l=oad id", 2, b"hello", md5_b64=MD5)
        assert lower(ours_sent[0].headers) == lower(crt_sent[0].headers)


def test_auto_signer_is_our_own_and_loads_no_awscrt() -> None:
    import subprocess
    import sys

    # A fresh interpreter: this one may have loaded awscrt for another test. Keys given
    # outright, as a run with keys in options or the environment signs (botocore's
    # credential chain would load awscrt itself).
    script = (
        "import sys\n"
        "from s3longbow.cli import app\n"
        "from s3longbow.stores.s3.lean import S3DataPlane\n"
        "from s3longbow.stores.s3.signing import StaticCredentials\n"
        "keys = StaticCredentials('a', 'b')\n"
        "p = S3DataPlane('http://127.0.0.1:1', 'us-east-1', True, keys, 1)\n"
        "print(p.signer_name, 'awscrt' in sys.modules)\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert shown.stdout.split() == ["python", "False"], shown.stderr


def test_the_signing_key_is_derived_once_a_day() -> None:
    signer = signing._PythonSigner(Credentials(ACCESS_KEY, SECRET_KEY), "eu-west-3")
    day = FIXED.replace(tzinfo=datetime.UTC)
    signatures = []
    for when in (day, day + datetime.timedelta(seconds=1), day + datetime.timedelta(days=1)):
        headers = {"Host": "127.0.0.1:9000"}
        signer.sign("GET", "http://127.0.0.1:9000/b/k", "/b/k", headers, when)
        signatures.append(headers["Authorization"].split("Signature=")[1])
    assert signer._key is not None and signer._key[0] == (SECRET_KEY, "20260103")
    # Each is the signature botocore makes for the same request at the same time.
    for when, signature in zip(
        (day, day + datetime.timedelta(seconds=1), day + datetime.timedelta(days=1)),
        signatures,
        strict=True,
    ):
        headers = {"Host": "127.0.0.1:9000"}
        botocore_signer = signing._BotocoreSigner(Credentials(ACCESS_KEY, SECRET_KEY), "eu-west-3")
        botocore_signer.sign("GET", "http://127.0.0.1:9000/b/k", "/b/k", headers, when)
        assert headers["Authorization"].split("Signature=")[1] == signature
    assert len(set(signatures)) == 3


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_error_body_parsing() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
        b"<Message>The request signature we calculated does not match &amp; so on"
        b"</Message><RequestId>1</RequestId></Error>"
    )
    assert wire._parse_error(body) == (
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match & so on",
    )
    assert wire._parse_error(b"") == ("", "")
    assert wire._parse_error(b"<html>Bad Gateway</html>") == ("", "")
    assert wire._parse_error(b"<Error><Code>NoSuchKey</Code></Error>") == ("NoSuchKey", "")


def test_bad_endpoint_url_is_rejected() -> None:
    with pytest.raises(ValueError):
        S3DataPlane("ftp://example.com", "us-east-1", True, Credentials("a", "b"), 1)


@pytest.mark.parametrize("signer", SIGNERS)
def test_static_credentials_sign_as_botocores_do(plane_factory: Any, signer: str) -> None:
    keys = StaticCredentials(ACCESS_KEY, SECRET_KEY, TOKEN)
    plane, sent = plane_factory(signer, credentials=keys)
    plane.get_range("bkt", "k", 0, 10)
    assert_same_request(
        sent[0], boto_request("get_object", Bucket="bkt", Key="k", Range="bytes=0-9")
    )
    # Their text never shows the keys.
    assert SECRET_KEY not in repr(keys) and ACCESS_KEY not in repr(keys)
    assert SECRET_KEY not in repr(keys.get_frozen_credentials())


@pytest.mark.skipif(not crt_available(), reason="the reference signer needs awscrt")
@pytest.mark.parametrize("value", ["plain", "José 字", "  many   blanks  ", "a\tb"])
@pytest.mark.parametrize("query", ["", "partNumber=2&uploadId=a%2Bb", "uploads="])
def test_the_byte_signer_signs_text_as_awscrt_does(value: str, query: str) -> None:
    """The signer of header bytes that are not UTF-8 agrees with awscrt wherever both can
    sign: it is the same SigV4."""
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN)
    when = FIXED.replace(tzinfo=datetime.UTC)
    path = "/bkt/unicod%C3%A9/k" + (f"?{query}" if query else "")
    signed = []
    for signer in (
        signing._CrtSigner(credentials, "eu-west-3"),
        signing._PythonSigner(credentials, "eu-west-3"),
    ):
        headers = {"Host": "127.0.0.1:9000", "Content-MD5": MD5, "x-amz-meta-a": value}
        signer.sign("PUT", f"http://127.0.0.1:9000{path}", path, headers, when)
        signed.append(headers)
    assert signed[0]["Authorization"] == signed[1]["Authorization"]
    assert signed[0]["X-Amz-Date"] == signed[1]["X-Amz-Date"]


def test_header_bytes_that_are_not_utf8_are_signed_as_sent(plane_factory: Any) -> None:
    plane, sent = plane_factory("crt")
    raw = b"Jos\xe9".decode("utf-8", "surrogateescape")  # as a reply's header held it
    plane.put_object("bkt", "k", b"x", md5_b64=MD5, headers={"x-amz-meta-a": raw})
    authorization = sent[0].headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "x-amz-meta-a" in authorization.split("SignedHeaders=")[1]
