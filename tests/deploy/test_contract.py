"""What the deployment hands the runtime is what the runtime reads: the config file the
workers get, the Lambda environment, the table layout, the metric names and the handler."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from longbow_deploy import contract
from longbow_deploy.settings import DeploySettings, settings_from_dict

from .conftest import EC2_SETTINGS, LAMBDA_SETTINGS

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/lb-jobs"
DLQ_URL = QUEUE_URL + "-dlq"


@pytest.fixture(params=("ec2", "lambda"))
def settings(request: pytest.FixtureRequest) -> DeploySettings:
    raw = EC2_SETTINGS if request.param == "ec2" else LAMBDA_SETTINGS
    return settings_from_dict(raw)


def test_constants_mirror_the_runtime() -> None:
    from s3longbow.cluster import metrics, provision

    assert contract.STATE_INDEX == provision.STATE_INDEX
    assert tuple(contract.STATE_INDEX_ATTRIBUTES) == tuple(provision.INDEX_ATTRIBUTES)
    assert contract.TTL_ATTRIBUTE == provision.TTL_ATTRIBUTE
    assert contract.METRICS_NAMESPACE == metrics.NAMESPACE
    assert contract.METRIC_NAMES == tuple(metrics.METRICS)
    for handler in (contract.LAMBDA_WORKER_HANDLER, contract.SENDER_HANDLER):
        module, _, name = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))


def test_the_workers_config_file_is_read_by_the_runtime(
    settings: DeploySettings, tmp_path: Path
) -> None:
    from s3longbow.cluster.settings import load_cluster_config

    ignore = contract.ignore_text(settings)
    text = contract.cluster_config(
        settings,
        queue=contract.QueueRef(queue_url=QUEUE_URL, dead_letter_queue_url=DLQ_URL),
        table="lb-jobs",
        region="us-east-1",
        ignore_file=ignore is not None,
    )
    path = tmp_path / "cluster.toml"
    path.write_text(text, encoding="utf-8")
    if ignore is not None:
        (tmp_path / contract.IGNORE_FILE).write_text(ignore, encoding="utf-8")
    config = load_cluster_config(path)
    c = config.cluster
    assert (c.queue_url, c.dead_letter_queue_url, c.table) == (QUEUE_URL, DLQ_URL, "lb-jobs")
    assert c.visibility_timeout == settings.queue.visibility_timeout
    assert c.max_receive_count == settings.queue.max_receive_count
    assert c.pairs_parameter == settings.pairs_parameter
    assert c.credentials_parameter == settings.parameters.credentials
    assert c.delete_removed == settings.queue.delete_removed
    assert config.transfer.workers == settings.transfer.workers
    assert config.destination.endpoint_url == settings.destination.endpoint_url
    assert config.ignore_patterns == settings.transfer.ignore
    assert config.transfer.no_overwrite == settings.transfer.no_overwrite
    assert config.transfer.restore_days == settings.transfer.restore_days
    assert config.transfer.restore_tier == settings.transfer.restore_tier
    f, read = settings.filters, config.filters
    assert read.ignore_case == f.ignore_case
    assert [(r.include, r.pattern) for r in read.rules] == [
        *((True, p) for p in f.include),
        *((False, p) for p in f.exclude),
        *((rule[0] == "+", rule[2:]) for rule in f.filter),
        *([(False, "/**")] if f.include else []),
    ]
    assert (read.min_size is None) == (f.min_size is None)
    assert (read.max_age is None) == (f.max_age is None)


def test_the_lambda_environment_is_read_by_the_runtime(
    settings: DeploySettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3longbow.handlers.sqs_worker import config_from_environment

    for name in ("LONGBOW_SRC_ACCESS_KEY_ID", "LONGBOW_DST_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    # The file shipped with the function names the queues; the environment gives the URLs.
    text = contract.cluster_config(
        settings,
        queue=contract.QueueRef(
            queue_name=settings.queue_name, dead_letter_queue_name=settings.dead_letter_queue_name
        ),
        table=settings.table_name,
        region=None,
        ignore_file=False,
    )
    path = tmp_path / "cluster.toml"
    path.write_text(text, encoding="utf-8")
    env = contract.lambda_environment(
        settings,
        config_path=str(path),
        queue_url=QUEUE_URL,
        dead_letter_queue_url=DLQ_URL,
        table="lb-jobs-deployed",
        region="eu-west-1",
        time_margin_seconds=45,
        transfer_overrides={"workers": 3, "part_threads": None},
    )
    config = config_from_environment(env)
    c = config.cluster
    assert (c.queue_url, c.queue_name) == (QUEUE_URL, None)
    assert c.dead_letter_queue_url == DLQ_URL
    assert (c.table, c.region) == ("lb-jobs-deployed", "eu-west-1")
    assert c.pairs_parameter == settings.pairs_parameter
    assert config.transfer.workers == 3
    assert env["LONGBOW_TIME_MARGIN_SECONDS"] == "45"


def test_string_values_are_escaped_in_the_config_file(tmp_path: Path) -> None:
    import tomllib

    settings = settings_from_dict(
        {
            "pairs": [{"src": "s3://a-src/", "dst": "s3://a-dst/"}],
            "transfer": {"storage_class": 'ODD"CLASS\\'},
        }
    )
    text = contract.cluster_config(
        settings,
        queue=contract.QueueRef(queue_name="q"),
        table="t",
        region=None,
        ignore_file=False,
    )
    assert tomllib.loads(text)["storage_class"] == 'ODD"CLASS\\'


def test_the_pairs_parameter_is_read_by_the_runtime() -> None:
    from s3longbow.config import PairSettings, pair_from

    report = "s3://reports/inv/a-src/all/2024-05-01T01-00Z/manifest.json"
    settings = settings_from_dict(
        {
            "pairs": [
                {"src": "s3://a-src/", "dst": "s3://a-dst/"},
                {"src": "s3://b-src/x/", "dst": "s3://b-dst/", "src_inventory": report},
            ]
        }
    )
    read = [pair_from(table) for table in json.loads(contract.pairs_json(settings))]
    assert read == [
        PairSettings("s3://a-src/", "s3://a-dst/", None),
        PairSettings("s3://b-src/x/", "s3://b-dst/", report),
    ]
