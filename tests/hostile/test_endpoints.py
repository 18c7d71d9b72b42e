"""Protective defaults for endpoints: TLS certificates are checked unless a side opts out
(with a warning), and plain http goes only to this machine unless a side allows it."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from longbow_testkit.tls import self_signed_certificate
from s3longbow.stores.location import is_loopback

from ..conftest import Bucket, cli_env, endpoint_args
from .conftest import db_args, invoke, longbow

EXIT_CONFIG = 2
EXIT_FATAL = 3


def this_machines_address() -> str:
    """An address of this machine that is not a loopback one (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        address = str(s.getsockname()[0])
    assert not ipaddress.ip_address(address).is_loopback
    return address


def test_plain_http_to_another_machine_is_refused(tmp_path: Path) -> None:
    url = f"http://{this_machines_address()}:9"
    done = longbow(
        "sync", "s3://bucket/", str(tmp_path / "out"), *db_args(tmp_path), "--src-endpoint-url", url
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert f"endpoint URL {url} uses plain http" in done.stderr
    assert "use https, or pass --src-allow-http" in done.stderr


@pytest.mark.parametrize("how", ["flag", "config key"])
def test_plain_http_to_another_machine_when_allowed(how: str, tmp_path: Path) -> None:
    # Allowed, the run goes on to the network: nothing listens there, so it stops with exit 3.
    url = f"http://{this_machines_address()}:9"
    if how == "flag":
        args = ["s3://bucket/", str(tmp_path / "out"), "--src-endpoint-url", url]
        args.append("--src-allow-http")
    else:
        config = tmp_path / "longbow.toml"
        config.write_text(
            f'[source]\nendpoint_url = "{url}"\nallow_http = true\n'
            f'[[pairs]]\nsrc = "s3://bucket/"\ndst = "{tmp_path / "out"}"\n'
        )
        args = ["--config", str(config)]
    done = longbow(
        "sync",
        *args,
        *db_args(tmp_path),
        env={"LONGBOW_SRC_ACCESS_KEY_ID": "k", "LONGBOW_SRC_SECRET_ACCESS_KEY": "s"},
    )
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "plain http" not in done.stderr and f"{this_machines_address()}:9" in done.stderr


@pytest.mark.parametrize("command", ["send", "worker", "cluster-init"])
def test_a_cluster_config_with_plain_http_to_another_machine_is_refused(
    command: str, tmp_path: Path
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(
        '[cluster]\nqueue_name = "jobs"\n'
        f'[source]\nendpoint_url = "http://{this_machines_address()}:9"\n'
        '[[pairs]]\nsrc = "s3://a/x/"\ndst = "s3://b/y/"\n'
    )
    code, err = invoke(command, "--config", str(config))
    assert code == EXIT_CONFIG, err
    assert "uses plain http" in err and "allow_http = true in [source]" in err


def test_an_endpoint_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    done = longbow(
        "verify", "s3://a/", str(tmp_path), "--dst-endpoint-url", "ftp://files.example.net"
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "is not an http(s)://host[:port] URL" in done.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("localhost.example.net", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- TLS ------------------------------------------------------------------------------------


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture()
def tls_front(src_bucket: Bucket, tmp_path: Path) -> Iterator[str]:
    """An https endpoint with a self-signed certificate in front of the source server."""
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    upstream = urlsplit(src_bucket.endpoint.url)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                raw.settimeout(30)
                client = context.wrap_socket(raw, server_side=True)
                server = socket.create_connection((upstream.hostname, upstream.port), timeout=30)
            except (OSError, ssl.SSLError):
                raw.close()  # e.g. the client refused the certificate
                continue
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    thread.join(5)


def _sync_through(url: str, src_bucket: Bucket, tmp_path: Path, *extra: str) -> tuple[int, str]:
    args = [
        a if a != src_bucket.endpoint.url else url for a in endpoint_args(src_bucket.endpoint, None)
    ]
    done = longbow(
        "sync",
        src_bucket.url,
        str(tmp_path / "out"),
        *db_args(tmp_path),
        *args,
        *extra,
        env=cli_env(src_bucket.endpoint, None),
    )
    return done.returncode, done.stderr


def test_a_certificate_nobody_vouches_for_is_refused(
    tls_front: str, src_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("a.txt", b"over tls")
    code, err = _sync_through(tls_front, src_bucket, tmp_path)
    assert code == EXIT_FATAL, err
    assert "certificate" in err.lower() and tls_front.split("//")[1] in err
    assert "AWS_CA_BUNDLE" in err and "--src-no-verify-ssl" in err  # the hint says how to fix it
    assert not (tmp_path / "out" / "a.txt").exists()


@pytest.mark.parametrize("how", ["flag", "config key"])
def test_no_verify_ssl_copies_and_warns(
    how: str, tls_front: str, src_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("a.txt", b"over tls")
    if how == "flag":
        code, err = _sync_through(tls_front, src_bucket, tmp_path, "--src-no-verify-ssl")
    else:
        config = tmp_path / "longbow.toml"
        config.write_text(
            f'[source]\nendpoint_url = "{tls_front}"\nregion = "{src_bucket.endpoint.region}"\n'
            "path_style = true\nverify_ssl = false\n"
            f'[[pairs]]\nsrc = "{src_bucket.url}/"\ndst = "{tmp_path / "out"}"\n'
        )
        done = longbow(
            "sync",
            "--config",
            str(config),
            *db_args(tmp_path),
            env=cli_env(src_bucket.endpoint, None),
        )
        code, err = done.returncode, done.stderr
    assert code == 0, err
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"over tls"
    assert f"TLS certificates of {tls_front} are not checked" in err
