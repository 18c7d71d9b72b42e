"""The settings loader: defaults < config file < environment < flags, for `sync`/`verify`, the
cluster commands and the Lambda functions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from s3longbow.config import MiB, TransferSettings, default_db_path
from s3longbow.errors import ConfigError
from s3longbow.loader import (
    FilterFlags,
    Flags,
    SideFlags,
    TransferFlags,
    env_value,
    keys_from_environment,
    load_cluster,
    load_deployment,
    load_settings,
)
from s3longbow.selection import FilterRule, parse_age

KEYS = {"LONGBOW_SRC_ACCESS_KEY_ID": "AKIDSRC", "LONGBOW_SRC_SECRET_ACCESS_KEY": "secret-src"}

SYNC_FILE = """
workers = 4
part_size = "16MiB"
db = "state/jobs.db"
ignore_file = "file.ignore"

[source]
endpoint_url = "https://src.example"
region = "eu-west-1"

[destination]
endpoint_url = "https://dst.example"

[[pairs]]
src = "s3://a/x/"
dst = "s3://b/y/"
"""

CLUSTER_FILE = """
workers = 4
part_size = "16MiB"

[cluster]
queue_name = "jobs"
table = "file-table"
visibility_timeout = 600

[source]
endpoint_url = "https://src.example"
region = "eu-west-1"

[[pairs]]
src = "s3://a/x/"
dst = "s3://b/y/"
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def sync_file(tmp_path: Path) -> Path:
    _write(tmp_path, "file.ignore", "*.tmp\n")
    _write(tmp_path, "flag.ignore", "*.bak\n")
    return _write(tmp_path, "sync.toml", SYNC_FILE)


# -- sync and verify -----------------------------------------------------------------------


def test_sync_defaults_without_a_file_or_environment(tmp_path: Path) -> None:
    settings = load_settings(Flags(src="s3://a/", dst=str(tmp_path)), {})
    assert settings.transfer == TransferSettings()
    assert settings.source.endpoint_url is None and settings.source.access_key_id is None
    assert settings.db_path == default_db_path()
    assert settings.ignore_patterns == ()
    assert [(p.src, p.dst) for p in settings.pairs] == [("s3://a/", str(tmp_path))]


def test_sync_file_over_defaults(sync_file: Path) -> None:
    settings = load_settings(Flags(config_file=sync_file), {})
    assert settings.transfer.workers == 4 and settings.transfer.part_size == 16 * MiB
    assert settings.transfer.part_threads == TransferSettings().part_threads
    assert settings.source.endpoint_url == "https://src.example"
    assert settings.source.region == "eu-west-1"
    assert [(p.src, p.dst) for p in settings.pairs] == [("s3://a/x/", "s3://b/y/")]
    assert settings.db_path == (sync_file.parent / "state/jobs.db").resolve()
    assert settings.ignore_patterns == ("*.tmp",)


def test_sync_environment_over_file_and_flags_over_both(sync_file: Path) -> None:
    flags = Flags(
        src="s3://c/",
        dst="s3://d/",
        config_file=sync_file,
        ignore_file=sync_file.parent / "flag.ignore",
        db_path=sync_file.parent / "flag.db",
        source=SideFlags(endpoint_url="https://flag.example"),
        destination=SideFlags(acl="bucket-owner-full-control"),
        transfer=TransferFlags(workers=8, copy_tags=False),
    )
    settings = load_settings(flags, KEYS)
    # Flags win where they are given ...
    assert settings.transfer.workers == 8 and settings.transfer.copy_tags is False
    assert settings.source.endpoint_url == "https://flag.example"
    assert settings.destination.acl == "bucket-owner-full-control"
    assert [(p.src, p.dst) for p in settings.pairs] == [("s3://c/", "s3://d/")]
    assert settings.db_path == sync_file.parent / "flag.db"
    assert settings.ignore_patterns == ("*.bak",)
    # ... the file where they are not ...
    assert settings.transfer.part_size == 16 * MiB
    assert settings.source.region == "eu-west-1"
    assert settings.destination.endpoint_url == "https://dst.example"
    # ... and the environment gives the keys, to its own side only.
    assert settings.source.access_key_id == "AKIDSRC"
    assert settings.source.secret_access_key == "secret-src"
    assert settings.destination.access_key_id is None


def test_sync_filters_from_the_file_and_flags_key_by_key(tmp_path: Path) -> None:
    _write(tmp_path, "rules.txt", "- *.bak\n")
    _write(tmp_path, "keys.txt", "a\nb/c\n")
    cfg = _write(
        tmp_path,
        "sync.toml",
        'include = ["*.jpg"]\nexclude = "tmp/**"\nfilter_from = "rules.txt"\n'
        'files_from = "keys.txt"\nmin_size = "1M"\nmax_age = "7d"\n'
        '[[pairs]]\nsrc = "s3://a/"\ndst = "s3://b/"\n',
    )
    spec = load_settings(Flags(config_file=cfg), {}).filters
    assert [(r.include, r.pattern) for r in spec.rules] == [
        (True, "*.jpg"),
        (False, "tmp/**"),
        (False, "*.bak"),
        (False, "/**"),  # any include leaves out what no rule takes
    ]
    assert spec.files_from == {"a", "b/c"} and spec.min_size == MiB
    assert spec.max_age is not None and spec.max_age.seconds == 7 * 86400
    # A flag replaces the file's key of the same name; the others stay.
    flags = Flags(
        config_file=cfg,
        filters=FilterFlags(exclude=("x",), min_size=5, min_age=parse_age("1h")),
    )
    spec = load_settings(flags, {}).filters
    assert [r.pattern for r in spec.rules] == ["*.jpg", "x", "*.bak", "/**"]
    assert spec.rules[1] == FilterRule(False, "x", "--exclude")
    assert spec.min_size == 5 and spec.files_from == {"a", "b/c"}
    assert spec.min_age is not None and spec.max_age is not None
    # Without any, nothing is filtered.
    assert not load_settings(Flags(src="s3://a/", dst="s3://b/"), {}).filters


def test_sync_refuses_bad_filters_before_anything_runs(tmp_path: Path) -> None:
    pair = {"src": "s3://a/", "dst": "s3://b/"}
    with pytest.raises(ConfigError, match=r"--include: too many stars"):
        load_settings(Flags(**pair, filters=FilterFlags(include=("***",))), {})
    with pytest.raises(ConfigError, match="cannot read filter file"):
        load_settings(Flags(**pair, filters=FilterFlags(filter_from=(tmp_path / "no",))), {})
    with pytest.raises(ConfigError, match="cannot read key list"):
        load_settings(Flags(**pair, filters=FilterFlags(files_from=(tmp_path / "no",))), {})
    bad = _write(tmp_path, "bad.txt", "+ ok\n- a{b\n")
    with pytest.raises(ConfigError, match=f"{bad}:2: a '{{' without its '}}'"):
        load_settings(Flags(**pair, filters=FilterFlags(filter_from=(bad,))), {})


def test_sync_flags_that_say_no_are_given(tmp_path: Path) -> None:
    flags = Flags(
        src="s3://a/",
        dst="s3://b/",
        source=SideFlags(verify_ssl=False),
        transfer=TransferFlags(server_side_copy=False, relay=False),
    )
    settings = load_settings(flags, {})
    assert settings.source.verify_ssl is False and settings.destination.verify_ssl is True
    assert not settings.transfer.server_side_copy and not settings.transfer.relay


def test_sync_delete_flags(tmp_path: Path) -> None:
    pair = {"src": "s3://a/", "dst": "s3://b/"}
    settings = load_settings(Flags(**pair, delete=True, force=True, max_delete=25), {})
    assert settings.delete and settings.force and settings.max_delete_fraction == 0.25
    with pytest.raises(ConfigError, match="--force only goes with --delete"):
        load_settings(Flags(**pair, force=True), {})


def test_the_price_table_from_the_file_relative_to_it_or_the_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, "pairs.toml", 'price_table = "prices/mine.toml"\n' + _PAIR_TEXT)
    assert load_settings(Flags(config_file=path), {}).price_table == (
        tmp_path / "prices" / "mine.toml"
    )
    given = Flags(config_file=path, price_table=Path("other.toml"))
    assert load_settings(given, {}).price_table == Path("other.toml")
    assert load_settings(Flags(src="s3://a/", dst="s3://b/"), {}).price_table is None
    cluster = _write(
        tmp_path,
        "cluster.toml",
        'price_table = "cluster-prices.toml"\n[cluster]\nqueue_url = "https://q"\n'
        'table = "jobs"\n' + _PAIR_TEXT,
    )
    assert load_cluster(cluster, {}).price_table == tmp_path / "cluster-prices.toml"


_PAIR_TEXT = '[[pairs]]\nsrc = "s3://a/x/"\ndst = "s3://b/x/"\n'


def test_sync_inventory_from_a_pair_of_the_file_or_the_flag_for_every_pair(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        "pairs.toml",
        '[[pairs]]\nsrc = "s3://a/x/"\ndst = "s3://b/x/"\nsrc_inventory = "s3://inv/m.json"\n'
        '[[pairs]]\nsrc = "s3://a/y/"\ndst = "s3://b/y/"\n',
    )
    settings = load_settings(Flags(config_file=path), {})
    assert [p.src_inventory for p in settings.pairs] == ["s3://inv/m.json", None]
    settings = load_settings(Flags(config_file=path, src_inventory="s3://inv/new.json"), {})
    assert [p.src_inventory for p in settings.pairs] == ["s3://inv/new.json"] * 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (Flags(delete=True), "--delete cannot go with --src-inventory"),
        (Flags(transfer=TransferFlags(compare="version")), "--compare version cannot go"),
    ],
)
def test_sync_inventory_refuses_what_a_snapshot_cannot_do(flags: Flags, message: str) -> None:
    pair = Flags(src="s3://a/", dst="s3://b/", src_inventory="s3://inv/manifest.json")
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings(
            replace(flags, src=pair.src, dst=pair.dst, src_inventory=pair.src_inventory), {}
        )
    assert refused.value.hint
    load_settings(replace(flags, src=pair.src, dst=pair.dst), {})  # fine with a listing


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (Flags(src="s3://a/"), {}, "give both SRC and DST"),
        (Flags(), {}, "nothing to copy"),
        (
            Flags(src="s3://a/", dst="s3://b/"),
            {"LONGBOW_DST_ACCESS_KEY_ID": "AKID"},
            "LONGBOW_DST_ACCESS_KEY_ID and LONGBOW_DST_SECRET_ACCESS_KEY must be set together",
        ),
        (
            Flags(src="s3://a/", dst="s3://b/", source=SideFlags(endpoint_url="http://10.9.8.7")),
            {},
            "--src-allow-http",
        ),
        (
            Flags(src="s3://a/", dst="s3://b/", destination=SideFlags(checksum_algorithm="X")),
            {},
            "--dst-checksum-algorithm 'X' is not known",
        ),
        (
            Flags(src="s3://a/", dst="s3://b/", transfer=TransferFlags(part_size=MiB)),
            {},
            "part-size 1.0 MiB is outside S3's limits",
        ),
    ],
)
def test_sync_refuses_bad_layers(flags: Flags, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, env)
    assert message in f"{caught.value.message} {caught.value.hint}"


def test_sync_names_the_file_whose_settings_are_wrong(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.toml", 'part_size = "1MiB"\n')
    with pytest.raises(ConfigError, match=f"config file {path}: part-size"):
        load_settings(Flags(src="s3://a/", dst="s3://b/", config_file=path), {})
    # A flag that fixes the file's value does not hide the file's mistake.
    flags = Flags(
        src="s3://a/", dst="s3://b/", config_file=path, transfer=TransferFlags(part_size=8 * MiB)
    )
    with pytest.raises(ConfigError, match="config file"):
        load_settings(flags, {})


def test_the_allow_http_flag_or_key_lets_plain_http_through(tmp_path: Path) -> None:
    flags = Flags(
        src="s3://a/",
        dst="s3://b/",
        source=SideFlags(endpoint_url="http://10.9.8.7", allow_http=True),
    )
    assert load_settings(flags, {}).source.endpoint_url == "http://10.9.8.7"
    path = _write(
        tmp_path, "http.toml", '[source]\nendpoint_url = "http://10.9.8.7"\nallow_http = true\n'
    )
    flags = Flags(src="s3://a/", dst="s3://b/", config_file=path)
    assert load_settings(flags, {}).source.allow_http is True


# -- cluster commands ----------------------------------------------------------------------


def test_cluster_file_environment_and_flags(tmp_path: Path) -> None:
    path = _write(tmp_path, "cluster.toml", CLUSTER_FILE)
    config = load_cluster(path, {})
    assert config.cluster.queue_name == "jobs" and config.cluster.table == "file-table"
    assert (
        config.transfer.workers == 4
        and config.transfer.part_threads == TransferSettings().part_threads
    )
    assert config.source.endpoint_url == "https://src.example"
    assert config.source.access_key_id is None

    config = load_cluster(path, KEYS, TransferFlags(workers=2, part_threads=9))
    assert (config.transfer.workers, config.transfer.part_threads) == (2, 9)
    assert config.transfer.part_size == 16 * MiB
    assert config.source.access_key_id == "AKIDSRC"
    assert config.source.region == "eu-west-1"
    assert config.destination.access_key_id is None


def test_cluster_filters_from_the_file_and_sends_flags(tmp_path: Path) -> None:
    path = _write(tmp_path, "cluster.toml", 'exclude = "*.tmp"\nmax_size = "1G"\n' + CLUSTER_FILE)
    config = load_cluster(path, {})
    assert [r.pattern for r in config.filters.rules] == ["*.tmp"]
    assert config.filters.max_size == 1024**3
    assert config.settings(config.pairs).filters == config.filters
    config = load_cluster(path, {}, filters=FilterFlags(include=("*.jpg",)))
    assert [r.pattern for r in config.filters.rules] == ["*.jpg", "*.tmp", "/**"]
    assert config.filters.max_size == 1024**3
    # The Lambda functions read the same file: the filters come with it.
    deployed = load_deployment({"LONGBOW_CONFIG": str(path)})
    assert deployed.filters == load_cluster(path, {}).filters
    bad = _write(tmp_path, "bad.toml", 'min_age = "soon"\n' + CLUSTER_FILE)
    with pytest.raises(ConfigError, match="min_age: 'soon' is not a duration or a date"):
        load_cluster(bad, {})


def test_cluster_commands_read_no_deployment_variables(tmp_path: Path) -> None:
    path = _write(tmp_path, "cluster.toml", CLUSTER_FILE)
    env = {"LONGBOW_TABLE": "env-table", "LONGBOW_WORKERS": "7", "LONGBOW_SRC_REGION": "x"}
    config = load_cluster(path, env)
    assert config.cluster.table == "file-table" and config.transfer.workers == 4
    assert config.source.region == "eu-west-1"


def test_cluster_plain_http_is_refused_with_the_files_key_as_hint(tmp_path: Path) -> None:
    text = CLUSTER_FILE.replace("https://src.example", "http://10.9.8.7")
    path = _write(tmp_path, "cluster.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_cluster(path, {})
    assert "allow_http = true in [source]" in (caught.value.hint or "")


# -- Lambda functions ----------------------------------------------------------------------


def test_deployment_from_the_environment_alone() -> None:
    config = load_deployment(
        {
            "LONGBOW_QUEUE_URL": "https://q/jobs",
            "LONGBOW_PAIRS": '[{"src": "s3://a/", "dst": "s3://b/"}]',
            "LONGBOW_WORKERS": "3",
            "LONGBOW_MEMORY_LIMIT": "64MiB",
            "LONGBOW_STORAGE_CLASS": "GLACIER",
            "LONGBOW_SRC_REGION": "eu-west-2",
            "LONGBOW_DST_PATH_STYLE": "yes",
            **KEYS,
        }
    )
    assert config.cluster.queue_url == "https://q/jobs"
    assert config.cluster.table == "longbow-jobs"  # the default
    assert config.transfer.workers == 3 and config.transfer.memory_limit == 64 * MiB
    assert config.transfer.storage_class == "GLACIER"
    assert config.source.region == "eu-west-2" and config.source.access_key_id == "AKIDSRC"
    assert config.destination.path_style is True


def test_deployment_environment_over_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "cluster.toml", CLUSTER_FILE)
    config = load_deployment({"LONGBOW_CONFIG": str(path)})
    assert config.cluster.queue_name == "jobs" and config.cluster.visibility_timeout == 600
    assert config.transfer.workers == 4
    assert config.source.region == "eu-west-1"

    config = load_deployment(
        {
            "LONGBOW_CONFIG": str(path),
            "LONGBOW_QUEUE_URL": "https://q/env",
            "LONGBOW_TABLE": "env-table",
            "LONGBOW_WORKERS": "7",
            "LONGBOW_SRC_REGION": "",
            "LONGBOW_SRC_ENDPOINT_URL": "https://env.example",
            "LONGBOW_PAIRS": '[{"src": "s3://c/", "dst": "s3://d/"}]',
            **KEYS,
        }
    )
    # The queue URL replaces the file's queue name; what the environment leaves, stays.
    assert config.cluster.queue_url == "https://q/env" and config.cluster.queue_name is None
    assert config.cluster.table == "env-table" and config.cluster.visibility_timeout == 600
    assert config.transfer.workers == 7 and config.transfer.part_size == 16 * MiB
    assert config.source.endpoint_url == "https://env.example"
    assert config.source.region is None  # set, but empty: unset
    assert config.source.access_key_id == "AKIDSRC"
    assert [(p.src, p.dst) for p in config.pairs] == [("s3://c/", "s3://d/")]


def test_deployment_pairs_parameter_replaces_every_pair(tmp_path: Path) -> None:
    path = _write(tmp_path, "cluster.toml", CLUSTER_FILE)
    config = load_deployment({"LONGBOW_CONFIG": str(path), "LONGBOW_PAIRS_PARAMETER": "/pairs"})
    assert config.pairs == () and config.cluster.pairs_parameter == "/pairs"


def test_deployment_pairs_may_name_their_inventory_report() -> None:
    manifest = "s3://inventory/src/daily/2026-01-01T00-00Z/manifest.json"
    pairs = [{"src": "s3://a/", "dst": "s3://b/", "src_inventory": manifest}]
    config = load_deployment(
        {"LONGBOW_QUEUE_URL": "https://q/j", "LONGBOW_PAIRS": json.dumps(pairs)}
    )
    assert [(p.src, p.dst, p.src_inventory) for p in config.pairs] == [
        ("s3://a/", "s3://b/", manifest)
    ]
    pairs[0]["acl"] = "public-read"  # a key a pair does not take
    with pytest.raises(ConfigError, match="must be a JSON list"):
        load_deployment({"LONGBOW_QUEUE_URL": "https://q/j", "LONGBOW_PAIRS": json.dumps(pairs)})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LONGBOW_PAIRS": "[]"}, "names no queue"),
        ({"LONGBOW_QUEUE_URL": "https://q/j"}, "no pairs to copy"),
        ({"LONGBOW_QUEUE_URL": "https://q/j", "LONGBOW_PAIRS": "{"}, "LONGBOW_PAIRS is not JSON"),
        ({"LONGBOW_QUEUE_URL": "https://q/j", "LONGBOW_PAIRS": "[1]"}, "must be a JSON list"),
        (
            {"LONGBOW_QUEUE_URL": "https://q/j", "LONGBOW_PAIRS": '[{"src": "/d", "dst": "/e"}]'},
            "between buckets only",
        ),
        ({"LONGBOW_QUEUE_URL": "https://q/j", "LONGBOW_WORKERS": "many"}, "LONGBOW_WORKERS="),
        ({"LONGBOW_QUEUE_URL": "https://q/j", "LONGBOW_PART_SIZE": "big"}, "LONGBOW_PART_SIZE"),
        ({"LONGBOW_DELETE_REMOVED": "perhaps"}, "LONGBOW_DELETE_REMOVED='perhaps'"),
    ],
)
def test_deployment_refuses_bad_variables(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_deployment(env)


def test_env_value_and_keys() -> None:
    assert env_value("on", False, "V") is True and env_value("", True, "V") is False
    assert env_value("12", 1, "V") == 12 and env_value("1.5", 1.0, "V") == 1.5
    assert env_value("text", "", "V") == "text"
    with pytest.raises(ConfigError, match="V='x' is not a valid float"):
        env_value("x", 1.0, "V")
    assert keys_from_environment({}, "SRC") == {}
    assert keys_from_environment({**KEYS, "LONGBOW_SRC_SESSION_TOKEN": "t"}, "SRC") == {
        "access_key_id": "AKIDSRC",
        "secret_access_key": "secret-src",
        "session_token": "t",
    }


# -- restores of archived sources ----------------------------------------------------------


def test_restore_settings_from_the_file_and_flags(tmp_path: Path) -> None:
    path = _write(tmp_path, "restore.toml", 'restore_days = 5\nrestore_tier = "bulk"\n')
    settings = load_settings(Flags(src="s3://a/", dst="s3://b/", config_file=path), {})
    assert (settings.transfer.restore_days, settings.transfer.restore_tier) == (5, "Bulk")
    flags = Flags(
        src="s3://a/",
        dst="s3://b/",
        config_file=path,
        transfer=TransferFlags(restore_days=2, restore_tier="Expedited"),
    )
    settings = load_settings(flags, {})
    assert (settings.transfer.restore_days, settings.transfer.restore_tier) == (2, "Expedited")
    lambda_env = {
        "LONGBOW_QUEUE_URL": "https://q",
        "LONGBOW_PAIRS": '[{"src": "s3://a/", "dst": "s3://b/"}]',
        "LONGBOW_RESTORE_DAYS": "3",
        "LONGBOW_RESTORE_TIER": "bulk",
    }
    transfer = load_deployment(lambda_env).transfer
    assert (transfer.restore_days, transfer.restore_tier) == (3, "Bulk")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("restore_days = 0\n", "restore-days 0 is not a number of days"),
        ("restore_days = 1.5\n", "restore_days must be a whole number of days"),
        ('restore_days = "7"\n', "restore_days must be a whole number of days"),
        ('restore_days = 7\nrestore_tier = "Fast"\n', "restore-tier 'Fast' is not a retrieval"),
        ('restore_tier = "Bulk"\n', "restore-tier needs restore-days"),
    ],
)
def test_restore_settings_are_checked(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, "restore.toml", body)
    with pytest.raises(ConfigError) as caught:
        load_settings(Flags(src="s3://a/", dst="s3://b/", config_file=path), {})
    assert message in f"{caught.value.message} {caught.value.hint}"


def test_an_sse_c_key_comes_from_the_file_then_the_environment_then_the_flag(
    tmp_path: Path,
) -> None:
    import base64

    from s3longbow.loader import Flags, SideFlags, load_settings

    keys = {name: bytes([n]) * 32 for n, name in enumerate(("file", "env", "flag"), 1)}
    for name, key in keys.items():
        (tmp_path / f"{name}.key").write_text(base64.b64encode(key).decode())
    config = tmp_path / "c.toml"
    config.write_text('[source]\nsse_c_key_file = "file.key"\n')
    env = {"LONGBOW_SRC_SSE_C_KEY": base64.b64encode(keys["env"]).decode()}
    pair = {"src": "s3://a/", "dst": "s3://b/", "config_file": config}
    assert load_settings(Flags(**pair), {}).source.sse_c_key == keys["file"]
    assert load_settings(Flags(**pair), env).source.sse_c_key == keys["env"]
    flag = SideFlags(sse_c_key_file=str(tmp_path / "flag.key"))
    settings = load_settings(Flags(**pair, source=flag), env)
    assert settings.source.sse_c_key == keys["flag"]
    assert settings.destination.sse_c_key is None
    assert repr(keys["flag"]) not in repr(settings)  # never printed with the settings
