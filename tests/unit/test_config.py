"""Settings: sizes, config files, ignore files, locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3longbow.config import (
    MiB,
    TransferSettings,
    load_config_file,
    load_ignore_file,
    parse_size,
)
from s3longbow.errors import ConfigError
from s3longbow.stores.location import parse_location
from s3longbow.transfer.sizing import part_count, part_range, part_size_for


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("8MiB", 8 * MiB),
        ("8M", 8 * MiB),
        ("10MB", 10_000_000),
        ("1.5KiB", 1536),
        (" 2 gib ", 2 * 1024 * MiB),
        (123, 123),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "8XB", "MiB", "1e3", True, -5])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)  # type: ignore[arg-type]


def test_transfer_settings_validation() -> None:
    TransferSettings().validate()
    with pytest.raises(ConfigError, match="part-size"):
        TransferSettings(part_size=1 * MiB).validate()
    with pytest.raises(ConfigError, match="workers"):
        TransferSettings(workers=0).validate()
    with pytest.raises(ConfigError, match="memory-limit"):
        TransferSettings(memory_limit=MiB).validate()


def test_part_sizing_stays_within_10000_parts() -> None:
    assert part_size_for(100 * MiB, 8 * MiB) == 8 * MiB
    big = 200 * 1024 * 1024 * MiB  # 200 TiB is too big, 1 TiB is not
    with pytest.raises(ValueError):
        part_size_for(big, 8 * MiB)
    size = 1024 * 1024 * MiB
    part = part_size_for(size, 8 * MiB)
    assert part % MiB == 0 and part_count(size, part) <= 10_000
    assert part_count(0, 8 * MiB) == 1
    assert part_range(3, 20 * MiB, 8 * MiB) == (16 * MiB, 4 * MiB)


def test_config_file_pairs_and_settings(tmp_path: Path) -> None:
    (tmp_path / "ignore.txt").write_text("# comment\n*.tmp\n\nbkt/logs/*\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'workers = 4\npart_size = "16MiB"\nignore_file = "ignore.txt"\n'
        '[source]\nendpoint_url = "http://127.0.0.1:1"\npath_style = true\n'
        '[[pairs]]\nsrc = "s3://a/x/"\ndst = "s3://b/y/"\n'
        '[[pairs]]\nsrc = "s3://c"\ndst = "/tmp/d"\n'
    )
    loaded = load_config_file(cfg)
    assert [(p.src, p.dst) for p in loaded["pairs"]] == [
        ("s3://a/x/", "s3://b/y/"),
        ("s3://c", "/tmp/d"),
    ]
    assert loaded["transfer"] == {"workers": 4, "part_size": 16 * MiB}
    assert loaded["source"] == {"endpoint_url": "http://127.0.0.1:1", "path_style": True}
    assert load_ignore_file(loaded["ignore_file"]) == ("*.tmp", "bkt/logs/*")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("workers = [", "not valid TOML"),
        ("wrokers = 3", "unknown setting"),
        ("workers = 'many'", "must be a number"),
        ('part_size = "big"', "not a size"),
        ("[source]\nsecret_access_key = 'x'", "unknown key"),
        ("[[pairs]]\nsrc = 's3://a'", "exactly the strings src and dst"),
        ("[source]\npath_style = 'yes'", "must be a bool"),
    ],
)
def test_bad_config_files(tmp_path: Path, body: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_config_file(cfg)


def test_missing_config_and_ignore_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read ignore file"):
        load_ignore_file(tmp_path / "nope.txt")


def test_locations() -> None:
    loc = parse_location("s3://bucket/a//b/")
    assert (loc.scheme, loc.bucket, loc.prefix) == ("s3", "bucket", "a//b/")
    assert parse_location("s3://bucket").prefix == ""
    local = parse_location("relative/dir")
    assert local.scheme == "file" and local.root is not None and local.root.is_absolute()
    for bad in ("s3://", "s3:///key", "gs://bucket/x", ""):
        with pytest.raises(ConfigError):
            parse_location(bad)
