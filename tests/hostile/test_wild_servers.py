"""Servers that bend the protocol, as servers in the wider world do: a whole `longbow` run
against a scripted server (longbow_testkit.fakes3) or a real one behind a fault, each case
checking that nothing is lost silently, no byte is mixed up, and one object never stops the
run.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import json
import re
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.fakes3 import DROP, Action, FakeS3, Request, error, interim, list_reply, reply
from longbow_testkit.forwardproxy import ForwardProxy
from longbow_testkit.tls import self_signed_certificate
from s3longbow.stores.s3 import lean, signing, wire

from ..conftest import Bucket, cli_env, endpoint_args
from .conftest import db_args, longbow

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FATAL = 3
KEYS = ["k1", "k2", "k3", "k4", "k5"]


@pytest.fixture()
def fake() -> Iterator[FakeS3]:
    with FakeS3(page_size=2) as server:
        for key in KEYS:
            server.put("bkt", key, f"data of {key}".encode())
        yield server


def fake_args(server: FakeS3, side: str = "src", region: str | None = "us-east-1") -> list[str]:
    args = [f"--{side}-endpoint-url", server.url, f"--{side}-path-style"]
    if region:
        args += [f"--{side}-region", region]
    return args


FAKE_KEYS = {
    "LONGBOW_SRC_ACCESS_KEY_ID": "AKIDFAKE",
    "LONGBOW_SRC_SECRET_ACCESS_KEY": "fake-secret",
}


def sync_from(
    server: FakeS3, dst: Bucket, tmp_path: Path, *extra: str, region: str | None = "us-east-1"
) -> Any:
    return longbow(
        "sync",
        "s3://bkt/",
        f"{dst.url}/",
        *db_args(tmp_path),
        *fake_args(server, region=region),
        *endpoint_args(None, dst.endpoint),
        "--json",
        *extra,
        env={**cli_env(None, dst.endpoint), **FAKE_KEYS},
    )


def copied(dst: Bucket) -> dict[str, bytes]:
    return {key: dst.get(key) for key in dst.keys()}


# --------------------------------------------------------------------------------------------
# Listings truncated without a way on
# --------------------------------------------------------------------------------------------


def _no_token(server: FakeS3) -> None:
    """Truncated pages that name no continuation token (start-after is honoured)."""

    def answer(request: Request) -> bytes | None:
        if request.method != "GET" or request.key or "list-type" not in request.query:
            return None
        keys, truncated = server.list_page(request)
        return list_reply([(k, server.objects["bkt", k]) for k in keys], truncated=truncated)

    server.on(answer)


def test_a_truncated_page_without_a_token_goes_on_after_its_last_key(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    _no_token(fake)
    done = sync_from(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert copied(dst_bucket) == {k: f"data of {k}".encode() for k in KEYS}
    asked = [r.query.get("start-after") for r in fake.of("GET") if "list-type" in r.query]
    assert "k2" in asked and "k4" in asked


def test_a_v1_only_server_is_paged_with_markers(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    def answer(request: Request) -> bytes | None:
        if request.method != "GET" or request.key or "versions" in request.query:
            return None
        # The older ListObjects: list-type and start-after ignored, marker honoured.
        keys, truncated = fake.list_page(
            Request("GET", "", "/bkt", {"marker": request.query.get("marker", "")}, [], b"", 0)
        )
        return list_reply([(k, fake.objects["bkt", k]) for k in keys], truncated=truncated, v1=True)

    fake.on(answer)
    done = sync_from(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(copied(dst_bucket)) == KEYS


def test_a_server_that_ignores_where_a_page_starts_fails_the_listing_and_deletes_nothing(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    def answer(request: Request) -> bytes | None:
        if request.method != "GET" or request.key:
            return None
        first = [(k, fake.objects["bkt", k]) for k in KEYS[:2]]
        return list_reply(first, truncated=True)  # always page 1, never a token

    fake.on(answer)
    for key in [*KEYS, "orphan"]:  # everything is at the destination already
        dst_bucket.put(key, b"old")
    done = sync_from(fake, dst_bucket, tmp_path, "--delete", "--force")
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "asked for after 'k2' brought no key after it" in done.stderr
    assert "nothing was copied from it or deleted" in done.stderr
    assert sorted(dst_bucket.keys()) == sorted([*KEYS, "orphan"])
    verified = longbow(
        "verify",
        "s3://bkt/",
        f"{dst_bucket.url}/",
        *fake_args(fake),
        *endpoint_args(None, dst_bucket.endpoint),
        env={**cli_env(None, dst_bucket.endpoint), **FAKE_KEYS},
    )
    assert verified.returncode == EXIT_FATAL, verified.stdout
    assert "brought no key after" in verified.stderr


def test_a_truncated_page_from_a_server_listing_folder_by_folder_fails_the_listing(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    _no_token(fake)
    fake.on(
        lambda r: (
            reply(200, headers={"Server": "SeaweedFS 3.80"})
            if r.method == "HEAD" and not r.key
            else None
        )
    )
    done = sync_from(fake, dst_bucket, tmp_path, "--delete")
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "going on after the last key could skip keys" in done.stderr
    assert dst_bucket.keys() == []


def test_a_truncated_version_listing_without_a_next_key_goes_on(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    _no_token(fake)
    done = sync_from(fake, dst_bucket, tmp_path, "--compare", "version")
    assert done.returncode == 0, done.stderr
    assert sorted(copied(dst_bucket)) == KEYS
    markers = [r.query.get("key-marker") for r in fake.of("GET", query="versions")]
    assert "k2" in markers and "k4" in markers


# --------------------------------------------------------------------------------------------
# Interim replies
# --------------------------------------------------------------------------------------------


def test_early_hints_before_every_reply_never_mix_up_bodies(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    fake.on(lambda r: interim(103, {"Link": "</x>; rel=preload"}) + fake.answer(r))
    done = sync_from(fake, dst_bucket, tmp_path, "--workers", "1", "--listing-threads", "1")
    assert done.returncode == 0, done.stderr
    assert copied(dst_bucket) == {k: f"data of {k}".encode() for k in KEYS}


# --------------------------------------------------------------------------------------------
# Header bytes that are not ASCII; a refusal for one object only
# --------------------------------------------------------------------------------------------


def raw_put(bucket: Bucket, key: str, body: bytes, headers: dict[str, bytes]) -> None:
    """A PUT whose header values go out as exactly these bytes, signed as those bytes."""
    endpoint = bucket.endpoint
    host = endpoint.url.split("//")[1]
    path = f"/{bucket.name}/{wire.encode_key(key)}"
    text = {name: value.decode("utf-8", "surrogateescape") for name, value in headers.items()}
    signed = {"Host": host, "Content-MD5": _md5(body), **text}
    signer = signing._PythonSigner(
        signing.StaticCredentials(endpoint.access_key, endpoint.secret_key), endpoint.region
    )
    when = datetime.datetime.now(datetime.UTC)
    signer.sign("PUT", f"{endpoint.url}{path}", path, signed, when)
    connection = http.client.HTTPConnection(host, timeout=30)
    connection.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    for name, value in signed.items():
        connection.putheader(name, value.encode("utf-8", "surrogateescape"))
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    answer = connection.getresponse()
    assert answer.status == 200, answer.read()
    connection.close()


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_metadata_with_utf8_and_other_bytes_is_copied_byte_for_byte(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    raw_put(src_bucket, "utf8", b"one", {"x-amz-meta-author": "José 字".encode()})
    raw_put(src_bucket, "latin1", b"two", {"x-amz-meta-author": b"Jos\xe9"})
    src_bucket.put("plain", b"three")
    done = longbow(
        "sync",
        f"{src_bucket.url}/",
        f"{dst_bucket.url}/",
        *db_args(tmp_path),
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        env=cli_env(src_bucket.endpoint, dst_bucket.endpoint),
    )
    assert done.returncode == 0, done.stderr
    for key, expected in (("utf8", "José 字".encode()), ("latin1", b"Jos\xe9")):
        head = dst_bucket.client.head_object(Bucket=dst_bucket.name, Key=key)
        # http.client reads header bytes as Latin-1: encoding back gives the bytes received.
        assert head["Metadata"]["author"].encode("latin-1") == expected, key
    assert dst_bucket.get("plain") == b"three"


def test_a_signature_refused_for_one_object_fails_that_object_only(
    src_bucket: Bucket, tmp_path: Path
) -> None:
    for key in ("bad", "good-1", "good-2"):
        src_bucket.put(key, key.encode())
    with FakeS3() as fake:
        fake.on(
            lambda r: (
                error(403, "SignatureDoesNotMatch", "The signature does not match")
                if r.method == "PUT" and r.key == "bad"
                else None
            )
        )
        done = longbow(
            "sync",
            f"{src_bucket.url}/",
            "s3://bkt/",
            *db_args(tmp_path),
            *endpoint_args(src_bucket.endpoint, None),
            *fake_args(fake, "dst"),
            "--json",
            env={
                **cli_env(src_bucket.endpoint, None),
                "LONGBOW_DST_ACCESS_KEY_ID": "AKIDFAKE",
                "LONGBOW_DST_SECRET_ACCESS_KEY": "fake-secret",
            },
        )
        assert done.returncode == EXIT_FAILED, done.stderr
        report = json.loads(done.stdout)
        assert [f["key"] for f in report["failed"]] == ["bad"]
        assert "refuses this object's request only" in report["failed"][0]["reason"]
        assert fake.objects["bkt", "good-1"] == b"good-1"
        assert fake.objects["bkt", "good-2"] == b"good-2"


# --------------------------------------------------------------------------------------------
# TLS: trust, and connections the server closes while idle
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 (its own authority), and a server context serving it."""
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = self_signed_certificate(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def sync_to(
    src: Bucket, fake: FakeS3, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Any:
    return longbow(
        "sync",
        f"{src.url}/",
        "s3://bkt/",
        *db_args(tmp_path),
        *endpoint_args(src.endpoint, None),
        *fake_args(fake, "dst"),
        "--json",
        *extra,
        env={
            **cli_env(src.endpoint, None),
            "LONGBOW_DST_ACCESS_KEY_ID": "AKIDFAKE",
            "LONGBOW_DST_SECRET_ACCESS_KEY": "fake-secret",
            **(env or {}),
        },
    )


def attempts(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT attempts FROM jobs")]


def test_kept_tls_connections_the_server_closed_cost_no_retry(
    src_bucket: Bucket, certificate: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    cert, context = certificate
    for i in range(20):
        src_bucket.put(f"k{i:02}", b"x" * 100)
    with FakeS3(tls=context) as fake:
        # Each reply ends its connection, without saying so (as an idle timeout does).
        fake.on(lambda r: Action("close", fake.answer(r)) if r.method == "PUT" else None)
        started = time.monotonic()
        done = sync_to(src_bucket, fake, tmp_path, "--dst-ca-bundle", str(cert), "--workers", "1")
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert sorted(k for b, k in fake.objects if b == "bkt") == [f"k{i:02}" for i in range(20)]
        assert len(fake.of("PUT")) == 20  # none sent twice
    assert set(attempts(tmp_path / "jobs.db")) == {0}, "no job needed a second attempt"
    assert elapsed < 20


@pytest.mark.parametrize(
    "how", ["flag", "config file", "AWS_CA_BUNDLE", "profile", "REQUESTS_CA_BUNDLE", "order"]
)
def test_both_clients_trust_the_same_authorities(
    how: str, src_bucket: Bucket, certificate: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    cert, context = certificate
    other, _ = self_signed_certificate(tmp_path)  # an authority that vouches for nothing here
    src_bucket.put("new", b"copied by the lean client")
    args: list[str] = ["--delete", "--force"]
    env: dict[str, str] = {}
    if how == "flag":
        args += ["--dst-ca-bundle", str(cert)]
    elif how == "config file":
        config = tmp_path / "conf" / "longbow.toml"
        config.parent.mkdir()
        (config.parent / "ca.pem").write_bytes(cert.read_bytes())
        config.write_text('[destination]\nca_bundle = "ca.pem"\n')
        args += ["--config", str(config)]
    elif how == "AWS_CA_BUNDLE":
        env["AWS_CA_BUNDLE"] = str(cert)
    elif how == "profile":
        aws = tmp_path / "aws-config"
        aws.write_text(f"[profile lab]\nca_bundle = {cert}\nregion = us-east-1\n")
        credentials = tmp_path / "aws-credentials"
        credentials.write_text(
            "[lab]\naws_access_key_id = AKIDFAKE\naws_secret_access_key = fake-secret\n"
        )
        env |= {"AWS_CONFIG_FILE": str(aws), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}
        args += ["--dst-profile", "lab"]
    elif how == "REQUESTS_CA_BUNDLE":
        env["REQUESTS_CA_BUNDLE"] = str(cert)
    else:  # each level overrides the ones after it
        env |= {"AWS_CA_BUNDLE": str(other), "REQUESTS_CA_BUNDLE": str(other)}
        args += ["--dst-ca-bundle", str(cert)]
    with FakeS3(tls=context) as fake:
        fake.put("bkt", "orphan", b"removed by botocore's DeleteObjects")
        done = sync_to(src_bucket, fake, tmp_path, *args, env=env)
        assert done.returncode == 0, done.stderr
        assert fake.objects["bkt", "new"] == b"copied by the lean client"
        assert ("bkt", "orphan") not in fake.objects
        assert fake.of("POST", query="delete"), "the delete went through botocore"


def test_an_authority_that_does_not_vouch_fails_at_the_check_for_both_clients(
    src_bucket: Bucket, certificate: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    _, context = certificate
    other, _ = self_signed_certificate(tmp_path)
    src_bucket.put("new", b"x")
    with FakeS3(tls=context) as fake:
        done = sync_to(src_bucket, fake, tmp_path, env={"REQUESTS_CA_BUNDLE": str(other)})
        assert done.returncode == EXIT_FATAL, done.stderr
        assert "certificate" in done.stderr.lower()
        assert ("bkt", "new") not in fake.objects


# --------------------------------------------------------------------------------------------
# Requests that must not be made twice
# --------------------------------------------------------------------------------------------


def test_an_upload_whose_start_reply_was_lost_is_aborted(
    src_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("big", bytes(range(256)) * (11 * 4096))  # 11 MiB: three 5 MiB parts
    lost: list[str] = []
    with FakeS3() as fake:

        def lose_the_first_reply(request: Request) -> Any:
            if request.method == "POST" and "uploads" in request.query and not lost:
                fake.answer(request)  # the upload is started...
                lost.append(request.key)
                return DROP  # ...and its id never reaches the client
            return None

        fake.on(lose_the_first_reply)
        done = sync_to(
            src_bucket, fake, tmp_path, "--part-size", "5MiB", "--resumable-threshold", "5MiB"
        )
        assert done.returncode == 0, done.stderr
        assert lost == ["big"]
        assert fake.objects["bkt", "big"] == src_bucket.get("big")
        assert fake.uploads == {}, "no upload is left behind"
        assert len(fake.of("DELETE", query="uploadId")) == 1


# --------------------------------------------------------------------------------------------
# Proxies
# --------------------------------------------------------------------------------------------


def test_plain_http_endpoints_go_through_an_http_proxy_on_the_fast_client(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("a", b"through the proxy")
    with ForwardProxy() as proxy:
        done = longbow(
            "sync",
            f"{src_bucket.url}/",
            f"{dst_bucket.url}/",
            *db_args(tmp_path),
            *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
            env={**cli_env(src_bucket.endpoint, dst_bucket.endpoint), "HTTP_PROXY": proxy.url()},
        )
        assert done.returncode == 0, done.stderr
        assert dst_bucket.get("a") == b"through the proxy"
        for endpoint in (src_bucket.endpoint, dst_bucket.endpoint):
            assert any(endpoint.url in line for line in proxy.forwarded), endpoint.url
        assert all(agent and agent.startswith("longbow/") for agent in proxy.agents)


def test_no_proxy_keeps_an_endpoint_direct(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("a", b"direct")
    with ForwardProxy() as proxy:
        done = longbow(
            "sync",
            f"{src_bucket.url}/",
            f"{dst_bucket.url}/",
            *db_args(tmp_path),
            *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
            env={
                **cli_env(src_bucket.endpoint, dst_bucket.endpoint),
                "HTTP_PROXY": proxy.url(),
                "NO_PROXY": "localhost,127.0.0.1",
            },
        )
        assert done.returncode == 0, done.stderr
        assert proxy.lines == []
    assert dst_bucket.get("a") == b"direct"


def test_https_goes_through_a_proxy_tunnel_with_its_credentials_never_shown(
    src_bucket: Bucket, certificate: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    cert, context = certificate
    src_bucket.put("a", b"tunnelled")
    with (
        ForwardProxy(credentials=("proxy-user", "pr0xy-s3cret")) as proxy,
        FakeS3(tls=context) as fake,
    ):
        done = sync_to(
            src_bucket,
            fake,
            tmp_path,
            "--dst-ca-bundle",
            str(cert),
            "-vv",
            # The source is plain http: HTTPS_PROXY is for the destination alone.
            env={"HTTPS_PROXY": proxy.url("proxy-user", "pr0xy-s3cret")},
        )
        assert done.returncode == 0, done.stderr
        assert fake.objects["bkt", "a"] == b"tunnelled"
        assert proxy.tunnels and all(
            t == f"CONNECT 127.0.0.1:{fake.port} HTTP/1.1" for t in proxy.tunnels
        )
        assert "pr0xy-s3cret" not in done.stderr + done.stdout
        wrong = sync_to(
            src_bucket,
            fake,
            tmp_path,
            "--dst-ca-bundle",
            str(cert),
            env={"HTTPS_PROXY": proxy.url("proxy-user", "wrong-s3cret")},
        )
        assert wrong.returncode == EXIT_FATAL, wrong.stderr
        assert "407" in wrong.stderr and "wrong-s3cret" not in wrong.stderr


def test_unverified_tls_stays_on_the_fast_client(
    src_bucket: Bucket, certificate: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    _, context = certificate
    src_bucket.put("a", b"unverified")
    with FakeS3(tls=context) as fake:
        done = sync_to(src_bucket, fake, tmp_path, "--dst-no-verify-ssl")
        assert done.returncode == 0, done.stderr
        assert "are not checked" in done.stderr
        puts = fake.of("PUT")
        assert puts and all((r.header("user-agent") or "").startswith("longbow/") for r in puts)


# --------------------------------------------------------------------------------------------
# Bucket names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", ["bad\r\nX-Injected: 1", "tab\tbucket", "Bad_Name", "ab"])
def test_a_bucket_name_against_the_rules_is_refused_before_any_request(
    bucket: str, tmp_path: Path
) -> None:
    with FakeS3() as fake:
        done = longbow(
            "sync",
            f"s3://{bucket}/",
            str(tmp_path / "out"),
            *db_args(tmp_path),
            *fake_args(fake),
            env=FAKE_KEYS,
        )
        assert done.returncode == EXIT_CONFIG, done.stderr
        assert "is not a valid bucket name" in done.stderr
        assert fake.requests == []


def test_a_bucket_name_in_a_config_file_is_checked_too(tmp_path: Path) -> None:
    config = tmp_path / "longbow.toml"
    config.write_text(f'[[pairs]]\nsrc = "s3://bad\\rname/"\ndst = "{tmp_path / "out"}"\n')
    done = longbow("sync", "--config", str(config), *db_args(tmp_path), env=FAKE_KEYS)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "is not a valid bucket name" in done.stderr


def test_relaxed_bucket_names_reach_a_store_that_allows_them(tmp_path: Path) -> None:
    with FakeS3() as fake:
        fake.put("Bad_Name", "a", b"capitals and underscores")
        done = longbow(
            "sync",
            "s3://Bad_Name/",
            str(tmp_path / "out"),
            *db_args(tmp_path),
            *fake_args(fake),
            "--src-bucket-names",
            "relaxed",
            env=FAKE_KEYS,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / "a").read_bytes() == b"capitals and underscores"
        assert all(r.target.startswith("/Bad_Name") for r in fake.requests)


# --------------------------------------------------------------------------------------------
# A server that trickles
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_server_that_trickles_fails_the_object_within_the_minimum_rate_window(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    fake.put("bkt", "slow", b"s" * 4096)

    def trickle(request: Request) -> Any:
        if request.method == "GET" and request.key == "slow":
            return Action("trickle", fake.answer(request), delay=0.05)  # 20 bytes a second
        return None

    fake.on(trickle)
    config = tmp_path / "longbow.toml"  # one attempt of one read: one window of 30 s
    config.write_text('min_rate = "1KiB/s"\nmax_attempts = 1\npart_attempts = 1\n')
    started = time.monotonic()
    done = sync_from(fake, dst_bucket, tmp_path, "--config", str(config))
    elapsed = time.monotonic() - started
    assert done.returncode == EXIT_FAILED, done.stderr
    report = json.loads(done.stdout)
    assert [f["key"] for f in report["failed"]] == ["slow"]
    assert "below the minimum" in report["failed"][0]["reason"]
    assert sorted(dst_bucket.keys()) == KEYS
    assert elapsed < 90


# --------------------------------------------------------------------------------------------
# Framing that lies, and heads that are merely large
# --------------------------------------------------------------------------------------------


def test_a_negative_chunk_size_fails_the_read_without_buffering(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    fake.put("bkt", "lies", b"ten bytes!")
    lying = reply(200, headers={"Transfer-Encoding": "chunked"}, length=False)
    fake.on(
        lambda r: (
            lying + b"-1\r\n" + b"x" * 20_000_000 if r.method == "GET" and r.key == "lies" else None
        )
    )
    done = sync_from(fake, dst_bucket, tmp_path, "--max-attempts", "1")
    assert done.returncode == EXIT_FAILED, done.stderr
    report = json.loads(done.stdout)
    assert [f["key"] for f in report["failed"]] == ["lies"]
    assert "chunk size" in report["failed"][0]["reason"]


def test_an_object_with_120_metadata_entries_is_copied(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    metadata = {f"k{i:03}": f"v{i}" for i in range(120)}
    src_bucket.client.put_object(Bucket=src_bucket.name, Key="rich", Body=b"x", Metadata=metadata)
    done = longbow(
        "sync",
        f"{src_bucket.url}/",
        f"{dst_bucket.url}/",
        *db_args(tmp_path),
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        env=cli_env(src_bucket.endpoint, dst_bucket.endpoint),
    )
    assert done.returncode == 0, done.stderr
    # http.client (under boto3) refuses more than 100 header lines: read it our way.
    endpoint = dst_bucket.endpoint
    plane = lean.S3DataPlane(
        endpoint.url,
        endpoint.region,
        True,
        signing.StaticCredentials(endpoint.access_key, endpoint.secret_key),
        1,
    )
    headers = plane.head_object(dst_bucket.name, "rich")
    plane.close()
    assert headers is not None
    copied_metadata = {
        name.removeprefix("x-amz-meta-"): value
        for name, value in headers.items()
        if name.startswith("x-amz-meta-")
    }
    assert copied_metadata == metadata


# --------------------------------------------------------------------------------------------
# Regions, redirects and clocks
# --------------------------------------------------------------------------------------------


def _in_region(server: FakeS3, region: str) -> None:
    """Requests signed for another region are refused as S3 refuses them, naming it."""

    def answer(request: Request) -> bytes | None:
        if request.signed_region in (None, region):
            return None
        headers = {"x-amz-bucket-region": region}
        if request.method == "HEAD":
            return reply(301, headers=headers)
        body = (
            "<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to "
            f"access must be addressed using the specified endpoint.</Message><Region>{region}"
            "</Region></Error>"
        ).encode()
        return reply(301, body, headers)

    server.on(answer)


def test_the_buckets_region_is_found_when_none_is_given(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    _in_region(fake, "eu-west-1")
    done = sync_from(fake, dst_bucket, tmp_path, region=None)
    assert done.returncode == 0, done.stderr
    assert sorted(dst_bucket.keys()) == KEYS
    assert fake.requests[-1].signed_region == "eu-west-1"


def test_a_wrong_region_given_is_named(fake: FakeS3, dst_bucket: Bucket, tmp_path: Path) -> None:
    _in_region(fake, "eu-west-1")
    done = sync_from(fake, dst_bucket, tmp_path, region="us-west-2")
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "is in region eu-west-1, not us-west-2" in done.stderr
    assert dst_bucket.keys() == []


def test_a_temporary_redirect_is_followed(fake: FakeS3, dst_bucket: Bucket, tmp_path: Path) -> None:
    def redirect(request: Request) -> bytes | None:
        if request.method == "GET" and request.key and "x-id" not in request.query:
            where = f"{fake.url}/bkt/{request.key}?x-id=redirected"
            return reply(307, headers={"Location": where})
        return None

    fake.on(redirect)
    done = sync_from(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert copied(dst_bucket) == {k: f"data of {k}".encode() for k in KEYS}
    assert len([r for r in fake.of("GET") if "x-id" in r.query]) == len(KEYS)


def test_a_bucket_check_the_server_fails_is_asked_again(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    refused = [0]

    def busy(request: Request) -> bytes | None:
        if request.method == "HEAD" and not request.key and refused[0] < 2:
            refused[0] += 1
            return reply(503 if refused[0] == 1 else 500)
        return None

    fake.on(busy)
    done = sync_from(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert refused[0] == 2
    assert sorted(dst_bucket.keys()) == KEYS


def _clock_ahead(ahead: datetime.timedelta) -> Callable[[Request], bytes | None]:
    """A hook refusing, as S3 does, a request signed more than 15 minutes off the server's
    clock, which runs `ahead` of this machine's."""

    def skewed(request: Request) -> bytes | None:
        stamp = request.header("x-amz-date")
        if stamp is None:
            return None
        signed = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        server_now = datetime.datetime.now(datetime.UTC) + ahead
        if abs(signed - server_now) < datetime.timedelta(minutes=15):
            return None
        text = server_now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = (
            "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the "
            f"request time and the current time is too large.</Message><RequestTime>{stamp}"
            f"</RequestTime><ServerTime>{text}</ServerTime></Error>"
        )
        date = server_now.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return reply(403, body.encode(), {"Date": date})  # a HEAD's has only the Date

    return skewed


def test_a_clock_hours_off_is_corrected_with_the_servers_time(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    skewed = _clock_ahead(datetime.timedelta(hours=2))
    fake.on(skewed)
    done = sync_from(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(dst_bucket.keys()) == KEYS
    assert re.search(r"clock is -(7199|7200|7201) s off the server's", done.stderr), done.stderr


def test_requests_refused_at_once_for_the_clock_agree_on_its_offset(fake: FakeS3) -> None:
    """Three HEADs signed before any refusal came back: each refusal sets the offset the
    server's time shows (adding theirs up would put the clock six hours off the other way)."""
    skewed = _clock_ahead(datetime.timedelta(hours=2))
    together = threading.Barrier(3, timeout=10)

    first = [3]  # the first attempts, refused once all three came
    lock = threading.Lock()

    def held(request: Request) -> bytes | None:
        refusal = skewed(request)
        with lock:
            waits, first[0] = refusal is not None and first[0] > 0, first[0] - 1
        if waits:
            together.wait()
        return refusal

    fake.on(held)
    plane = lean.S3DataPlane(
        fake.url, "us-east-1", True, signing.StaticCredentials("key", "secret"), 4
    )
    outcomes: list[object] = []

    def head() -> None:
        try:
            outcomes.append(plane.head_bucket("bkt")[0])
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=head) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    plane.close()
    assert not together.broken
    assert outcomes == [200, 200, 200]
    assert abs(plane.clock_offset - 7200) <= 2
