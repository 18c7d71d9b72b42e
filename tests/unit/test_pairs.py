"""Pairs: their stores' abilities are asked for by capability or protocol, never by class;
opening checks every store once and closing closes each once, also after a failure."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from longbow_testkit.fakes3 import FakeS3, Request
from s3longbow.config import PairSettings, Settings
from s3longbow.errors import ConfigError, FatalError
from s3longbow.pairs import check_all, match_listing_orders, open_pairs, run_signature
from s3longbow.stores.base import Capabilities, CurrentVersionListing, ReorderableListing
from s3longbow.stores.local import LocalStore
from s3longbow.stores.s3 import S3Store

from ..conftest import fake_side


def test_each_store_says_what_it_can() -> None:
    assert issubclass(LocalStore, ReorderableListing)
    assert not issubclass(LocalStore, CurrentVersionListing)
    assert LocalStore.capabilities.keeps_properties is False
    assert issubclass(S3Store, CurrentVersionListing)
    assert not issubclass(S3Store, ReorderableListing)
    assert S3Store.capabilities.keeps_properties is True
    assert Capabilities().keeps_properties is True


class _Bucket:
    """What match_listing_orders reads of a bucket store."""

    def __init__(self, order: str) -> None:
        self.capabilities = Capabilities(listing_order=order)


@pytest.mark.parametrize("order", ["bytes", "segments"])
def test_a_directory_lists_as_the_bucket_on_the_other_side(tmp_path: Path, order: str) -> None:
    directory = LocalStore(tmp_path)
    match_listing_orders(directory, _Bucket(order))  # type: ignore[arg-type]
    assert directory.capabilities.listing_order == order
    directory = LocalStore(tmp_path)
    match_listing_orders(_Bucket(order), directory)  # type: ignore[arg-type]
    assert directory.capabilities.listing_order == order


def test_two_directories_keep_their_order(tmp_path: Path) -> None:
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    b.use_listing_order("segments")
    match_listing_orders(a, b)
    assert (a.capabilities.listing_order, b.capabilities.listing_order) == ("bytes", "segments")


def test_open_pairs_shares_and_closes_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    closed: list[str] = []
    monkeypatch.setattr(LocalStore, "close", lambda self: closed.append(self.name))
    settings = Settings(
        pairs=(
            PairSettings(str(tmp_path / "a"), str(tmp_path / "out")),
            PairSettings(str(tmp_path / "b"), str(tmp_path / "out")),
        )
    )
    with open_pairs(settings) as pairs:
        assert [p.index for p in pairs] == [0, 1]
        assert pairs[0].dst_store is pairs[1].dst_store  # one store per destination
        assert pairs[0].ignore_bucket == str(tmp_path / "a")
        assert not closed
    assert sorted(closed) == sorted(str(tmp_path / n) for n in ("a", "b", "out"))


def test_open_pairs_closes_what_it_opened_when_a_later_pair_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    closed: list[str] = []
    monkeypatch.setattr(LocalStore, "close", lambda self: closed.append(self.name))
    settings = Settings(
        pairs=(
            PairSettings(str(tmp_path / "a"), str(tmp_path / "out")),
            PairSettings(str(tmp_path / "a"), str(tmp_path / "a")),
        )
    )
    with pytest.raises(ConfigError, match="same directory"):
        with open_pairs(settings):
            pytest.fail("opened a pair onto itself")
    assert sorted(closed) == sorted(str(tmp_path / n) for n in ("a", "out"))


def test_run_signature_follows_pairs_and_endpoints() -> None:
    one = Settings(pairs=(PairSettings("s3://a/", "s3://b/"),))
    assert run_signature(one) == run_signature(
        Settings(pairs=(PairSettings("s3://a/", "s3://b/"),))
    )
    assert run_signature(one) != run_signature(
        Settings(pairs=(PairSettings("s3://a/", "s3://c/"),))
    )
    assert len(run_signature(one)) == 32


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--compare=version", "is a directory, which has no versions"),
        ("--update-properties", "needs an S3 destination: files keep no properties"),
    ],
)
def test_options_a_directory_cannot_honour_are_refused(
    tmp_path: Path, option: str, message: str
) -> None:
    from click.testing import CliRunner

    from s3longbow.cli.app import cli

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    args = ["sync", str(tmp_path / "src"), str(tmp_path / "dst"), option]
    result = CliRunner().invoke(cli, [*args, "--db", str(tmp_path / "jobs.db")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "dst" / "a.txt").exists()


def test_both_buckets_are_checked_at_once() -> None:
    """Each server holds its bucket's HEAD until the other's has come: one check after the
    other would leave the first waiting, and the barrier broken."""
    meeting = threading.Barrier(2, timeout=10)

    def meet(request: Request) -> None:
        if request.method == "HEAD" and not request.key:
            meeting.wait()

    with FakeS3() as src, FakeS3() as dst:
        src.on(meet)
        dst.on(meet)
        settings = Settings(
            pairs=(PairSettings("s3://bkt/a/", "s3://bkt/b/"),),
            source=fake_side(src),
            destination=fake_side(dst),
        )
        with open_pairs(settings) as pairs:
            assert len(pairs) == 1
        assert not meeting.broken
        # Beside each check, the first pages of the pair's two listings of its prefix.
        for server, prefix in ((src, "a/"), (dst, "b/")):
            deadline = time.monotonic() + 10
            while len(server.requests) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            asked = sorted(
                (r.method, r.query.get("prefix", ""), r.query.get("delimiter", ""))
                for r in server.requests
            )
            assert asked == [("GET", prefix, ""), ("GET", prefix, "/"), ("HEAD", "", "")]


def test_a_bucket_that_fails_its_check_leaves_no_destination_folder(tmp_path: Path) -> None:
    with FakeS3() as src:
        settings = Settings(
            pairs=(PairSettings("s3://missing/", str(tmp_path / "out")),), source=fake_side(src)
        )
        with pytest.raises(FatalError, match="bucket 'missing' does not exist"):
            with open_pairs(settings):
                pytest.fail("opened a pair whose source bucket does not exist")
    assert not (tmp_path / "out").exists()


class _Checked:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.checked = 0

    def check(self) -> None:
        self.checked += 1
        if self.failure is not None:
            raise self.failure


def test_the_first_stores_failure_is_the_one_raised() -> None:
    first, second = _Checked(FatalError("first")), _Checked(FatalError("second"))
    with pytest.raises(FatalError, match="first"):
        check_all([first, second])  # type: ignore[list-item]
    assert first.checked == second.checked == 1
    with pytest.raises(FatalError, match="second"):
        check_all([_Checked(), second])  # type: ignore[list-item]
    check_all([_Checked(), _Checked(), _Checked()])  # type: ignore[list-item]
