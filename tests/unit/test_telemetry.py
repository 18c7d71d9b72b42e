"""Where logs and metrics go, as settings: the config-file keys of `sync`/`verify` and of the
cluster commands, each replaced by its flag, and the values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3longbow.errors import ConfigError
from s3longbow.loader import Flags, TelemetryFlags, load_cluster, load_settings
from s3longbow.telemetry import TelemetrySettings

PAIRS = """
[[pairs]]
src = "s3://a/x/"
dst = "s3://b/y/"
"""

KEYS = """
log_file = "logs/longbow.log"
log_format = "json"
metrics_port = 9464
metrics_address = "0.0.0.0"
metrics_file = "/var/lib/node_exporter/longbow.prom"
"""

CLUSTER = """
[cluster]
queue_name = "jobs"
table = "jobs"
"""


def sync_settings(tmp_path: Path, text: str, flags: TelemetryFlags | None = None) -> Flags:
    path = tmp_path / "longbow.toml"
    path.write_text(text)
    return Flags(config_file=path, telemetry=flags or TelemetryFlags())


def test_the_config_file_says_where_logs_and_metrics_go(tmp_path: Path) -> None:
    settings = load_settings(sync_settings(tmp_path, KEYS + PAIRS), {})
    assert settings.telemetry == TelemetrySettings(
        log_file=tmp_path / "logs" / "longbow.log",  # relative to the file, as `db` is
        log_format="json",
        metrics_port=9464,
        metrics_address="0.0.0.0",
        metrics_file=Path("/var/lib/node_exporter/longbow.prom"),
    )


def test_each_flag_replaces_its_key(tmp_path: Path) -> None:
    flags = TelemetryFlags(log_format="text", metrics_port=0, metrics_file=Path("here.prom"))
    telemetry = load_settings(sync_settings(tmp_path, KEYS + PAIRS, flags), {}).telemetry
    assert (telemetry.log_format, telemetry.metrics_port, telemetry.metrics_file) == (
        "text",
        0,
        Path("here.prom"),
    )
    assert telemetry.log_file == tmp_path / "logs" / "longbow.log"  # not given: the file's


def test_without_a_file_only_the_flags_count(tmp_path: Path) -> None:
    flags = Flags(src="s3://a/", dst="s3://b/", telemetry=TelemetryFlags(metrics_port=9464))
    telemetry = load_settings(flags, {}).telemetry
    assert telemetry == TelemetrySettings(metrics_port=9464)
    assert telemetry.metrics_address == "127.0.0.1" and telemetry.exports_metrics


def test_a_cluster_config_file_takes_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text('log_file = "worker.log"\nmetrics_port = 9464\n' + CLUSTER + PAIRS)
    config = load_cluster(path, {}, telemetry=TelemetryFlags(metrics_address="::1"))
    assert config.telemetry == TelemetrySettings(
        log_file=tmp_path / "worker.log", metrics_port=9464, metrics_address="::1"
    )


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('log_format = "xml"', "log format 'xml' is not known"),
        ('metrics_port = "9464"', "metrics_port must be a whole number"),
        ("metrics_port = 70000", "metrics port 70000 is not a TCP port"),
        ("metrics_port = true", "metrics_port must be a whole number"),
        ('metrics_address = ""', "metrics_address must be a non-empty string"),
        ("log_file = 3", "log_file must be a non-empty string"),
        ("log_level = 3", "unknown setting(s) log_level"),
    ],
)
def test_a_bad_key_is_refused_naming_the_file(tmp_path: Path, line: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(sync_settings(tmp_path, line + "\n" + PAIRS), {})
    assert str(tmp_path / "longbow.toml") in caught.value.message
    assert said in caught.value.message


def test_a_blank_address_flag_is_refused(tmp_path: Path) -> None:
    flags = Flags(src="s3://a/", dst="s3://b/", telemetry=TelemetryFlags(metrics_address=" "))
    with pytest.raises(ConfigError, match="metrics address is empty"):
        load_settings(flags, {})
