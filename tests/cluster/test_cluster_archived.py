"""An archived source in cluster mode: the worker records it in the job table as archived (not
failed, its message deleted, nothing on the dead-letter queue); with restore_days its restore
is asked for, and a later send and worker copy it once readable. The source bucket lives on
moto here (GLACIER objects whose reads it refuses until restored)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from s3longbow.cli.app import cli
from s3longbow.model import JobState

from .conftest import DST_PREFIX, SRC_PREFIX, Cluster


def archived_source(cluster: Cluster) -> None:
    """The pair's source bucket on moto: one GLACIER object, one STANDARD."""
    cluster.src_endpoint_url = cluster.moto.endpoint.url
    client = cluster.moto.endpoint.client()
    client.create_bucket(Bucket=cluster.src.name)
    client.put_object(
        Bucket=cluster.src.name, Key=SRC_PREFIX + "cold", Body=b"frozen", StorageClass="GLACIER"
    )
    client.put_object(Bucket=cluster.src.name, Key=SRC_PREFIX + "warm", Body=b"readable")


def test_an_archived_source_is_recorded_as_archived_not_failed(cluster: Cluster) -> None:
    archived_source(cluster)
    cluster.write_config()
    assert cluster.send().objects_queued == 2
    report = cluster.drain()
    assert report.objects_failed == 0

    cold, warm = cluster.job("cold"), cluster.job("warm")
    assert warm is not None and warm.state is JobState.DONE
    assert cold is not None and cold.state is JobState.ARCHIVED
    assert cold.reason == "archived: needs a restore before it can be read"
    assert cold.restore_requested is None and cold.attempts == 0
    assert cluster.depth() == 0 and cluster.depth(cluster.dlq_url) == 0
    assert cluster.dst.keys(DST_PREFIX) == [DST_PREFIX + "warm"]

    # Asked to restore: a later send queues it again, the worker asks for its restore.
    cluster.write_config(transfer={"restore_days": 1})
    assert cluster.send().objects_queued == 1
    cluster.drain()
    cold = cluster.job("cold")
    assert cold is not None and cold.state is JobState.ARCHIVED
    assert cold.reason == "archived (GLACIER): restore requested (Standard, 1 day(s))"
    assert cold.restore_requested is not None

    # Restored (moto restores at once): the next send and worker copy it.
    assert cluster.send().objects_queued == 1
    cluster.drain()
    cold = cluster.job("cold")
    assert cold is not None and cold.state is JobState.DONE
    assert cold.restore_requested is None  # no restore waited for any more
    assert cluster.dst.get(DST_PREFIX + "cold") == b"frozen"
    assert cluster.depth() == 0 and cluster.depth(cluster.dlq_url) == 0


def test_a_dry_run_send_leaves_archived_sources_out_of_its_estimate(cluster: Cluster) -> None:
    archived_source(cluster)
    cluster.write_config()
    result = CliRunner().invoke(
        cli, ["send", "--config", str(cluster.config_path), "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["queued"]["objects"] == 2  # both would be queued: a worker asks for a restore
    estimate = sent["estimate"]
    assert estimate["bytes"]["total"] == len(b"readable")  # the cold one is not read
    assert estimate["requests"]["source"]["GET"] == 1
