"""A worker whose destination refuses it: wrong keys in the SSM parameter, or a destination
bucket deleted after the jobs were queued. The worker stops at once with the reason (exit 3)
instead of failing every job, the jobs stay pending with their message on the queue, and a
worker started once the cause is fixed copies them all (shown for the deleted bucket)."""

from __future__ import annotations

import json

from s3longbow.model import JobState

from .conftest import Cluster

KEYS = [f"o{i}" for i in range(3)]


def queue_three(cluster: Cluster) -> None:
    for i, key in enumerate(KEYS):
        cluster.src.put(f"data/{key}", b"x" * (100 + i))
    assert cluster.send().objects_queued == len(KEYS)


def worker(cluster: Cluster) -> tuple[int, str]:
    done = cluster.run("worker", "--config", str(cluster.config_path), "--exit-when-idle")
    assert "Traceback" not in done.stderr
    return done.returncode, done.stderr


def assert_kept_for_later(cluster: Cluster) -> None:
    items = cluster.items()
    assert sorted(i.src_key for i in items) == [f"data/{k}" for k in KEYS]
    assert all(i.state is JobState.PENDING for i in items)
    assert cluster.depth() == 1 and cluster.dead_letters() == []


def test_refused_destination_keys_stop_the_worker_and_keep_the_jobs(cluster: Cluster) -> None:
    queue_three(cluster)
    cluster.ssm.put_parameter(
        Name=cluster.credentials_parameter,
        Type="SecureString",
        Value=json.dumps({"access_key_id": "AKIAREFUSED", "secret_access_key": "refused-secret"}),
        Overwrite=True,
    )

    code, err = worker(cluster)

    assert code == 3, err
    assert f"access to bucket '{cluster.dst.name}'" in err and "was denied" in err
    assert "check the credentials" in err and "refused-secret" not in err
    assert_kept_for_later(cluster)  # a worker with the right keys takes them (next test)


def test_a_deleted_destination_bucket_stops_the_worker_and_keeps_the_jobs(
    cluster: Cluster,
) -> None:
    queue_three(cluster)
    cluster.dst.client.delete_bucket(Bucket=cluster.dst.name)

    code, err = worker(cluster)

    assert code == 3, err
    assert f"bucket '{cluster.dst.name}' does not exist at {cluster.dst.endpoint.url}" in err
    assert "or create it" in err
    assert_kept_for_later(cluster)
    cluster.dst.client.create_bucket(Bucket=cluster.dst.name)
    code, err = worker(cluster)
    assert code == 0, err
    assert sorted(cluster.copy_digests()) == KEYS
