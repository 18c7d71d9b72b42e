"""AWS's accelerated and dual-stack endpoints: the lean data plane and botocore's client of
one side resolve the same URL for every setting, and settings that cannot work are refused
before any request, with the fix.

No local server offers these endpoints, so both clients are asked where a request would go:
the lean client's addressing, and botocore's request as it is about to be sent (stopped
there, so nothing leaves this machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from s3longbow.cli.app import cli
from s3longbow.config import SideSettings, load_config_file
from s3longbow.errors import ConfigError
from s3longbow.stores.s3 import S3Store


class _Stop(Exception):
    """Raised by the hook that catches botocore's request before it is sent."""


def _side(**settings: Any) -> SideSettings:
    keys = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "not-a-secret"}
    return SideSettings(**keys, **settings).validate("src")


def botocore_url(store: S3Store, key: str) -> str:
    """The URL botocore's client of the store sends a GetObject to (nothing is sent)."""
    client = store.client
    seen: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(request.url)
        raise _Stop

    client.meta.events.register("before-send.s3", capture)
    with pytest.raises(_Stop):
        client.get_object(Bucket=store.bucket, Key=key)
    return seen[0]


CASES = [
    # (region, bucket, settings, the URL both clients must send a GET of "k" to)
    (
        "us-west-2",
        "photos",
        {"use_accelerate_endpoint": True},
        "https://photos.s3-accelerate.amazonaws.com/k",
    ),
    (
        "eu-central-1",
        "photos",
        {"use_accelerate_endpoint": True, "use_dualstack_endpoint": True},
        "https://photos.s3-accelerate.dualstack.amazonaws.com/k",
    ),
    (
        "us-west-2",
        "photos",
        {"use_dualstack_endpoint": True},
        "https://photos.s3.dualstack.us-west-2.amazonaws.com/k",
    ),
    (
        "us-west-2",
        "photos",
        {"use_dualstack_endpoint": True, "path_style": True},
        "https://s3.dualstack.us-west-2.amazonaws.com/photos/k",
    ),
    (
        # A name with dots cannot lead an https host name: path style, on the same host.
        "ap-southeast-1",
        "photos.2024",
        {"use_dualstack_endpoint": True},
        "https://s3.dualstack.ap-southeast-1.amazonaws.com/photos.2024/k",
    ),
    (
        "cn-north-1",
        "photos",
        {"use_dualstack_endpoint": True, "path_style": True},
        "https://s3.dualstack.cn-north-1.amazonaws.com.cn/photos/k",
    ),
    (
        "cn-northwest-1",
        "photos",
        {"use_dualstack_endpoint": True},
        "https://photos.s3.dualstack.cn-northwest-1.amazonaws.com.cn/k",
    ),
    (
        "us-west-2",
        "photos",
        {},
        "https://photos.s3.us-west-2.amazonaws.com/k",
    ),
]


@pytest.mark.parametrize(("region", "bucket", "settings", "url"), CASES)
def test_both_clients_resolve_the_same_url(
    region: str, bucket: str, settings: dict[str, bool], url: str
) -> None:
    store = S3Store(bucket, _side(region=region, **settings))
    try:
        assert store.data.url_for(bucket, "k") == url
        assert botocore_url(store, "k") == url
    finally:
        store.close()


def test_a_region_learnt_from_the_bucket_keeps_the_dual_stack_endpoint() -> None:
    # No region given: the store starts in us-east-1 and moves where the bucket says it is.
    store = S3Store("photos", _side(use_dualstack_endpoint=True))
    try:
        assert (
            store.data.url_for("photos") == "https://photos.s3.dualstack.us-east-1.amazonaws.com/"
        )
        store._use_region("eu-west-1")
        url = "https://photos.s3.dualstack.eu-west-1.amazonaws.com/k"
        assert store.data.url_for("photos", "k") == url
        assert botocore_url(store, "k") == url
    finally:
        store.close()


def test_a_profile_or_environment_choice_does_not_split_the_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # botocore alone would take dual-stack from the environment; the side's settings decide.
    monkeypatch.setenv("AWS_USE_DUALSTACK_ENDPOINT", "true")
    store = S3Store("photos", _side(region="us-west-2"))
    try:
        url = "https://photos.s3.us-west-2.amazonaws.com/k"
        assert store.data.url_for("photos", "k") == url
        assert botocore_url(store, "k") == url
    finally:
        store.close()


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (
            {"use_accelerate_endpoint": True, "region": "cn-north-1"},
            ["not offered in the China regions", "--src-use-dualstack-endpoint works"],
        ),
        (
            {"use_accelerate_endpoint": True, "path_style": True},
            ["cannot go with --src-path-style", "by host name only"],
        ),
        (
            {"use_accelerate_endpoint": True, "endpoint_url": "https://s3.example.net"},
            ["--src-use-accelerate-endpoint cannot go with --src-endpoint-url"],
        ),
        (
            {"use_dualstack_endpoint": True, "endpoint_url": "https://s3.example.net"},
            ["--src-use-dualstack-endpoint cannot go with --src-endpoint-url"],
        ),
    ],
)
def test_settings_that_cannot_work_are_refused(settings: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        _side(**settings)
    text = f"{caught.value.message} {caught.value.hint}"
    for word in words:
        assert word in text


@pytest.mark.parametrize("bucket", ["photos.2024", "photos..x"])
def test_acceleration_refuses_a_bucket_it_cannot_reach(bucket: str) -> None:
    side = SideSettings(
        region="us-west-2",
        use_accelerate_endpoint=True,
        access_key_id="AKIDEXAMPLE",
        secret_access_key="not-a-secret",
        bucket_names="relaxed",
    )
    with pytest.raises(ConfigError) as caught:
        S3Store(bucket, side)
    assert "cannot use S3 Transfer Acceleration" in caught.value.message
    assert "dots" in caught.value.message


def test_acceleration_refuses_a_china_region_from_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile china]\nregion = cn-north-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    side = SideSettings(
        profile="china",
        use_accelerate_endpoint=True,
        access_key_id="AKIDEXAMPLE",
        secret_access_key="not-a-secret",
    )
    with pytest.raises(ConfigError, match="not offered in the China regions"):
        S3Store("photos", side)


def test_the_config_file_keys_and_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "longbow.toml"
    path.write_text(
        "[source]\nuse_accelerate_endpoint = true\n"
        "[destination]\nuse_dualstack_endpoint = true\nregion = 'cn-north-1'\n"
    )
    file = load_config_file(path)
    assert file["source"] == {"use_accelerate_endpoint": True}
    assert file["destination"]["use_dualstack_endpoint"] is True
    path.write_text("[source]\nuse_accelerate_endpoint = 'yes'\n")
    with pytest.raises(ConfigError, match="use_accelerate_endpoint must be a bool"):
        load_config_file(path)

    # From the command line, a bucket acceleration cannot reach stops the run before any
    # request, with exit code 2.
    result = CliRunner().invoke(
        cli,
        [
            "sync",
            "s3://photos.2024/",
            str(tmp_path / "out"),
            "--db",
            str(tmp_path / "jobs.db"),
            "--src-region",
            "us-west-2",
            "--src-use-accelerate-endpoint",
        ],
        env={
            "LONGBOW_SRC_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "LONGBOW_SRC_SECRET_ACCESS_KEY": "not-a-secret",
        },
    )
    assert result.exit_code == 2, result.output
    assert "cannot use S3 Transfer Acceleration" in result.stderr
