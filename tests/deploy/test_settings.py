"""The deployment settings file: types, ranges, and settings that cannot work together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from longbow_deploy.settings import (
    DeploySettings,
    SettingsError,
    load_settings,
    settings_from_dict,
)

from .conftest import DEPLOY_DIR

PAIRS = [{"src": "s3://a-src/p/", "dst": "s3://a-dst/q/"}]


def build(**tables: Any) -> DeploySettings:
    return settings_from_dict({"pairs": PAIRS, **tables})


def problems(**tables: Any) -> str:
    with pytest.raises(SettingsError) as caught:
        build(**tables)
    return str(caught.value)


def test_the_example_file_is_valid_and_deploys_ec2_workers() -> None:
    settings = load_settings(DEPLOY_DIR / "settings.example.toml")
    assert settings.name == "longbow"
    assert settings.ec2.enabled and not settings.lambda_worker.enabled
    assert settings.queue_name == "longbow-jobs"
    assert settings.dead_letter_queue_name == "longbow-jobs-dlq"
    assert settings.table_name == "longbow-jobs"
    assert settings.pairs_parameter == "/longbow/pairs"
    assert settings.in_account("source") and not settings.in_account("destination")
    # An empty string means "not set".
    assert settings.source.endpoint_url is None
    assert settings.network.vpc_id is None


def test_defaults_need_only_pairs() -> None:
    settings = build()
    assert settings.ec2.scale_out_steps[0] == (100, 1)
    assert settings.in_account("source") and settings.in_account("destination")
    assert settings.buckets("destination") == {"a-dst": ("q/",)}


def test_unknown_keys_and_wrong_types_are_all_reported() -> None:
    text = problems(
        queue={"visibilty_timeout": 30},
        ec2={"max_capacity": "10", "spot": "yes"},
        monitoring={"emails": "ops@example.com"},
    )
    assert "unknown key(s) visibilty_timeout" in text
    assert "max_capacity must be a whole number" in text
    assert "spot must be true or false" in text
    assert "emails must be an array" in text


def test_a_missing_settings_file_says_where_to_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings.example.toml"):
        load_settings(tmp_path / "settings.toml")


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"ec2": {"enabled": False}}, "no workers"),
        (
            {"lambda_worker": {"enabled": True, "timeout_seconds": 600}},
            "timeout_seconds is above [queue] visibility_timeout",
        ),
        ({"queue": {"retention_days": 15}}, "retention_days must be between 1 and 14"),
        ({"ec2": {"instance_types": ["c7g.large", "c6i.large"]}}, "mix Graviton"),
        ({"ec2": {"min_capacity": 5, "max_capacity": 2}}, "min_capacity <= max_capacity"),
        ({"ec2": {"scale_out_steps": [[500, 2], [100, 1]]}}, "thresholds must be positive"),
        ({"ec2": {"scale_out_steps": [[100, 0]]}}, "add at least one instance"),
        ({"trigger": {"bucket": "elsewhere"}}, "not the source bucket of any pair"),
        (
            {
                "trigger": {"bucket": "a-src"},
                "parameters": {"credentials": "/k", "credentials_side": "source"},
            },
            "needs the source side in this account",
        ),
        ({"log_retention_days": 10}, "log_retention_days must be one of"),
        ({"transfer": {"part_size": "1MiB"}}, "part_size must be between 5MiB and 5GiB"),
        ({"transfer": {"part_size": "sixteen"}}, "is not a size"),
        ({"network": {"vpc_id": "vpc-1"}}, "vpc_id needs subnet_ids"),
        ({"monitoring": {"stall_minutes": 12}}, "multiple of 5"),
        ({"name": "Longbow_Prod"}, "lowercase letters"),
        ({"sender": {"schedule": "every day"}}, "rate(...) or cron(...)"),
        (
            {"lambda_worker": {"enabled": True, "reserved_concurrency": 5, "max_concurrency": 10}},
            "max_concurrency is above reserved_concurrency",
        ),
        ({"parameters": {"credentials_side": "both"}}, "source or destination"),
        ({"filters": {"filter": ["*.jpg"]}}, "[filters] filter[0] '*.jpg' is not a rule"),
        ({"transfer": {"restore_days": 0}}, "[transfer] restore_days must be between 1"),
        ({"transfer": {"restore_days": 3, "restore_tier": "Fast"}}, "restore_tier must be one"),
        ({"transfer": {"restore_tier": "Bulk"}}, "restore_tier needs restore_days"),
        ({"filters": {"min_size": "lots"}}, "[filters] min_size 'lots' is not a size"),
        ({"filters": {"max_age": "soon"}}, "[filters] max_age 'soon' is not a duration"),
        ({"filters": {"include": "*.jpg"}}, "filters: include must be an array"),
    ],
)
def test_settings_that_cannot_work_are_refused(tables: dict[str, Any], message: str) -> None:
    assert message in problems(**tables)


def test_a_pairs_inventory_report_is_a_manifest_address() -> None:
    report = "s3://reports/inv/a-src/daily/2024-05-01T01-00Z/manifest.json"
    pair = build(pairs=[{**PAIRS[0], "src_inventory": report}]).pairs[0]
    assert pair.src_inventory == report
    assert (pair.inventory_bucket, pair.inventory_folder) == ("reports", "inv/a-src/daily/")
    for bad in ("s3://reports/inv/", "reports/manifest.json", "s3://Bad_Bucket/m.json"):
        message = problems(pairs=[{**PAIRS[0], "src_inventory": bad}])
        assert f"pair 1: src_inventory {bad!r} is not the s3:// address" in message


def test_pairs_must_name_buckets() -> None:
    with pytest.raises(SettingsError, match="is not s3://bucket/prefix"):
        settings_from_dict({"pairs": [{"src": "/data", "dst": "s3://b-dst/"}]})
    with pytest.raises(SettingsError, match="missing pairs"):
        settings_from_dict({})


def test_graviton_types_select_arm64() -> None:
    assert build(ec2={"instance_types": ["c7g.large", "m6gd.xlarge", "t4g.small"]}).ec2.arm64
    assert not build(ec2={"instance_types": ["c6i.large", "c7i-flex.large"]}).ec2.arm64
