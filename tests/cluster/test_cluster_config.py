"""Bad cluster configuration ends with a clear message and exit code 2, before any network
call; good environment variables make the same settings for the Lambda handler."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from s3longbow.cli.app import cli
from s3longbow.cluster.config import CredentialsSide
from s3longbow.config import MiB
from s3longbow.errors import ConfigError
from s3longbow.handlers.sqs_worker import config_from_environment

GOOD_CLUSTER = '[cluster]\nqueue_name = "jobs"\ntable = "longbow-jobs"\n'
GOOD_PAIRS = '[[pairs]]\nsrc = "s3://a/x/"\ndst = "s3://b/y/"\n'

CASES = {
    "no queue": ('[cluster]\ntable = "t"\n' + GOOD_PAIRS, "names no queue"),
    "unknown key": (
        '[cluster]\nqueue_nmae = "jobs"\n' + GOOD_PAIRS,
        "unknown key(s) queue_nmae",
    ),
    "wrong type": (GOOD_CLUSTER + 'visibility_timeout = "30"\n' + GOOD_PAIRS, "whole number"),
    "out of range": (GOOD_CLUSTER + "receive_wait_seconds = 60\n" + GOOD_PAIRS, "between 0"),
    "bad side": (GOOD_CLUSTER + 'credentials_side = "both"\n' + GOOD_PAIRS, "one of source"),
    "bool as string": (GOOD_CLUSTER + 'delete_removed = "yes"\n' + GOOD_PAIRS, "true or false"),
    "two queues": (
        '[cluster]\nqueue_name = "a"\nqueue_url = "https://q/b"\n' + GOOD_PAIRS,
        "both queue_url and queue_name",
    ),
    "no cluster table": (GOOD_PAIRS, "has no [cluster] table"),
    "cluster not a table": ('cluster = "jobs"\n' + GOOD_PAIRS, "[cluster] must be a table"),
    "unknown top-level": (
        GOOD_CLUSTER.replace("[cluster]", "wokers = 3\n[cluster]") + GOOD_PAIRS,
        "wokers",
    ),
    "no pairs": (GOOD_CLUSTER, "no pairs to copy"),
    "two sources of pairs": (
        GOOD_CLUSTER + 'pairs_parameter = "/p"\n' + GOOD_PAIRS,
        "both [[pairs]] and [cluster] pairs_parameter",
    ),
    "local pair": (
        GOOD_CLUSTER + '[[pairs]]\nsrc = "/data"\ndst = "s3://b/"\n',
        "between buckets only",
    ),
    "bad part size": (
        GOOD_CLUSTER.replace("[cluster]", 'part_size = "1MiB"\n[cluster]') + GOOD_PAIRS,
        "part-size",
    ),
    "not TOML": ("[cluster\n", "not valid TOML"),
    "history copy": (
        GOOD_CLUSTER.replace("[cluster]", "all_versions = true\n[cluster]") + GOOD_PAIRS,
        "all_versions works with `longbow sync` only",
    ),
    "bad checksum algorithm": (
        GOOD_CLUSTER + GOOD_PAIRS + '[destination]\nchecksum_algorithm = "CRC99"\n',
        "is not known",
    ),
    "kms key without kms": (
        GOOD_CLUSTER + GOOD_PAIRS + '[destination]\nsse_kms_key_id = "k"\n',
        "needs --sse aws:kms",
    ),
}


@pytest.mark.parametrize("command", ["send", "worker", "cluster-init"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_cluster_config_exits_2(command: str, case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, [command, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_missing_config_file_and_missing_option_exit_2(tmp_path: Path) -> None:
    missing = CliRunner().invoke(cli, ["worker", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    no_option = CliRunner().invoke(cli, ["send"])
    assert no_option.exit_code == 2 and "--config" in no_option.output
    status = CliRunner().invoke(cli, ["status", "--cluster"])
    assert status.exit_code == 2 and "--cluster needs --config" in status.stderr


def test_the_lambda_reads_its_settings_from_the_environment(tmp_path: Path) -> None:
    config = config_from_environment(
        {
            "LONGBOW_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/jobs",
            "LONGBOW_TABLE": "jobs-table",
            "LONGBOW_PAIRS": '[{"src": "s3://a/x/", "dst": "s3://b/y/"}]',
            "LONGBOW_CREDENTIALS_PARAMETER": "/longbow/keys",
            "LONGBOW_CREDENTIALS_SIDE": "source",
            "LONGBOW_DELETE_REMOVED": "true",
            "LONGBOW_VISIBILITY_TIMEOUT": "900",
            "LONGBOW_DST_ENDPOINT_URL": "https://s3.cn-north-1.amazonaws.com.cn",
            "LONGBOW_DST_PATH_STYLE": "1",
            "LONGBOW_PART_SIZE": "16MiB",
            "LONGBOW_WORKERS": "8",
        }
    )
    cluster = config.cluster
    assert cluster.queue_url == "https://sqs.us-east-1.amazonaws.com/1/jobs"
    assert cluster.table == "jobs-table" and cluster.visibility_timeout == 900
    assert cluster.delete_removed is True
    assert cluster.credentials_side is CredentialsSide.SOURCE
    assert config.destination.endpoint_url == "https://s3.cn-north-1.amazonaws.com.cn"
    assert config.destination.path_style is True
    assert config.transfer.part_size == 16 * MiB and config.transfer.workers == 8
    assert [(p.src, p.dst) for p in config.pairs] == [("s3://a/x/", "s3://b/y/")]

    # A config file, with the environment overriding it.
    path = tmp_path / "cluster.toml"
    path.write_text(GOOD_CLUSTER + GOOD_PAIRS)
    config = config_from_environment(
        {"LONGBOW_CONFIG": str(path), "LONGBOW_QUEUE_URL": "https://q/other"}
    )
    assert config.cluster.queue_url == "https://q/other" and config.cluster.queue_name is None
    assert config.cluster.table == "longbow-jobs"

    with pytest.raises(ConfigError, match="LONGBOW_VISIBILITY_TIMEOUT"):
        config_from_environment({"LONGBOW_CONFIG": str(path), "LONGBOW_VISIBILITY_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="names no queue"):
        config_from_environment({"LONGBOW_PAIRS": "[]"})
