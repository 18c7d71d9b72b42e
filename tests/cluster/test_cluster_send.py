"""`longbow send`: dry runs, no duplicate work when sent again, duplicate deliveries that do
nothing, and every SendMessageBatch entry checked."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.inventory import CURRENT_FIELDS, InventoryRow, publish_inventory
from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli
from s3longbow.cluster.dynamodb import ClaimOutcome, JobTable
from s3longbow.cluster.messages import JobSpec, encode_jobs
from s3longbow.cluster.sqs import MessageQueue, SendFailed
from s3longbow.config import MiB
from s3longbow.model import Job, JobResult, JobState, ObjectInfo

from ..conftest import new_bucket
from .conftest import DST_PREFIX, SRC_PREFIX, Cluster
from .test_cluster_events import record, s3_event


def test_dry_run_counts_and_changes_nothing(cluster: Cluster) -> None:
    for i in range(4):
        cluster.src.put(f"{SRC_PREFIX}f{i}", os.urandom(1000))
    cluster.dst.put(f"{DST_PREFIX}f0", cluster.src.get(f"{SRC_PREFIX}f0"))
    result = CliRunner().invoke(
        cli, ["send", "--config", str(cluster.config_path), "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["queued"] == {"objects": 3, "bytes": 3000}
    assert report["already_present"]["objects"] == 1
    assert report["messages_sent"] == 0
    assert cluster.depth() == 0 and cluster.items() == []


def test_a_dry_run_estimates_the_workers_copy(cluster: Cluster) -> None:
    for i in range(4):
        cluster.src.put(f"{SRC_PREFIX}f{i}", os.urandom(1000))
    cluster.src.put(f"{SRC_PREFIX}big", os.urandom(6 * MiB))  # two parts of 5 MiB
    cluster.dst.put(f"{DST_PREFIX}f0", cluster.src.get(f"{SRC_PREFIX}f0"))
    prices = cluster.root / "prices.toml"
    prices.write_text(
        'date = "2024-06-30"\n[regions]\nus-east-1 = { currency = "USD", write_requests = 5, '
        "read_requests = 0.4, internet_out = 90, inter_region_out = 20 }\n"
    )

    def dry_run(*flags: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            cli, ["send", "--config", str(cluster.config_path), "--dry-run", "--json", *flags]
        )
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout)["estimate"])

    estimate = dry_run()
    requests = estimate["requests"]
    assert requests["source"]["LIST"] >= 1 and requests["destination"]["LIST"] >= 1
    assert {k: n for k, n in requests["source"].items() if k != "LIST"} == {"HEAD": 1, "GET": 5}
    assert {k: n for k, n in requests["destination"].items() if k != "LIST"} == {
        "HEAD": 1,
        "PUT": 3,
        "CreateMultipartUpload": 1,
        "UploadPart": 2,
        "CompleteMultipartUpload": 1,
    }
    assert estimate["bytes"]["total"] == 3000 + 6 * MiB
    assert estimate["duration"]["seconds"] > 0
    assert estimate["cost"]["applicable"] is False  # SeaweedFS is not AWS
    assert cluster.depth() == 0 and cluster.items() == []

    priced = dry_run("--price-table", str(prices))["cost"]
    assert priced["applicable"] is True and priced["price_table"]["date"] == "2024-06-30"
    assert set(priced["by_currency"]) == {"USD"}  # one region: no transfer charge
    assert [i["amount"] for i in priced["items"] if i["unit"] == "GB"] == [0.0]


def test_sending_again_adds_only_new_objects_and_duplicates_do_nothing(
    cluster: Cluster,
) -> None:
    data = {f"s{i}": os.urandom(5000 + i) for i in range(5)}
    data["big"] = os.urandom(6 * MiB)
    for key, body in data.items():
        cluster.src.put(SRC_PREFIX + key, body)

    first = cluster.send()
    assert (first.objects_queued, first.objects_already_queued) == (6, 0)
    again = cluster.send()  # nothing ran yet: every job is still pending
    assert again.objects_queued == 0 and again.messages_sent == 0
    assert again.objects_already_queued == 6
    forced = cluster.send(requeue=True)  # duplicates on purpose: the workers skip them
    assert forced.objects_queued == 6
    for key in ("n1", "n2"):
        data[key] = os.urandom(100)
        cluster.src.put(SRC_PREFIX + key, data[key])
    third = cluster.send()
    assert (third.objects_queued, third.objects_already_queued) == (2, 6)

    report = cluster.drain()
    assert report.objects_copied == len(data)
    assert report.counters["jobs_duplicate"] == 6  # the requeued copies did nothing
    assert cluster.copy_digests() == cluster.source_digests()

    # The same jobs delivered again: a job message and an S3 event for objects already
    # copied. Nothing is copied again, and both messages are deleted.
    heads = {
        k: cluster.src.client.head_object(Bucket=cluster.src.name, Key=SRC_PREFIX + k)
        for k in ("s0", "s1")
    }
    spec = JobSpec(
        src_bucket=cluster.src.name,
        src_key=SRC_PREFIX + "s0",
        dst_bucket=cluster.dst.name,
        dst_key=DST_PREFIX + "s0",
        size=len(data["s0"]),
        etag=heads["s0"]["ETag"].strip('"'),
    )
    cluster.send_raw(encode_jobs(cluster.src.name, cluster.dst.name, [spec]))
    cluster.send_raw(
        s3_event(
            record(
                cluster.src.name,
                SRC_PREFIX + "s1",
                size=len(data["s1"]),
                etag=heads["s1"]["ETag"],
            )
        )
    )
    dup = cluster.drain()
    assert dup.counters["jobs_duplicate"] == 2
    assert dup.objects_copied == 0 and dup.bytes_sent == 0
    assert dup.counters["messages_deleted"] == 2
    for key in ("s0", "s1"):
        item = cluster.job(key)
        assert item is not None and item.state is JobState.DONE and item.starts == 1
    assert cluster.depth() == 0 and cluster.dead_letters() == []

    last = cluster.send()
    assert last.objects_queued == 0 and last.objects_same == len(data)


def test_a_deleted_copy_is_queued_again(cluster: Cluster) -> None:
    cluster.src.put(SRC_PREFIX + "a", b"alpha")
    cluster.send()
    cluster.drain()
    cluster.dst.client.delete_object(Bucket=cluster.dst.name, Key=DST_PREFIX + "a")
    report = cluster.send()  # done in the table, missing at the destination: reopened
    assert report.objects_queued == 1
    cluster.drain()
    assert cluster.dst.get(DST_PREFIX + "a") == b"alpha"
    item = cluster.job("a")
    assert item is not None and item.state is JobState.DONE and item.starts == 2


class FlakySqs:
    """An SQS client whose SendMessageBatch fails chosen entries, once or for ever."""

    def __init__(self, failures: list[dict[str, dict[str, Any]]]) -> None:
        self.failures = failures  # per call: entry id -> the Failed entry to report
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        failing = self.failures[len(self.calls)] if len(self.calls) < len(self.failures) else {}
        self.calls.append([e["Id"] for e in Entries])
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": f"m-{e['Id']}"}
                for e in Entries
                if e["Id"] not in failing
            ],
            "Failed": [
                {"Id": i, **f} for i, f in failing.items() if i in [e["Id"] for e in Entries]
            ],
        }


def test_failed_batch_entries_are_sent_again_never_dropped() -> None:
    busy = {"Code": "InternalError", "Message": "try again", "SenderFault": False}
    client = FlakySqs([{"1": busy, "3": busy}, {"3": busy}])
    queue = MessageQueue(client, "https://queue", sleep=lambda s: None)
    ids = queue.send_batch([f"body-{i}" for i in range(5)])
    assert ids == [f"m-{i}" for i in range(5)]
    assert client.calls == [["0", "1", "2", "3", "4"], ["1", "3"], ["3"]]


def test_a_refused_batch_entry_stops_the_sender_with_the_reason() -> None:
    refused = {"Code": "InvalidMessageContents", "Message": "bad", "SenderFault": True}
    queue = MessageQueue(FlakySqs([{"2": refused}]), "https://queue", sleep=lambda s: None)
    with pytest.raises(SendFailed) as caught:
        queue.send_batch(["a", "b", "c"])
    assert caught.value.unsent == [2]
    assert "InvalidMessageContents" in caught.value.message


def test_entries_that_keep_failing_are_reported_unsent() -> None:
    busy = {"Code": "InternalError", "Message": "down", "SenderFault": False}
    queue = MessageQueue(FlakySqs([{"0": busy}] * 20), "https://queue", sleep=lambda s: None)
    with pytest.raises(SendFailed) as caught:
        queue.send_batch(["a", "b"])
    assert caught.value.unsent == [0]


def test_pairs_can_come_from_an_ssm_parameter(cluster: Cluster) -> None:
    name = f"/longbow/{cluster.name}/pairs"
    pairs = [{"src": f"s3://{cluster.src.name}/{SRC_PREFIX}", "dst": f"s3://{cluster.dst.name}/"}]
    cluster.ssm.put_parameter(Name=name, Type="String", Value=json.dumps(pairs))
    cluster.write_config(pairs_parameter=name)
    cluster.src.put(SRC_PREFIX + "one", b"1")
    result = CliRunner().invoke(
        cli, ["send", "--config", str(cluster.config_path), "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["queued"]["objects"] == 1

    cluster.ssm.put_parameter(Name=name, Type="String", Value='[{"src": "/tmp"}]', Overwrite=True)
    bad = CliRunner().invoke(cli, ["send", "--config", str(cluster.config_path)])
    assert bad.exit_code == 2 and "pair 1 must have exactly" in bad.stderr


def test_a_pair_of_the_ssm_parameter_names_its_inventory_report(
    cluster: Cluster, seaweed_src: LocalServer
) -> None:
    for key in ("listed", "not-in-report"):
        cluster.src.put(SRC_PREFIX + key, b"x")
    inventory = new_bucket(seaweed_src, "inv")
    rows = [InventoryRow(SRC_PREFIX + "listed", 1, hashlib.md5(b"x").hexdigest())]
    report = publish_inventory(
        inventory.client, inventory.name, rows, source_bucket=cluster.src.name
    )
    name = f"/longbow/{cluster.name}/pairs"
    pair = {
        "src": f"s3://{cluster.src.name}/{SRC_PREFIX}",
        "dst": f"s3://{cluster.dst.name}/",
        "src_inventory": report.url,
    }
    cluster.ssm.put_parameter(Name=name, Type="String", Value=json.dumps([pair]))
    cluster.write_config(pairs_parameter=name)
    result = CliRunner().invoke(
        cli, ["send", "--config", str(cluster.config_path), "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    # The report, not a listing: the object written outside it is not queued.
    assert json.loads(result.stdout)["queued"]["objects"] == 1


def test_send_queues_only_what_the_filters_take(cluster: Cluster) -> None:
    data = {"a.jpg": b"a" * 100, "b.tmp": b"t", "big.jpg": os.urandom(5000), "logs/x": b"x"}
    for key, body in data.items():
        cluster.src.put(SRC_PREFIX + key, body)
    cluster.write_config(transfer={"exclude": ["*.tmp"], "max_size": "2K"})

    def dry_run(*flags: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            cli, ["send", "--config", str(cluster.config_path), "--dry-run", "--json", *flags]
        )
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    report = dry_run()
    assert report["queued"]["objects"] == 2 and report["filtered"] == 2
    # A flag replaces the file's key of the same name: logs/ instead of *.tmp.
    report = dry_run("--exclude", "logs/")
    assert report["queued"] == {"objects": 2, "bytes": 101} and report["filtered"] == 2

    sent = cluster.send()
    assert sent.objects_queued == 2 and sent.objects_filtered == 2
    assert cluster.job("b.tmp") is None and cluster.job("big.jpg") is None
    assert cluster.drain().objects_copied == 2
    assert sorted(cluster.copy_digests()) == ["a.jpg", "logs/x"]

    cluster.write_config(transfer={"include": "a{b"})
    bad = CliRunner().invoke(cli, ["send", "--config", str(cluster.config_path)])
    assert bad.exit_code == 2 and "a '{' without its '}'" in bad.stderr


def test_job_table_ledger_and_compare_and_set(cluster: Cluster) -> None:
    """The table as the engine uses it: upload ledger writes, source re-pinning, and state
    changes that only the claim's owner can make."""
    table = JobTable(cluster.dynamodb, cluster.table)
    spec = JobSpec(cluster.src.name, "data/k", cluster.dst.name, "copy/k", 10, "e1")
    outcome, item = table.claim(
        spec, None, message_id="m1", owner="w:1", worker="w", lease_seconds=30
    )
    assert outcome is ClaimOutcome.RUN and item is not None and item.starts == 1
    job = Job(
        id=spec.id,
        run_id=0,
        pair=0,
        src_key="data/k",
        dst_key="copy/k",
        size=10,
        etag="e1",
        lease_owner="w:1",
    )
    assert table.set_upload(job, "upload-1", 5 * MiB, "e1")
    table.record_part(job, "upload-1", 1, 5 * MiB, "p1")
    table.record_part(job, "upload-2", 1, 5 * MiB, "other upload")
    assert table.recorded_parts(job, "upload-1") == {1: (5 * MiB, "p1")}
    assert table.update_source(job, ObjectInfo("data/k", 12, "e2", 200.0))
    item = table.get(spec.id)
    assert item is not None and (item.size, item.etag, item.restarts) == (12, "e2", 1)
    assert item.upload_id is None and item.source_id == "12:e2:"

    # Another delivery of the same message takes the job over; the old owner is locked out.
    outcome, item = table.claim(
        spec, item, message_id="m1", owner="w:2", worker="w", lease_seconds=30
    )
    assert outcome is ClaimOutcome.RUN and item is not None and item.starts == 2
    assert not table.finish(job, JobState.DONE, None, JobResult(bytes_sent=12))
    assert not table.release(job, "late", counted=True, failed=False)
    assert not table.set_upload(job, "upload-3", 5 * MiB, "e2")
    # A different message sees a live lease: busy.
    assert (
        table.claim(
            spec, table.get(spec.id), message_id="m2", owner="w:3", worker="w", lease_seconds=30
        )[0]
        is ClaimOutcome.BUSY
    )
    newer = replace(job, lease_owner="w:2")
    assert table.finish(newer, JobState.DONE, None, JobResult(bytes_sent=12, verified=True))
    item = table.get(spec.id)
    assert item is not None and item.state is JobState.DONE and item.bytes_sent == 12
    # Finished: a duplicate delivery cannot move it backwards.
    assert (
        table.claim(spec, item, message_id="m3", owner="w:4", worker="w", lease_seconds=30)[0]
        is ClaimOutcome.DONE_ALREADY
    )
    assert not table.release(newer, "again", counted=True, failed=True)
    assert table.get(spec.id).state is JobState.DONE  # type: ignore[union-attr]


def test_send_from_an_inventory_report_and_a_source_gone_since(
    cluster: Cluster, seaweed_src: LocalServer
) -> None:
    data = {"a": os.urandom(100), "b": os.urandom(6 * MiB), "gone": b"deleted after"}
    for key, body in data.items():
        cluster.src.put(SRC_PREFIX + key, body)
    cluster.dst.put(DST_PREFIX + "a", data["a"])
    inventory = new_bucket(seaweed_src, "inv")
    # Each written in one PUT: its ETag is the MD5 of its bytes.
    rows = [
        InventoryRow(SRC_PREFIX + k, len(v), hashlib.md5(v).hexdigest()) for k, v in data.items()
    ]
    report = publish_inventory(
        inventory.client, inventory.name, rows, source_bucket=cluster.src.name, files=2
    )
    cluster.src.put(SRC_PREFIX + "after", b"written after the report")
    cluster.src.client.delete_object(Bucket=cluster.src.name, Key=SRC_PREFIX + "gone")

    result = CliRunner().invoke(
        cli,
        ["send", "--config", str(cluster.config_path), "--src-inventory", report.url, "--json"],
    )

    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["queued"]["objects"] == 2 and sent["already_present"]["objects"] == 1
    cluster.drain()
    assert cluster.copy_digests() == {
        k: hashlib.md5(v).hexdigest() for k, v in data.items() if k in ("a", "b")
    }
    gone = cluster.job("gone")
    assert gone is not None and gone.state is JobState.SKIPPED
    assert gone.reason is not None and gone.reason.startswith("source gone since inventory")
    assert cluster.job("after") is None


def test_a_report_without_etags_skips_a_source_gone_since(
    cluster: Cluster, seaweed_src: LocalServer
) -> None:
    """Without the ETag column a job message names no ETag, so the worker asks the source
    first: a source deleted since the report is skipped as gone, as with ETags."""
    data = {"kept": os.urandom(100), "gone": b"deleted after the report"}
    for key, body in data.items():
        cluster.src.put(SRC_PREFIX + key, body)
    inventory = new_bucket(seaweed_src, "inv-no-etag")
    report = publish_inventory(
        inventory.client,
        inventory.name,
        [InventoryRow(SRC_PREFIX + k, len(v)) for k, v in data.items()],
        source_bucket=cluster.src.name,
        fields=[f for f in CURRENT_FIELDS if f != "ETag"],
    )
    cluster.src.client.delete_object(Bucket=cluster.src.name, Key=SRC_PREFIX + "gone")

    result = CliRunner().invoke(
        cli,
        ["send", "--config", str(cluster.config_path), "--src-inventory", report.url, "--json"],
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["queued"]["objects"] == 2
    cluster.drain()
    assert cluster.copy_digests() == {"kept": hashlib.md5(data["kept"]).hexdigest()}
    gone = cluster.job("gone")
    assert gone is not None and gone.state is JobState.SKIPPED
    assert gone.reason is not None and gone.reason.startswith("source gone since inventory")
    assert cluster.job("kept").state is JobState.DONE  # type: ignore[union-attr]


def prometheus_values(text: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text exposition, by name."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            values[name] = float(value)
    return values


def test_send_keeps_its_counts_in_a_metrics_file(cluster: Cluster) -> None:
    """With --metrics-file, a send's counts are kept for node_exporter."""
    for i in range(5):
        cluster.src.put(f"{SRC_PREFIX}m{i}", os.urandom(700))
    cluster.dst.put(f"{DST_PREFIX}m0", cluster.src.get(f"{SRC_PREFIX}m0"))
    prom = cluster.root / "send.prom"
    args = ["send", "--config", str(cluster.config_path), "--json", "--metrics-file", str(prom)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    values = prometheus_values(prom.read_text())
    assert values["longbow_objects_queued_total"] == report["queued"]["objects"] == 4
    assert values["longbow_bytes_queued_total"] == 4 * 700
    assert values["longbow_messages_sent_total"] == report["messages_sent"] >= 1
    assert values["longbow_objects_already_queued_total"] == 0
    assert values["longbow_objects_already_present_total"] == 1
    assert values["longbow_bytes_already_present_total"] == 700

    # Sent again: nothing new is queued, the four jobs are pending already.
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    values = prometheus_values(prom.read_text())
    assert values["longbow_objects_queued_total"] == 0
    assert values["longbow_objects_already_queued_total"] == 4


def test_a_metrics_file_send_cannot_write_stops_it_before_anything_is_queued(
    cluster: Cluster,
) -> None:
    cluster.src.put(f"{SRC_PREFIX}x", b"x")
    args = ["send", "--config", str(cluster.config_path)]
    result = CliRunner().invoke(cli, [*args, "--metrics-file", str(cluster.root / "no/dir/f.prom")])
    assert result.exit_code == 2  # a configuration error
    assert "f.prom" in result.output
    assert cluster.depth() == 0 and cluster.items() == []
