"""Filters end to end against SeaweedFS: `sync`, its dry run, `--delete` and `verify` take
only what --include/--exclude/--filter-from, --files-from, --min/max-size and --min/max-age
leave in; what they leave out at the destination is never touched."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from s3longbow.cli.app import cli

from ..conftest import Bucket, cli_env, endpoint_args
from .test_sync import env_for, run, sync_args

DAY = 86400


def seed(bucket: Bucket, keys: dict[str, bytes]) -> None:
    for key, body in keys.items():
        bucket.put(key, body)


def test_rules_decide_what_is_copied_and_a_dry_run_shows_it(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(
        src_bucket,
        {
            "photos/a.jpg": b"a",
            "photos/b.png": b"b",
            "photos/raw/c.jpg": b"c",
            "docs/readme.txt": b"readme",
            "archive/docs/old.txt": b"old",
            "tmp/x.jpg": b"x",
            "secret.jpg": b"s",
        },
    )
    rules = tmp_path / "rules.txt"
    rules.write_text("# what to copy\n- tmp/\n- secret*\n+ *.jpg\n+ /docs/**\n- **\n")
    base = [*sync_args(src_bucket, dst_bucket, tmp_path / "j.db"), "--filter-from", str(rules)]
    env = env_for(src_bucket, dst_bucket)

    code, summary, err = run([*base, "--dry-run"], env)
    assert code == 0, err
    assert summary["to_copy"]["objects"] == 3 and summary["filtered"] == 4
    assert dst_bucket.keys() == []

    code, summary, err = run(base, env)
    assert code == 0, err
    assert sorted(dst_bucket.keys()) == ["docs/readme.txt", "photos/a.jpg", "photos/raw/c.jpg"]
    assert summary["copied"]["objects"] == 3 and summary["filtered"] == 4
    assert dst_bucket.get("docs/readme.txt") == b"readme"

    # Run again: nothing left to copy; the same four are left out.
    code, summary, err = run(base, env)
    assert code == 0, err
    assert summary["to_copy"]["objects"] == 0 and summary["filtered"] == 4

    # --include and --exclude: every include first, then the excludes, as rclone orders them;
    # a pattern without a leading / matches at the end of the key, on a segment boundary.
    code, summary, err = run(
        [
            *sync_args(src_bucket, f"{dst_bucket.url}/second/", tmp_path / "j2.db"),
            *endpoint_args(None, dst_bucket.endpoint),
            "--include",
            "*.png",
            "--include",
            "old.txt",
            "--exclude",
            "*.png",
        ],
        env,
    )
    assert code == 0, err
    assert sorted(dst_bucket.keys("second/")) == [
        "second/archive/docs/old.txt",
        "second/photos/b.png",
    ]


def test_delete_removes_only_extras_the_key_filters_take(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, {"keep/a": b"a", "keep/b": b"b", "keep/c.log": b"log"})
    seed(dst_bucket, {"keep/a": b"a", "gone/x": b"x", "old.log": b"o", "logs/2024/y": b"y"})
    base = [
        *sync_args(src_bucket, dst_bucket, tmp_path / "j.db"),
        "--exclude",
        "*.log",
        "--exclude",
        "logs/",
        "--delete",
        "--force",
    ]
    env = env_for(src_bucket, dst_bucket)
    code, summary, err = run([*base, "--dry-run"], env)
    assert code == 0, err
    assert summary["extra"]["objects"] == 1 and summary["filtered"] == 1
    code, summary, err = run(base, env)
    assert code == 0, err
    assert summary["extra"] == {"objects": 1, "deleted": 1}
    # gone/x is deleted; the excluded keys are never deleted (nor copied: keep/c.log).
    assert sorted(dst_bucket.keys()) == ["keep/a", "keep/b", "logs/2024/y", "old.log"]


def test_size_filters_judge_the_source_and_leave_its_copy_alone(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, {"small": b"s" * 10, "big": os.urandom(3000), "mid": os.urandom(1500)})
    seed(dst_bucket, {"big": b"stale", "orphan": b"o"})
    env = env_for(src_bucket, dst_bucket)
    code, summary, err = run(
        [
            *sync_args(src_bucket, dst_bucket, tmp_path / "j.db"),
            "--min-size",
            "11B",
            "--max-size",
            "2K",
            "--delete",
            "--force",
        ],
        env,
    )
    assert code == 0, err
    assert summary["copied"]["objects"] == 1 and summary["filtered"] == 2
    assert summary["extra"] == {"objects": 1, "deleted": 1}
    # "big" is too large at the source: its stale copy is neither replaced nor deleted.
    assert sorted(dst_bucket.keys()) == ["big", "mid"]
    assert dst_bucket.get("big") == b"stale"
    assert dst_bucket.get("mid") == src_bucket.get("mid")


def test_age_filters_judge_the_sources_modification_time(
    tmp_path: Path, dst_bucket: Bucket
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    now = time.time()
    ages = {"new.txt": 3600, "week.txt": 7 * DAY, "ancient.txt": 400 * DAY}
    for name, age in ages.items():
        (src / name).write_text(name)
        os.utime(src / name, (now - age, now - age))
    dst_bucket.put("ancient.txt", b"the copy of long ago")
    base = [*sync_args(src, dst_bucket, tmp_path / "j.db"), "--delete", "--force"]
    env = env_for(src, dst_bucket)

    code, summary, err = run([*base, "--max-age", "30d", "--min-age", "2h", "--dry-run"], env)
    assert code == 0, err
    assert summary["to_copy"]["objects"] == 1 and summary["filtered"] == 2
    assert summary["extra"]["objects"] == 0  # the old copy has a source: it is no orphan

    code, summary, err = run([*base, "--max-age", "30d", "--min-age", "2h"], env)
    assert code == 0, err
    assert sorted(dst_bucket.keys()) == ["ancient.txt", "week.txt"]
    assert dst_bucket.get("ancient.txt") == b"the copy of long ago"

    # A date works as well as a duration: modified after 1 Jan 2000 is everything here.
    code, summary, err = run([*base, "--max-age", "2000-01-01T00:00:00Z"], env)
    assert code == 0, err
    assert summary["filtered"] == 0 and summary["copied"]["objects"] == 2


def test_age_filters_on_a_bucket(src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path) -> None:
    seed(src_bucket, {"a": b"a", "b": b"b"})
    env = env_for(src_bucket, dst_bucket)
    base = [*sync_args(src_bucket, dst_bucket, tmp_path / "j.db"), "--dry-run"]
    code, summary, err = run([*base, "--min-age", "1d"], env)  # just written: too young
    assert code == 0, err
    assert summary["to_copy"]["objects"] == 0 and summary["filtered"] == 2
    code, summary, err = run([*base, "--max-age", "1d"], env)
    assert code == 0, err
    assert summary["to_copy"]["objects"] == 2 and summary["filtered"] == 0


def test_files_from_takes_listed_keys_relative_to_the_pair(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, {"in/a": b"a", "in/b/c": b"c", "in/d": b"d", "other/a": b"no"})
    seed(dst_bucket, {"out/d": b"old d", "out/e": b"e", "out/listed-gone": b"g"})
    keys = tmp_path / "keys.txt"
    keys.write_text("# the keys to copy\na\n/b/c\nlisted-gone\nnot-anywhere\n")
    code, summary, err = run(
        [
            "sync",
            f"{src_bucket.url}/in/",
            f"{dst_bucket.url}/out/",
            "--db",
            str(tmp_path / "j.db"),
            *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
            "--files-from",
            str(keys),
            "--delete",
            "--force",
        ],
        env_for(src_bucket, dst_bucket),
    )
    assert code == 0, err
    assert summary["copied"]["objects"] == 2 and summary["filtered"] == 1
    # Listed and gone from the source: deleted. Not listed: left alone.
    assert summary["extra"] == {"objects": 1, "deleted": 1}
    assert sorted(dst_bucket.keys()) == ["out/a", "out/b/c", "out/d", "out/e"]
    assert dst_bucket.get("out/d") == b"old d"


def test_config_file_filters_and_flags_over_them(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, {"a.jpg": b"x" * 2000, "b.jpg": b"y" * 10, "c.txt": b"z" * 2000})
    (tmp_path / "rules.txt").write_text("- *.txt\n")
    cfg = tmp_path / "longbow.toml"
    cfg.write_text(
        'filter_from = "rules.txt"\nmin_size = "1K"\nworkers = 2\n'
        f'[source]\nendpoint_url = "{src_bucket.endpoint.url}"\npath_style = true\n'
        f'[destination]\nendpoint_url = "{dst_bucket.endpoint.url}"\npath_style = true\n'
        f'[[pairs]]\nsrc = "{src_bucket.url}/"\ndst = "{dst_bucket.url}/"\n'
    )
    base = ["sync", "--config", str(cfg), "--db", str(tmp_path / "j.db")]
    env = env_for(src_bucket, dst_bucket)
    code, summary, err = run([*base, "--dry-run"], env)
    assert code == 0, err
    assert summary["to_copy"]["objects"] == 1 and summary["filtered"] == 2
    code, summary, err = run([*base, "--min-size", "0"], env)  # the flag replaces the key
    assert code == 0, err
    assert sorted(dst_bucket.keys()) == ["a.jpg", "b.jpg"]


def verify(src: Bucket, dst: Bucket, *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            f"{src.url}/",
            f"{dst.url}/",
            *endpoint_args(src.endpoint, dst.endpoint),
            "--json",
            *extra,
        ],
        env=cli_env(src.endpoint, dst.endpoint),
    )
    return result.exit_code, json.loads(result.stdout)


def test_verify_compares_only_what_the_filters_take(src_bucket: Bucket, dst_bucket: Bucket) -> None:
    seed(src_bucket, {"a.jpg": b"a", "b.txt": b"b", "big.jpg": b"B" * 5000})
    seed(dst_bucket, {"a.jpg": b"a", "x.txt": b"extra", "big.jpg": b"different"})
    code, report = verify(src_bucket, dst_bucket)
    assert code == 1
    assert report["counts"]["missing"] == 1 and report["counts"]["extra"] == 1

    code, report = verify(src_bucket, dst_bucket, "--include", "*.jpg", "--max-size", "1K")
    assert code == 0, report
    assert report["counts"]["match"] == 1 and report["filtered"] == 2
    assert report["missing"] == [] and report["extra"] == [] and report["different"] == []


def test_pattern_files_inline_rules_and_ignored_case(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(
        src_bucket,
        {
            "Photos/A.JPG": b"a",
            "photos/b.jpg": b"b",
            "photos/c.png": b"c",
            "tmp/d.jpg": b"d",
            "docs/e.txt": b"e",
            "docs/F.Log": b"f",
            "docs/secret.txt": b"s",
        },
    )
    env = env_for(src_bucket, dst_bucket)
    excludes = tmp_path / "out.txt"
    excludes.write_text("# scratch space and logs, whatever their case\ntmp/\n*.LOG\n")
    code, summary, err = run(
        [
            *sync_args(src_bucket, f"{dst_bucket.url}/one/", tmp_path / "j1.db"),
            *endpoint_args(None, dst_bucket.endpoint),
            "--exclude-from",
            str(excludes),
            "--filter",
            "- docs/secret*",
            "--ignore-case",
        ],
        env,
    )
    assert code == 0, err
    assert sorted(dst_bucket.keys("one/")) == [
        "one/Photos/A.JPG",
        "one/docs/e.txt",
        "one/photos/b.jpg",
        "one/photos/c.png",
    ]
    assert summary["filtered"] == 3

    # Patterns from standard input ("-"), as rclone reads them; without --ignore-case,
    # *.jpg leaves A.JPG out.
    args = [
        *sync_args(src_bucket, f"{dst_bucket.url}/two/", tmp_path / "j2.db"),
        *endpoint_args(None, dst_bucket.endpoint),
        "--include-from",
        "-",
        "--json",
    ]
    result = CliRunner().invoke(cli, args, env=env, input="*.jpg\n", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert sorted(dst_bucket.keys("two/")) == ["two/photos/b.jpg", "two/tmp/d.jpg"]
    assert json.loads(result.stdout)["filtered"] == 5


def test_delete_excluded_also_deletes_what_the_filters_leave_out(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, {"keep/a": b"a", "keep/c.log": b"log", "big/huge": b"x" * 3000})
    seed(
        dst_bucket,
        {
            "keep/a": b"a",
            "keep/c.log": b"log",  # its source is excluded by pattern
            "big/huge": b"x" * 3000,  # its source is excluded by size
            "old.log": b"o",  # destination only, excluded by pattern
            "gone/x": b"x",  # destination only, taken: an extra with or without
            "tmp/scratch": b"s",  # ignored: never touched
        },
    )
    ignore = tmp_path / "ignore.txt"
    ignore.write_text(f"{src_bucket.name}/tmp/*\n")
    base = [
        *sync_args(src_bucket, dst_bucket, tmp_path / "j.db"),
        "--exclude",
        "*.log",
        "--max-size",
        "2K",
        "--ignore-file",
        str(ignore),
        "--delete",
        "--force",
    ]
    env = env_for(src_bucket, dst_bucket)
    code, summary, err = run([*base, "--dry-run"], env)
    assert code == 0, err
    assert summary["extra"]["objects"] == 1  # without --delete-excluded: gone/x only

    code, summary, err = run([*base, "--delete-excluded", "--dry-run"], env)
    assert code == 0, err
    assert summary["extra"]["objects"] == 4 and summary["filtered"] == 2
    assert len(dst_bucket.keys()) == 6  # a dry run deletes nothing

    code, summary, err = run([*base, "--delete-excluded"], env)
    assert code == 0, err
    assert summary["extra"] == {"objects": 4, "deleted": 4}
    assert sorted(dst_bucket.keys()) == ["keep/a", "tmp/scratch"]


def test_delete_excluded_needs_delete(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    code, _, err = run(
        [*sync_args(src_bucket, dst_bucket, tmp_path / "j.db"), "--delete-excluded"],
        env_for(src_bucket, dst_bucket),
    )
    assert code == 2 and "--delete-excluded only goes with --delete" in err


def test_files_from_raw_takes_keys_with_spaces_and_hashes(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, {" padded ": b"p", "#tagged": b"t", "plain": b"x", "unlisted": b"u"})
    keys = tmp_path / "keys.txt"
    keys.write_bytes(b" padded \r\n#tagged\nplain\n")
    code, summary, err = run(
        [*sync_args(src_bucket, dst_bucket, tmp_path / "j.db"), "--files-from-raw", str(keys)],
        env_for(src_bucket, dst_bucket),
    )
    assert code == 0, err
    assert sorted(dst_bucket.keys()) == [" padded ", "#tagged", "plain"]
    assert summary["filtered"] == 1
