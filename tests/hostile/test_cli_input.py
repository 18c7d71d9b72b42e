"""Bad config files, bad locations, unknown buckets and refused credentials given to the
`longbow` command: each ends with a message saying what is wrong, where, and how to fix it,
and the exit code of its kind (2: bad input, 3: the run could not go on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket
from .conftest import db_args, invoke, longbow

EXIT_CONFIG = 2
EXIT_FATAL = 3

PAIR = '[[pairs]]\nsrc = "s3://a/x/"\ndst = "s3://b/y/"\n'

# name -> (config file text, what the message must say)
CONFIG_CASES = {
    "workers as text": ('workers = "many"\n' + PAIR, "longbow.toml: workers must be a number"),
    "workers zero": ("workers = 0\n" + PAIR, "longbow.toml: workers must be at least 1"),
    "fractional workers": ("workers = 2.5\n" + PAIR, "workers must be a whole number"),
    "absurd workers": ("workers = 100000\n" + PAIR, "workers 100000 is above 1024"),
    "endless attempts": ("max_attempts = 1000000\n" + PAIR, "max-attempts 1000000 is above 100"),
    "negative part size": ("part_size = -5\n" + PAIR, "part-size: a size cannot be negative"),
    "absurd part size": ('part_size = "10TiB"\n' + PAIR, "outside S3's limits"),
    "absurd threshold": (
        'resumable_threshold = "6GiB"\n' + PAIR,
        "resumable-threshold is above 5GiB",
    ),
    "rate without a number": (
        'bandwidth_limit = "fast"\n' + PAIR,
        "bandwidth_limit: 'fast' is not",
    ),
    "rate below 1 KiB/s": (
        'bandwidth_limit = "10B/s"\n' + PAIR,
        "longbow.toml: bwlimit is below 1 KiB/s",  # the file that holds the setting is named
    ),
    "unknown compare mode": ('compare = "checksum"\n' + PAIR, "longbow.toml: compare 'checksum'"),
    "bad checksum algorithm": (
        '[destination]\nchecksum_algorithm = "CRC99"\n' + PAIR,
        "checksum-algorithm 'CRC99' is not known",
    ),
    "rate per hour": ('bandwidth_limit = "5MiB/h"\n' + PAIR, "bandwidth_limit: '5MiB/h' is not"),
    "path_style as text": ('[source]\npath_style = "yes"\n' + PAIR, "path_style must be a bool"),
    "secret key in the file": (
        '[source]\nsecret_access_key = "not-here"\n' + PAIR,
        "credentials belong in a profile or the environment",
    ),
    "unknown key in [destination]": ('[destination]\nregoin = "x"\n' + PAIR, "regoin"),
    "pair with a number": ('[[pairs]]\nsrc = 5\ndst = "s3://b/"\n', "pair 1 must have"),
    "pair with an extra key": (
        '[[pairs]]\nsrc = "s3://a/"\ndst = "s3://b/"\nacl = "public"\n',
        "pair 1 must have exactly the strings src and dst",
    ),
    "source not a table": ('source = "s3://a"\n' + PAIR, "[source] must be a table"),
    "not UTF-8": (None, "cannot read config file"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_file(name: str, tmp_path: Path) -> None:
    text, expected = CONFIG_CASES[name]
    path = tmp_path / "longbow.toml"
    if text is None:
        path.write_bytes(b'workers = "\xff\xfe"\n')
    else:
        path.write_text(text)
    code, err = invoke("sync", "--config", str(path), *db_args(tmp_path))
    assert code == EXIT_CONFIG, err
    assert expected in err


# name -> (SRC, DST, what the message must say)
LOCATION_CASES = {
    "s3:/// with a key but no bucket": ("s3:///key", "OUT", "names no bucket"),
    "http URL as a location": ("http://x/bucket", "OUT", "unsupported location"),
    "empty source": ("", "OUT", "an empty location was given"),
    "empty destination": ("s3://bucket/", "", "an empty location was given"),
    "bucket name with a space": ("s3://my bucket/x", "OUT", "is not a valid bucket name"),
    "unknown scheme": ("ftp://host/dir", "OUT", "unsupported location"),
}


@pytest.mark.parametrize("name", sorted(LOCATION_CASES))
def test_location(name: str, tmp_path: Path) -> None:
    src, dst, expected = LOCATION_CASES[name]
    dst = str(tmp_path / "out") if dst == "OUT" else dst
    code, err = invoke("sync", src, dst, *db_args(tmp_path))
    assert code == EXIT_CONFIG, err
    assert expected in err and "hint:" in err


def test_unknown_destination_bucket(src_bucket: Bucket, seaweed_dst: LocalServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    src_bucket.put("a", b"data")
    ep = seaweed_dst.endpoint
    done = longbow(
        "sync",
        src_bucket.url,
        "s3://no-such-destination-bucket/x/",
        *db_args(tmp_path),
        *endpoint_args(src_bucket.endpoint, ep),
        env=cli_env(src_bucket.endpoint, ep),
    )
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "'no-such-destination-bucket' does not exist" in done.stderr
    assert ep.url in done.stderr and "create it" in done.stderr


def test_right_key_wrong_secret_on_the_destination(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("a", b"data")
    env = {
        **cli_env(src_bucket.endpoint, dst_bucket.endpoint),
        "LONGBOW_DST_SECRET_ACCESS_KEY": "Not-The-Secret-0123456789",
    }
    done = longbow(
        "sync",
        src_bucket.url,
        dst_bucket.url,
        *db_args(tmp_path),
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        env=env,
    )
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "denied" in done.stderr and "check the credentials" in done.stderr
    assert "Not-The-Secret" not in done.stderr + done.stdout


def test_verify_with_an_unknown_profile(tmp_path: Path) -> None:
    done = longbow(
        "verify", "s3://src-bucket/", "s3://dst-bucket/", "--src-profile", "no-such-profile"
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "'no-such-profile' is not configured" in done.stderr


def test_only_one_of_key_and_secret(tmp_path: Path) -> None:
    done = longbow(
        "sync",
        "s3://a/",
        str(tmp_path / "out"),
        *db_args(tmp_path),
        env={"LONGBOW_SRC_ACCESS_KEY_ID": "AKIAONLYTHEKEY"},
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "must be set together" in done.stderr


def test_an_expired_session_is_refused_with_the_reason(
    seaweed_src: LocalServer, tmp_path: Path
) -> None:
    # A session token with keys the server does not know: what a stale, expired session
    # looks like to a store.
    bucket = new_bucket(seaweed_src, "exp")
    done = longbow(
        "verify",
        bucket.url,
        str(tmp_path),
        *endpoint_args(seaweed_src.endpoint, None),
        env={
            "LONGBOW_SRC_ACCESS_KEY_ID": "ASIAEXPIREDSESSION01",
            "LONGBOW_SRC_SECRET_ACCESS_KEY": "expired-secret-value",
            "LONGBOW_SRC_SESSION_TOKEN": "expired-session-token-value",
        },
    )
    assert done.returncode == EXIT_FATAL, done.stderr
    assert "denied" in done.stderr
    assert "expired-secret-value" not in done.stderr and "expired-session-token" not in done.stderr
