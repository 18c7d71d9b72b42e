"""A cluster deployment per test: fresh queue, dead-letter queue and job table on the moto
server, fresh SeaweedFS buckets as source and destination, and a config file naming them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.servers import LocalServer
from s3longbow.cluster.aws import ControlPlane
from s3longbow.cluster.dynamodb import JOB_SK, JobItem
from s3longbow.cluster.messages import job_id
from s3longbow.cluster.sender import SendReport, send_jobs
from s3longbow.cluster.service import WorkerReport, init_cluster, run_worker
from s3longbow.cluster.settings import ClusterConfig
from s3longbow.loader import load_cluster

from ..conftest import Bucket, cli_env

SRC_PREFIX = "data/"
DST_PREFIX = "copy/"


@dataclass
class Cluster:
    """One deployment: its names, clients and config file."""

    moto: LocalServer
    src: Bucket
    dst: Bucket
    root: Path
    name: str
    sqs: Any
    dynamodb: Any
    ssm: Any
    settings: dict[str, Any] = field(default_factory=dict)
    transfer: dict[str, Any] = field(default_factory=dict)
    queue_url: str = ""
    dlq_url: str = ""
    src_endpoint_url: str | None = None
    dst_endpoint_url: str | None = None

    @property
    def table(self) -> str:
        return f"jobs-{self.name}"

    @property
    def credentials_parameter(self) -> str:
        return f"/longbow/{self.name}/destination"

    def write_config(self, transfer: dict[str, Any] | None = None, **cluster: Any) -> Path:
        """Write the config file; keyword arguments change [cluster] settings, `transfer`
        the top-level transfer settings."""
        self.settings.update(cluster)
        self.transfer.update(transfer or {})
        src_url = self.src_endpoint_url or self.src.endpoint.url
        dst_url = self.dst_endpoint_url or self.dst.endpoint.url
        table = {
            "region": "us-east-1",
            "endpoint_url": self.moto.endpoint.url,
            "queue_name": f"queue-{self.name}",
            "table": self.table,
            "visibility_timeout": 30,
            "max_receive_count": 3,
            "receive_wait_seconds": 1,
            "metrics_interval": 1,
            "retry_base_seconds": 1,
            "retry_max_seconds": 2,
            "objects_per_message": 10,
            "credentials_parameter": self.credentials_parameter,
            "credentials_side": "destination",
            **self.settings,
        }
        top = {
            "workers": 4,
            "part_threads": 2,
            "part_size": "5MiB",
            "resumable_threshold": "5MiB",
            "memory_limit": "64MiB",
            **self.transfer,
        }
        lines = [
            *(f"{k} = {json.dumps(v)}" for k, v in top.items()),
            "",
            "[cluster]",
            *(f"{k} = {json.dumps(v)}" for k, v in table.items() if v is not None),
            "",
            "[source]",
            f'endpoint_url = "{src_url}"',
            'region = "us-east-1"',
            "path_style = true",
            "",
            "[destination]",
            f'endpoint_url = "{dst_url}"',
            'region = "us-east-1"',
            "path_style = true",
            "",
        ]
        if "pairs_parameter" not in self.settings:
            lines += [
                "[[pairs]]",
                f'src = "s3://{self.src.name}/{SRC_PREFIX}"',
                f'dst = "s3://{self.dst.name}/{DST_PREFIX}"',
            ]
        path = self.root / "cluster.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def config_path(self) -> Path:
        return self.root / "cluster.toml"

    def config(self) -> ClusterConfig:
        """The config as the commands load it (static source keys from the environment)."""
        return load_cluster(self.config_path, os.environ)

    def control(self) -> ControlPlane:
        return ControlPlane(self.config().cluster)

    def env(self) -> dict[str, str]:
        """Environment of a subprocess: control-plane keys for moto, source keys; the
        destination's keys come from the SSM credentials parameter."""
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "moto",
            "AWS_SECRET_ACCESS_KEY": "moto",
            **cli_env(self.src.endpoint, None),
        }

    def longbow(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "s3longbow", *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.longbow(*args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def job(self, key: str) -> JobItem | None:
        """The job item of source key `key` (relative to the source prefix)."""
        pk = job_id(self.src.name, SRC_PREFIX + key, self.dst.name, DST_PREFIX + key)
        resp = self.dynamodb.get_item(
            TableName=self.table,
            Key={"pk": {"S": pk}, "sk": {"S": JOB_SK}},
            ConsistentRead=True,
        )
        return JobItem.from_item(resp["Item"]) if "Item" in resp else None

    def items(self, kind: str | None = None) -> list[JobItem]:
        """Every job item of the table (parts excluded)."""
        out = []
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=self.table)
        for page in pages:
            for raw in page.get("Items", ()):
                if raw["sk"]["S"] == JOB_SK:
                    item = JobItem.from_item(raw)
                    if kind is None or item.kind == kind:
                        out.append(item)
        return out

    def parts(self, key: str) -> int:
        pk = job_id(self.src.name, SRC_PREFIX + key, self.dst.name, DST_PREFIX + key)
        resp = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :p)",
            ExpressionAttributeNames={"#pk": "pk", "#sk": "sk"},
            ExpressionAttributeValues={":pk": {"S": pk}, ":p": {"S": "part#"}},
            ConsistentRead=True,
        )
        return len(resp.get("Items", ()))

    def depth(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def send_raw(self, body: str) -> str:
        return str(self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"])

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message on the dead-letter queue (received and left there)."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(20):
            resp = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
            )
            messages = [m for m in resp.get("Messages", ()) if m["MessageId"] not in seen]
            if not messages:
                break
            for m in messages:
                seen.add(m["MessageId"])
                out.append(m)
        return out

    def send(self, **options: Any) -> SendReport:
        """`longbow send`, in this process."""
        control = self.control()
        try:
            return send_jobs(self.config(), control, **options)
        finally:
            control.close()

    def drain(self) -> WorkerReport:
        """`longbow worker --exit-when-idle`, in this process."""
        control = self.control()
        try:
            report = run_worker(
                self.config(), stop=threading.Event(), exit_when_idle=True, control=control
            )
        finally:
            control.close()
        assert report.fatal is None, report.fatal
        return report

    def source_digests(self) -> dict[str, str]:
        return self.src.digests(SRC_PREFIX)

    def copy_digests(self) -> dict[str, str]:
        return self.dst.digests(DST_PREFIX)


@pytest.fixture()
def cluster(
    moto: LocalServer,
    src_bucket: Bucket,
    dst_bucket: Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    """A deployment created with `init_cluster`; the destination's keys live in SSM."""
    # The control plane (moto) takes any keys from the default chain; the source's keys come
    # from LONGBOW_SRC_*, the destination's from the SSM SecureString.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto")
    for name, value in cli_env(src_bucket.endpoint, None).items():
        monkeypatch.setenv(name, value)
    name = uuid.uuid4().hex[:10]
    ep = moto.endpoint
    c = Cluster(
        moto=moto,
        src=src_bucket,
        dst=dst_bucket,
        root=tmp_path,
        name=name,
        sqs=ep.client("sqs"),
        dynamodb=ep.client("dynamodb"),
        ssm=ep.client("ssm"),
    )
    c.ssm.put_parameter(
        Name=c.credentials_parameter,
        Type="SecureString",
        Value=json.dumps(
            {
                "access_key_id": dst_bucket.endpoint.access_key,
                "secret_access_key": dst_bucket.endpoint.secret_key,
            }
        ),
    )
    c.write_config()
    control = c.control()
    try:
        report = init_cluster(c.config(), control)
    finally:
        control.close()
    c.queue_url, c.dlq_url = report.queue_url, report.dead_letter_queue_url
    yield c
    for client in (c.sqs, c.dynamodb, c.ssm):
        client.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
