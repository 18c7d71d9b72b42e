"""Bad input ends with a short message that says what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from s3longbow.cli.app import cli

from ..conftest import Bucket, cli_env, endpoint_args


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def test_unknown_bucket(src_bucket: Bucket, tmp_path: Path) -> None:
    ep = src_bucket.endpoint
    code, err = invoke(
        [
            "sync",
            "s3://no-such-bucket-anywhere/",
            str(tmp_path / "out"),
            "--db",
            str(tmp_path / "j.db"),
            *endpoint_args(ep, None),
        ],
        cli_env(ep, None),
    )
    assert code == 3
    assert "'no-such-bucket-anywhere' does not exist" in err and "hint:" in err


def test_wrong_credentials(src_bucket: Bucket, tmp_path: Path) -> None:
    ep = src_bucket.endpoint
    env = {"LONGBOW_SRC_ACCESS_KEY_ID": "WRONGKEY", "LONGBOW_SRC_SECRET_ACCESS_KEY": "wrong"}
    code, err = invoke(
        [
            "sync",
            src_bucket.url,
            str(tmp_path / "out"),
            "--db",
            str(tmp_path / "j.db"),
            *endpoint_args(ep, None),
        ],
        env,
    )
    assert code == 3
    assert "denied" in err or "InvalidAccessKeyId" in err
    assert "wrong" not in err.lower().replace("wrong credentials", "")  # the secret is not shown


def test_unreachable_endpoint(tmp_path: Path) -> None:
    code, err = invoke(
        [
            "sync",
            "s3://bucket/",
            str(tmp_path / "out"),
            "--db",
            str(tmp_path / "j.db"),
            "--src-endpoint-url",
            "http://127.0.0.1:9",
            "--src-region",
            "us-east-1",
        ],
        {"LONGBOW_SRC_ACCESS_KEY_ID": "k", "LONGBOW_SRC_SECRET_ACCESS_KEY": "s"},
    )
    assert code == 3
    assert "127.0.0.1:9" in err


@pytest.mark.parametrize(
    ("config", "message"),
    [(None, "does not exist"), ("workers = [", "not valid TOML"), ("speed = 3", "unknown setting")],
)
def test_unreadable_config(tmp_path: Path, config: str | None, message: str) -> None:
    path = tmp_path / "c.toml"
    if config is not None:
        path.write_text(config)
    code, err = invoke(["sync", "--config", str(path)])
    assert code == 2 and message in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--part-size", "1MiB"], "outside S3's limits"),
        (["--part-size", "lots"], "not a size"),
        (["--memory-limit", "1MiB"], "memory-limit is smaller than one part"),
        (["--workers", "0"], "0"),
    ],
)
def test_invalid_sizes(tmp_path: Path, flags: list[str], message: str) -> None:
    code, err = invoke(["sync", str(tmp_path), str(tmp_path / "o"), *flags])
    assert code == 2 and message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gs://bucket/x", "/tmp/x"], "unsupported location"),
        (["s3://", "/tmp/x"], "names no bucket"),
        (["s3://bucket"], "give both SRC and DST"),
        ([], "nothing to copy"),
    ],
)
def test_bad_locations(tmp_path: Path, args: list[str], message: str) -> None:
    code, err = invoke(["sync", *args, "--db", str(tmp_path / "j.db")])
    assert code == 2 and message in err


def test_missing_source_directory(tmp_path: Path) -> None:
    code, err = invoke(
        ["sync", str(tmp_path / "nope"), str(tmp_path / "out"), "--db", str(tmp_path / "j.db")]
    )
    assert code == 3 and "does not exist" in err


def test_status_without_a_database(tmp_path: Path) -> None:
    code, err = invoke(["status", "--db", str(tmp_path / "none.db")])
    assert code == 2 and "no job database" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min-size", "lots"], "'lots' is not a size"),
        (["--max-size", "-1M"], "is not a size"),
        (["--min-size", "10M", "--max-size", "1M"], "is above --max-size"),
        (["--max-age", "soon"], "'soon' is not a duration or a date"),
        (["--min-age", "2024-13-45"], "is not a duration or a date"),
        (["--min-age", "7d", "--max-age", "1d"], "leave no time between them"),
        (["--include", "a{b"], "--include: a '{' without its '}' in pattern 'a{b'"),
        (["--exclude", "***"], "--exclude: too many stars"),
        (["--exclude", "[z-a]"], "bad character range"),
        (["--filter-from", "missing.txt"], "cannot read filter file"),
        (["--files-from", "missing.txt"], "cannot read key list"),
        (["--include-from", "missing.txt"], "cannot read pattern file"),
        (["--filter", "*.jpg"], "--filter: '*.jpg' is not a rule"),
        (["--filter", "+ a{b"], "--filter: a '{' without its '}'"),
        (["--exclude-from", "-", "--files-from", "-"], "standard input ('-') is named by"),
    ],
)
@pytest.mark.parametrize("command", ["sync", "verify"])
def test_bad_filters(tmp_path: Path, command: str, flags: list[str], message: str) -> None:
    flags = [str(tmp_path / f) if f == "missing.txt" else f for f in flags]
    code, err = invoke([command, str(tmp_path), str(tmp_path / "o"), *flags])
    assert code == 2 and message in err, err
    assert not (tmp_path / "o").exists()  # stopped before anything was written


def test_bad_filter_files_name_the_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("+ *.jpg\n*.png\n")
    code, err = invoke(["sync", str(tmp_path), str(tmp_path / "o"), "--filter-from", str(rules)])
    assert code == 2 and f"{rules}:2: '*.png' is not a rule" in err and "hint:" in err
    rules.write_text("+ *.jpg\n- {a,b\n")
    code, err = invoke(["sync", str(tmp_path), str(tmp_path / "o"), "--filter-from", str(rules)])
    assert code == 2 and f"{rules}:2: a '{{' without its '}}'" in err
    rules.write_bytes(b"+ \xff\n")
    code, err = invoke(["sync", str(tmp_path), str(tmp_path / "o"), "--filter-from", str(rules)])
    assert code == 2 and "is not UTF-8 text" in err
    (tmp_path / "c.toml").write_text('max_size = "huge"\n')
    code, err = invoke(["sync", "--config", str(tmp_path / "c.toml")])
    assert code == 2 and "max_size: 'huge' is not a size" in err
