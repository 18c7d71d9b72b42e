"""`longbow sync` end to end against real servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from s3longbow.cli.app import cli
from s3longbow.config import MiB
from s3longbow.jobs.sqlite import JobDatabase
from s3longbow.stores.s3 import S3Store

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """Run the CLI in-process with --json; return (exit code, summary, stderr)."""
    result = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    summary = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, summary, result.stderr


def sync_args(src: Bucket | Path | str, dst: Bucket | Path | str, db: Path) -> list[str]:
    def loc(x: Bucket | Path | str) -> str:
        return x.url + "/" if isinstance(x, Bucket) else str(x)

    src_ep = src.endpoint if isinstance(src, Bucket) else None
    dst_ep = dst.endpoint if isinstance(dst, Bucket) else None
    return ["sync", loc(src), loc(dst), "--db", str(db), *endpoint_args(src_ep, dst_ep)]


def env_for(src: Bucket | Path, dst: Bucket | Path) -> dict[str, str]:
    return cli_env(
        src.endpoint if isinstance(src, Bucket) else None,
        dst.endpoint if isinstance(dst, Bucket) else None,
    )


THRESHOLD = 5 * MiB


def mixed_set() -> dict[str, bytes]:
    rnd = os.urandom
    return {
        "empty": b"",
        "one-byte": b"x",
        "small/kib.bin": rnd(3 * 1024),
        "edge/under": rnd(THRESHOLD - 1),
        "edge/at": rnd(THRESHOLD),
        "edge/over": rnd(THRESHOLD + 1),
        "big/three-parts.bin": rnd(12 * MiB + 17),
        "keys/sp ace+plus%25.txt": b"awkward",
        "keys/unicodé-漢字": b"unicode",
    }


def test_mixed_set_is_copied_exactly_and_a_second_run_copies_nothing(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = mixed_set()
    for key, body in data.items():
        src_bucket.put(key, body)
    args = sync_args(src_bucket, dst_bucket, tmp_path / "jobs.db") + [
        "--part-size",
        "5MiB",
        "--resumable-threshold",
        "5MiB",
    ]
    code, summary, err = run(args, env_for(src_bucket, dst_bucket))
    assert code == 0, err
    assert summary["copied"]["objects"] == len(data)
    assert summary["copied"]["bytes"] == sum(map(len, data.values()))
    assert summary["jobs"]["done"] == len(data) and summary["failed"] == []
    # Byte for byte, read back from the destination server itself.
    assert dst_bucket.digests() == {k: hashlib.md5(v).hexdigest() for k, v in data.items()}

    code, summary, err = run(args, env_for(src_bucket, dst_bucket))
    assert code == 0, err
    assert summary["copied"]["objects"] == 0 and summary["bytes_sent"] == 0
    assert summary["already_present"]["objects"] == len(data)
    assert summary["resumed"] is True


def test_changed_size_is_copied_again(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("a", b"one")
    src_bucket.put("b", b"two")
    args = sync_args(src_bucket, dst_bucket, tmp_path / "jobs.db")
    assert run(args, env_for(src_bucket, dst_bucket))[0] == 0
    src_bucket.put("a", b"longer now")
    code, summary, _ = run(args, env_for(src_bucket, dst_bucket))
    assert code == 0
    assert summary["copied"]["objects"] == 1
    assert dst_bucket.get("a") == b"longer now"


def test_awkward_keys_map_one_to_one_with_prefixes(moto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = new_bucket(moto, "awk-src"), new_bucket(moto, "awk-dst")
    keys = [
        "in//double",
        "in/./dot",
        "in/../up",
        "in/ leading space",
        "in/a+b%2Fc",
        "in/ü/漢",
        "in/" + "k" * 1021,
        "in/trailing/",
        "in/tab\there",
    ]
    for i, key in enumerate(keys):
        src.put(key, f"body {i}".encode())
    src.put("outside/not-copied", b"no")
    args = [
        "sync",
        f"{src.url}/in",
        f"{dst.url}//out",
        "--db",
        str(tmp_path / "j.db"),
        *endpoint_args(src.endpoint, dst.endpoint),
    ]
    code, summary, err = run(args, cli_env(src.endpoint, dst.endpoint))
    assert code == 0, err
    expected = {"/out" + k[2:]: src.get(k) for k in keys}
    assert sorted(dst.keys()) == sorted(expected)
    assert {k: dst.get(k) for k in expected} == expected
    # The prefix "in" is not a folder: "in/..." becomes "/out/..." exactly, nothing else.
    assert summary["copied"]["objects"] == len(keys)


def test_config_file_with_two_pairs_and_an_ignore_file(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for key in ("logs/a.log", "logs/b.tmp", "data/x", "data/y.tmp", "other/z"):
        src_bucket.put(key, key.encode())
    (tmp_path / "ignore.txt").write_text(f"*.tmp\n{src_bucket.name}/other/*\n")
    cfg = tmp_path / "longbow.toml"
    cfg.write_text(
        f'ignore_file = "ignore.txt"\nworkers = 2\n'
        f'[source]\nendpoint_url = "{src_bucket.endpoint.url}"\npath_style = true\n'
        f'[destination]\nendpoint_url = "{dst_bucket.endpoint.url}"\npath_style = true\n'
        f'[[pairs]]\nsrc = "{src_bucket.url}/logs/"\ndst = "{dst_bucket.url}/l/"\n'
        f'[[pairs]]\nsrc = "{src_bucket.url}/data/"\ndst = "{dst_bucket.url}/d/"\n'
    )
    code, summary, err = run(
        ["sync", "--config", str(cfg), "--db", str(tmp_path / "j.db")],
        env_for(src_bucket, dst_bucket),
    )
    assert code == 0, err
    assert sorted(dst_bucket.keys()) == ["d/x", "l/a.log"]
    assert summary["ignored"] == 2


def test_dry_run_changes_nothing(src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path) -> None:
    src_bucket.put("a", b"12345")
    src_bucket.put("b", b"1")
    dst_bucket.put("b", b"1")
    db = tmp_path / "jobs.db"
    code, summary, err = run(
        [*sync_args(src_bucket, dst_bucket, db), "--dry-run"], env_for(src_bucket, dst_bucket)
    )
    assert code == 0, err
    assert summary["to_copy"] == {"objects": 1, "bytes": 5}
    assert summary["already_present"]["objects"] == 1
    assert dst_bucket.keys() == ["b"]
    assert not db.exists()


def test_local_directory_to_s3_and_back(tmp_path: Path, dst_bucket: Bucket) -> None:
    src = tmp_path / "src"
    files = {
        "a.txt": b"a",
        "dir/b.bin": os.urandom(7 * MiB),
        "dir/sub/c": b"",
        "d-e": b"d",
        "dir-x/f": b"f",
    }
    for rel, body in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)
    code, _, err = run(sync_args(src, dst_bucket, tmp_path / "j.db"), env_for(src, dst_bucket))
    assert code == 0, err
    assert dst_bucket.digests() == {k: hashlib.md5(v).hexdigest() for k, v in files.items()}

    back = tmp_path / "back"
    code, _, err = run(sync_args(dst_bucket, back, tmp_path / "j2.db"), env_for(dst_bucket, back))
    assert code == 0, err
    for rel, body in files.items():
        assert (back / rel).read_bytes() == body
    assert not (back / ".longbow-tmp").exists()
    # Nothing left to do in either direction.
    code, summary, _ = run(sync_args(src, dst_bucket, tmp_path / "j.db"), env_for(src, dst_bucket))
    assert code == 0 and summary["copied"]["objects"] == 0


def test_keys_that_would_escape_a_local_destination_fail_and_the_rest_copy(
    moto,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    src = new_bucket(moto, "esc")
    for key in ("ok/file", "../escaped", "a/../../escaped2", "/abs/escaped3", "x//y"):
        src.put(key, b"data")
    dest = tmp_path / "dest"
    code, summary, err = run(sync_args(src, dest, tmp_path / "j.db"), env_for(src, dest))
    assert code == 1
    assert (dest / "ok" / "file").read_bytes() == b"data"
    failed = {f["key"]: f["reason"] for f in summary["failed"]}
    assert set(failed) == {"../escaped", "a/../../escaped2", "/abs/escaped3", "x//y"}
    assert all("cannot be stored" in reason for reason in failed.values())
    assert not list(tmp_path.glob("escaped*")) and not (tmp_path.parent / "escaped").exists()
    assert "ok/file" not in failed and summary["jobs"]["done"] == 1


def test_object_deleted_after_listing_fails_with_a_reason(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("keep-1", "vanishing", "keep-2"):
        src_bucket.put(key, key.encode() * 10)
    listing = S3Store.list_level

    def list_then_delete(self: S3Store, prefix: str):  # type: ignore[no-untyped-def]
        yield from listing(self, prefix)
        # The listing said it exists; it is gone before any job can copy it.
        if self.bucket == src_bucket.name:
            src_bucket.client.delete_object(Bucket=src_bucket.name, Key="vanishing")

    monkeypatch.setattr(S3Store, "list_level", list_then_delete)
    db = tmp_path / "j.db"
    code, summary, _ = run(sync_args(src_bucket, dst_bucket, db), env_for(src_bucket, dst_bucket))
    assert code == 1
    assert sorted(dst_bucket.keys()) == ["keep-1", "keep-2"]
    assert [f["key"] for f in summary["failed"]] == ["vanishing"]
    assert "no longer exists" in summary["failed"][0]["reason"]

    # `longbow status` shows the same failure with its reason.
    result = CliRunner().invoke(cli, ["status", "--db", str(db), "--json"])
    assert result.exit_code == 1
    status = json.loads(result.stdout)
    assert status["jobs"]["failed"] == 1 and status["jobs"]["done"] == 2
    assert "no longer exists" in status["failed"][0]["reason"]


def test_rclone_server_as_source_and_destination(
    rclone, src_bucket: Bucket, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # rclone serve s3 answers ranged GETs with 200 and no Content-Range, checks Content-MD5 and
    # may omit pagination fields: a real implementation with quirks, on both sides of a copy.
    data = {"a": os.urandom(100), "multi": os.urandom(11 * MiB), "z/zero": b""}
    for key, body in data.items():
        src_bucket.put(key, body)
    mid = new_bucket(rclone, "mid")
    args = [*sync_args(src_bucket, mid, tmp_path / "1.db"), "--part-size", "5MiB"]
    code, _, err = run(args, env_for(src_bucket, mid))
    assert code == 0, err
    assert mid.digests() == {k: hashlib.md5(v).hexdigest() for k, v in data.items()}
    out = tmp_path / "out"
    code, _, err = run(
        [*sync_args(mid, out, tmp_path / "2.db"), "--part-size", "5MiB"], env_for(mid, out)
    )
    assert code == 0, err
    assert {k: (out / k).read_bytes() for k in data} == data


def test_jobs_of_a_finished_run_are_recorded(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("big", os.urandom(11 * MiB))
    db = tmp_path / "j.db"
    code, _, _ = run(
        [*sync_args(src_bucket, dst_bucket, db), "--part-size", "5MiB"],
        env_for(src_bucket, dst_bucket),
    )
    assert code == 0
    jobs = JobDatabase(db)
    run_row = jobs.get_run()
    assert run_row is not None
    job = jobs.job(run_row.id, "big")
    jobs.close()
    assert job is not None and job.state.value == "done" and job.upload_id is None
    assert job.verify == "source-md5"  # a single-part source: its ETag is the MD5


def test_bandwidth_limit_keeps_the_average_rate_under_the_limit(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = {f"b{i}": os.urandom(6 * MiB + i) for i in range(3)}
    data["small"] = os.urandom(300 * 1024)
    for key, body in data.items():
        src_bucket.put(key, body)
    limit = 6 * MiB
    args = sync_args(src_bucket, dst_bucket, tmp_path / "jobs.db") + [
        "--part-size",
        "5MiB",
        "--bwlimit",
        "6MiB/s",
    ]
    started = time.monotonic()
    code, summary, err = run(args, env_for(src_bucket, dst_bucket))
    elapsed = time.monotonic() - started
    assert code == 0, err
    total = sum(map(len, data.values()))
    assert summary["bytes_sent"] == total
    assert elapsed > 2.5  # a multi-second copy (unlimited, it takes well under a second)
    assert total / elapsed <= limit * 1.10
    assert dst_bucket.digests() == {k: hashlib.md5(v).hexdigest() for k, v in data.items()}


def test_delete_removes_exactly_the_extras_and_guards_a_mass_delete(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for key in ("keep/a", "keep/b"):
        src_bucket.put(key, b"data")
    for key in ("keep/a", "keep/b", "gone/x", "gone/y", "gone/z", "skip.tmp"):
        dst_bucket.put(key, b"data")
    (tmp_path / "ignore").write_text("*.tmp\n")
    base = sync_args(src_bucket, dst_bucket, tmp_path / "j.db") + [
        "--ignore-file",
        str(tmp_path / "ignore"),
    ]
    env = env_for(src_bucket, dst_bucket)

    # The dry run lists what would go and changes nothing.
    code, summary, _ = run([*base, "--delete", "--dry-run"], env)
    assert code == 0 and summary["extra"]["objects"] == 3
    assert len(dst_bucket.keys()) == 6

    # 3 of the 5 objects that belong to the pair: far over the 10% guard.
    code, summary, err = run([*base, "--delete"], env)
    assert code == 1
    assert "refusing to delete 3 of 5" in summary["delete_refused"]
    assert len(dst_bucket.keys()) == 6

    code, summary, err = run([*base, "--delete", "--force"], env)
    assert code == 0, err
    assert summary["extra"] == {"objects": 3, "deleted": 3}
    # The extras are gone; the copies, and what an ignore pattern covers, stay.
    assert sorted(dst_bucket.keys()) == ["keep/a", "keep/b", "skip.tmp"]


def test_delete_within_the_guard_needs_no_force(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for i in range(20):
        src_bucket.put(f"k{i:02d}", b"x")
        dst_bucket.put(f"k{i:02d}", b"x")
    dst_bucket.put("orphan", b"x")
    code, summary, err = run(
        [*sync_args(src_bucket, dst_bucket, tmp_path / "j.db"), "--delete"],
        env_for(src_bucket, dst_bucket),
    )
    assert code == 0, err
    assert summary["extra"]["deleted"] == 1
    assert "orphan" not in dst_bucket.keys() and len(dst_bucket.keys()) == 20


def test_keys_the_destination_renames_are_reported_once_and_not_copied_again(
    moto, seaweed_dst, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # moto keeps every key exactly; SeaweedFS folds "//" into "/", drops a leading "/" and
    # keeps a non-empty "folder/" as an empty directory, yet its PUT replies carry the MD5
    # of the bytes sent, so the first run believes every copy.
    src, dst = new_bucket(moto, "ren-src"), new_bucket(seaweed_dst, "ren-dst")
    data = {
        "a//b": b"double slash",
        "/lead": b"leading slash",
        "body/": b"a marker with bytes",
        "big//multi": os.urandom(5 * MiB + 1),  # a multipart copy, checked after completion
        "folder/": b"",  # an empty marker SeaweedFS keeps under its own name
        "keep/normal": b"ordinary",
    }
    for key, body in data.items():
        src.put(key, body)
    unstorable = {"a//b", "/lead", "body/", "big//multi"}
    args = [*sync_args(src, dst, tmp_path / "j.db"), "--part-size", "5MiB"]
    args += ["--resumable-threshold", "5MiB"]
    env = env_for(src, dst)

    code, summary, err = run(args, env)
    assert summary["copied"]["objects"] == len(data), err

    def rerun(copied: int) -> dict[str, Any]:
        code, summary, err = run(args, env)
        assert code == 1, err  # a key the destination cannot keep is not a success
        assert summary["ok"] is False and summary["failed"] == []
        assert summary["copied"]["objects"] == copied
        listed = {u["key"]: u["reason"] for u in summary["unstorable"]}
        assert set(listed) == unstorable and len(summary["unstorable"]) == len(unstorable)
        assert all("the destination cannot store this key" in r for r in listed.values())
        assert "a//b" in listed["a//b"] and "folder/" in listed["body/"]
        assert summary["jobs"]["skipped"] == len(unstorable)
        return summary

    summary = rerun(copied=0)
    assert summary["bytes_sent"] == 0
    assert summary["already_present"]["objects"] == 2  # folder/ and keep/normal
    result = CliRunner().invoke(cli, ["status", "--db", str(tmp_path / "j.db"), "--json"])
    assert result.exit_code == 1
    assert {u["key"] for u in json.loads(result.stdout)["unstorable"]} == unstorable

    result = CliRunner().invoke(
        cli,
        ["verify", src.url + "/", dst.url + "/", *endpoint_args(src.endpoint, dst.endpoint)]
        + ["--json"],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    missing = {m["key"]: m["reason"] for m in report["missing"]}
    different = {d["key"]: d["reason"] for d in report["different"]}
    assert set(missing) == {"a//b", "/lead", "big//multi"} and set(different) == {"body/"}
    assert all("the destination cannot store this key" in r for r in missing.values())
    assert "the destination cannot store this key" in different["body/"]
    assert report["counts"]["match"] == 2

    # A third run copies nothing new; an ordinary key deleted at the destination meanwhile
    # is copied again, not taken for one the destination cannot keep.
    dst.client.delete_object(Bucket=dst.name, Key="keep/normal")
    rerun(copied=1)
    assert dst.get("keep/normal") == b"ordinary"
    rerun(copied=0)
