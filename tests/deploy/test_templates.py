"""Assertions on the synthesised templates of the three variants: queue, table, workers,
scaling, Lambda, alarms, dashboard, logs and IAM."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from aws_cdk.assertions import Match
from longbow_deploy import contract
from longbow_deploy.settings import parse_size

from .templates import Synthesized, render

# Actions on the data the deployment copies or records: none of them may name every resource.
DATA_PLANE = re.compile(r"^(s3|sqs|dynamodb|kms|logs):|^ssm:(Get|Describe)")


def one(variant: Synthesized, type_name: str, **where: Any) -> tuple[str, dict[str, Any]]:
    """The only resource of a type whose properties include `where`."""
    found = [
        (k, v)
        for k, v in variant.resources(type_name).items()
        if all(v["Properties"].get(p) == value for p, value in where.items())
    ]
    assert len(found) == 1, f"{len(found)} {type_name} match {where} in {variant.name}"
    return found[0]


def logical_id(variant: Synthesized, type_name: str, **where: Any) -> str:
    return one(variant, type_name, **where)[0]


# -- synthesis ----------------------------------------------------------------------------------


def test_each_variant_synthesises_with_its_assets(variant: Synthesized) -> None:
    assert variant.path.is_file()
    assets = json.loads(
        variant.path.with_name(variant.path.name.replace(".template", ".assets")).read_text()
    )
    files = [f["source"]["path"] for f in assets["files"].values()]
    # The runtime layer is shared by every function; EC2 variants also upload the wheel.
    assert sum(1 for p in files if p.endswith(".whl")) == (1 if variant.settings.ec2.enabled else 0)
    variant.template.resource_count_is("AWS::Lambda::LayerVersion", 1)
    outputs = variant.data["Outputs"]
    assert {"QueueUrl", "DeadLetterQueueUrl", "TableName", "SenderFunction"} <= set(outputs)


# -- queue --------------------------------------------------------------------------------------


def test_queue_redrives_to_its_dead_letter_queue_after_the_configured_receives(
    variant: Synthesized,
) -> None:
    s = variant.settings
    dlq_id = logical_id(variant, "AWS::SQS::Queue", QueueName=s.dead_letter_queue_name)
    variant.template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": s.queue_name,
            "VisibilityTimeout": s.queue.visibility_timeout,
            "MessageRetentionPeriod": s.queue.retention_days * 86400,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                "maxReceiveCount": s.queue.max_receive_count,
            },
        },
    )
    variant.template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": s.dead_letter_queue_name,
            "MessageRetentionPeriod": 14 * 86400,
            "SqsManagedSseEnabled": True,
        },
    )
    # Both queues refuse requests without TLS.
    policies = variant.resources("AWS::SQS::QueuePolicy").values()
    denied = [
        st
        for p in policies
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        if st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denied) == 2


def test_queue_visibility_covers_the_lambda_workers_timeout(lambda_variants: Synthesized) -> None:
    _, queue = one(
        lambda_variants, "AWS::SQS::Queue", QueueName=lambda_variants.settings.queue_name
    )
    _, function = one(
        lambda_variants, "AWS::Lambda::Function", Handler=contract.LAMBDA_WORKER_HANDLER
    )
    assert function["Properties"]["Timeout"] <= queue["Properties"]["VisibilityTimeout"]


# -- job table ----------------------------------------------------------------------------------


class _FakeDynamoDB:
    """Records what the runtime's `longbow cluster-init` asks DynamoDB to create."""

    def __init__(self) -> None:
        self.created: dict[str, Any] = {}
        self.ttl: dict[str, Any] = {}

    def describe_table(self, TableName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        from botocore.exceptions import ClientError

        if not self.created:
            error = {"Error": {"Code": "ResourceNotFoundException", "Message": "no table"}}
            raise ClientError(error, "DescribeTable")
        return {"Table": {"TableStatus": "ACTIVE", "KeySchema": self.created["KeySchema"]}}

    def create_table(self, **kwargs: Any) -> None:
        self.created = kwargs

    def update_time_to_live(self, **kwargs: Any) -> None:
        self.ttl = kwargs


def test_table_matches_what_the_runtime_creates(variant: Synthesized) -> None:
    from s3longbow.cluster.provision import create_table

    fake = _FakeDynamoDB()
    create_table(fake, "t", wait_seconds=1)
    runtime = fake.created
    table_id, table = one(variant, "AWS::DynamoDB::Table", TableName=variant.settings.table_name)
    props = table["Properties"]
    assert props["BillingMode"] == runtime["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == runtime["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(
        runtime["AttributeDefinitions"], key=str
    )
    (index,) = props["GlobalSecondaryIndexes"]
    (expected,) = runtime["GlobalSecondaryIndexes"]
    assert index["IndexName"] == expected["IndexName"] == "by-state"
    assert index["KeySchema"] == expected["KeySchema"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert sorted(index["Projection"]["NonKeyAttributes"]) == sorted(
        expected["Projection"]["NonKeyAttributes"]
    )
    assert props["TimeToLiveSpecification"] == fake.ttl["TimeToLiveSpecification"]
    assert props["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": variant.settings.table.point_in_time_recovery
    }
    expected_policy = "Retain" if variant.settings.retain_data else "Delete"
    assert variant.data["Resources"][table_id]["DeletionPolicy"] == expected_policy


# -- parameters ---------------------------------------------------------------------------------


def test_pairs_parameter_holds_the_pairs_and_keys_never_enter_the_template(
    variant: Synthesized,
) -> None:
    s = variant.settings
    variant.template.has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": s.pairs_parameter, "Type": "String", "Value": contract.pairs_json(s)},
    )
    variant.template.resource_count_is("AWS::SSM::Parameter", 1)
    text = json.dumps(variant.data)
    assert "secret_access_key" not in text
    assert "AKIA" not in text
    if s.parameters.credentials:
        # Referenced only: read rights on its ARN, nothing created.
        assert f":parameter{s.parameters.credentials}" in text


# -- EC2 workers --------------------------------------------------------------------------------


def test_launch_template_requires_imdsv2_on_current_amazon_linux(
    ec2_variants: Synthesized,
) -> None:
    (template,) = ec2_variants.resources("AWS::EC2::LaunchTemplate").values()
    data = template["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    image_parameter = data["ImageId"]["Ref"]
    arch = "arm64" if ec2_variants.settings.ec2.arm64 else "x86_64"
    assert ec2_variants.data["Parameters"][image_parameter]["Default"] == (
        f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
    )
    (volume,) = data["BlockDeviceMappings"]
    assert volume["Ebs"]["Encrypted"] is True


def test_user_data_installs_the_wheel_and_runs_the_worker_under_systemd(
    ec2_variants: Synthesized,
) -> None:
    (template,) = ec2_variants.resources("AWS::EC2::LaunchTemplate").values()
    script = render(template["Properties"]["LaunchTemplateData"]["UserData"])
    assert script.startswith("#!/bin/bash\nset -euxo pipefail\n")
    # TCP BBR, now and after a reboot.
    assert "net.ipv4.tcp_congestion_control = bbr" in script
    assert "net.core.default_qdisc = fq" in script
    assert "sysctl --system" in script
    # The wheel built from this repository, fetched from the asset bucket and installed.
    wheel = re.search(
        r"aws s3 cp '(s3://[^']+\.whl)' '(/opt/longbow/s3longbow-[^']+\.whl)'", script
    )
    assert wheel is not None
    assert f"/opt/longbow/venv/bin/pip install --quiet '{wheel.group(2)}'" in script
    # The config file the worker reads, and the service that runs it.
    assert f"cat > {contract.CONFIG_PATH} <<'LONGBOW_EOF'" in script
    assert (
        f"ExecStart=/opt/longbow/venv/bin/longbow worker --config {contract.CONFIG_PATH}" in script
    )
    assert "RestartPreventExitStatus=2" in script
    assert "systemctl enable --now longbow-worker.service" in script
    # Logs leave the instance: the agent ships the worker's, the metrics' and cloud-init's.
    assert "amazon-cloudwatch-agent-ctl -a fetch-config" in script
    for stream in ("worker.log", "metrics.log", "cloud-init-output.log"):
        assert stream in script
    ignore = ec2_variants.settings.transfer.ignore
    assert (f"/etc/longbow/{contract.IGNORE_FILE}" in script) == bool(ignore)


def test_user_data_config_names_the_deployed_queue_and_table(ec2_variants: Synthesized) -> None:
    (template,) = ec2_variants.resources("AWS::EC2::LaunchTemplate").values()
    refs: list[Any] = []

    def placeholder(intrinsic: Any) -> str:
        refs.append(intrinsic)
        return f"<ref{len(refs) - 1}>"

    script = render(template["Properties"]["LaunchTemplateData"]["UserData"], placeholder)
    config = script.split(f"cat > {contract.CONFIG_PATH} <<'LONGBOW_EOF'\n")[1].split(
        "\nLONGBOW_EOF"
    )[0]
    parsed = tomllib.loads(config)
    cluster = parsed["cluster"]
    s = ec2_variants.settings
    queue_id = logical_id(ec2_variants, "AWS::SQS::Queue", QueueName=s.queue_name)
    dlq_id = logical_id(ec2_variants, "AWS::SQS::Queue", QueueName=s.dead_letter_queue_name)
    table_id = logical_id(ec2_variants, "AWS::DynamoDB::Table", TableName=s.table_name)

    def ref_of(value: str) -> Any:
        return refs[int(value.removeprefix("<ref").removesuffix(">"))]

    assert ref_of(cluster["queue_url"]) == {"Ref": queue_id}
    assert ref_of(cluster["dead_letter_queue_url"]) == {"Ref": dlq_id}
    assert ref_of(cluster["table"]) == {"Ref": table_id}
    assert ref_of(cluster["region"]) == {"Ref": "AWS::Region"}
    assert cluster["visibility_timeout"] == s.queue.visibility_timeout
    assert cluster["max_receive_count"] == s.queue.max_receive_count
    assert cluster["pairs_parameter"] == s.pairs_parameter
    assert cluster.get("credentials_parameter") == s.parameters.credentials
    assert parsed["part_size"] == parse_size(s.transfer.part_size, what="part_size")


def test_groups_launch_spot_with_an_on_demand_fallback(ec2_variants: Synthesized) -> None:
    e = ec2_variants.settings.ec2
    groups = ec2_variants.resources("AWS::AutoScaling::AutoScalingGroup")
    by_share = {
        g["Properties"]["MixedInstancesPolicy"]["InstancesDistribution"][
            "OnDemandPercentageAboveBaseCapacity"
        ]: g["Properties"]
        for g in groups.values()
    }
    assert set(by_share) == {0, 100}  # the Spot group and its on-demand fallback
    spot, fallback = by_share[0], by_share[100]
    assert spot["MinSize"] == str(e.min_capacity)
    assert spot["MaxSize"] == fallback["MaxSize"] == str(e.max_capacity)
    assert fallback["MinSize"] == "0"
    assert spot["CapacityRebalance"] is True
    distribution = spot["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
    overrides = spot["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert [o["InstanceType"] for o in overrides] == list(e.instance_types)
    for group in (spot, fallback):
        # Group metrics feed the scaling alarms and the dashboard.
        assert group["MetricsCollection"] == [{"Granularity": "1Minute"}]
        assert "DesiredCapacity" not in group  # a deployment never resets the size


def _policy(variant: Synthesized, name_part: str) -> tuple[str, dict[str, Any]]:
    found = [
        (k, v["Properties"])
        for k, v in variant.resources("AWS::AutoScaling::ScalingPolicy").items()
        if name_part in k
    ]
    assert len(found) == 1, f"{len(found)} scaling policies named *{name_part}*"
    return found[0]


def _alarm_of(variant: Synthesized, policy_id: str) -> dict[str, Any]:
    found = [
        a["Properties"]
        for a in variant.resources("AWS::CloudWatch::Alarm").values()
        if {"Ref": policy_id} in a["Properties"].get("AlarmActions", [])
    ]
    assert len(found) == 1
    return found[0]


def test_scale_out_follows_the_configured_backlog_steps(ec2_variants: Synthesized) -> None:
    e = ec2_variants.settings.ec2
    steps = e.scale_out_steps
    policy_id, policy = _policy(ec2_variants, "ScaleOutOnBacklog")
    first = steps[0][0]
    expected = []
    for i, (threshold, added) in enumerate(steps):
        step: dict[str, Any] = {
            "MetricIntervalLowerBound": threshold - first,
            "ScalingAdjustment": added,
        }
        if i + 1 < len(steps):
            step["MetricIntervalUpperBound"] = steps[i + 1][0] - first
        expected.append(step)
    assert policy["AdjustmentType"] == "ChangeInCapacity"
    assert policy["StepAdjustments"] == expected
    alarm = _alarm_of(ec2_variants, policy_id)
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["Threshold"] == first
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["EvaluationPeriods"] == e.scale_out_minutes


def test_idle_queue_scales_in_to_the_minimum_and_reports_the_batch_finished(
    ec2_variants: Synthesized,
) -> None:
    e = ec2_variants.settings.ec2
    name = ec2_variants.settings.name
    alarm = one(ec2_variants, "AWS::CloudWatch::Alarm", AlarmName=f"{name}-batch-finished")[1][
        "Properties"
    ]
    # The whole queue: waiting, in flight and delayed, for `idle_minutes`.
    expression = next(m for m in alarm["Metrics"] if m.get("ReturnData", True))
    assert expression["Expression"] == "waiting + running + delayed"
    used = {
        m["Id"]: m["MetricStat"]["Metric"]["MetricName"]
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    assert used == {
        "waiting": "ApproximateNumberOfMessagesVisible",
        "running": "ApproximateNumberOfMessagesNotVisible",
        "delayed": "ApproximateNumberOfMessagesDelayed",
    }
    assert alarm["ComparisonOperator"] == "LessThanOrEqualToThreshold"
    assert alarm["Threshold"] == 0
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == e.idle_minutes
    assert alarm["TreatMissingData"] == "breaching"
    topic = logical_id(ec2_variants, "AWS::SNS::Topic")
    actions = alarm["AlarmActions"]
    assert {"Ref": topic} in actions  # the "batch finished" e-mail
    for part, size in (("GroupScaleInWhenIdle", e.min_capacity), ("FallbackScaleInWhenIdle", 0)):
        policy_id, policy = _policy(ec2_variants, part)
        assert {"Ref": policy_id} in actions
        # Exactly the minimum, which the group accepts: the step always applies.
        assert policy["AdjustmentType"] == "ExactCapacity"
        assert policy["StepAdjustments"] == [
            {"MetricIntervalUpperBound": 0, "ScalingAdjustment": size}
        ]


def test_spot_shortfall_starts_and_stops_on_demand_instances(ec2_variants: Synthesized) -> None:
    e = ec2_variants.settings.ec2
    up_id, up = _policy(ec2_variants, "MakeUpForSpot")
    down_id, down = _policy(ec2_variants, "SpotCaughtUp")
    assert up["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 2, "ScalingAdjustment": 1},
        {"MetricIntervalLowerBound": 2, "ScalingAdjustment": 3},
    ]
    assert down["StepAdjustments"] == [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": -1}]
    for policy_id, threshold, operator in (
        (up_id, 1, "GreaterThanOrEqualToThreshold"),
        (down_id, -1, "LessThanOrEqualToThreshold"),
    ):
        alarm = _alarm_of(ec2_variants, policy_id)
        assert alarm["Threshold"] == threshold
        assert alarm["ComparisonOperator"] == operator
        assert alarm["EvaluationPeriods"] == e.fallback_after_minutes
        (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
        assert expression["Expression"] == "desired - spot - ondemand"


def test_an_empty_group_wakes_up_when_messages_arrive(ec2_variants: Synthesized) -> None:
    if ec2_variants.settings.ec2.min_capacity > 0:
        assert not [k for k in ec2_variants.data["Resources"] if "WakeUp" in k]
        return
    policy_id, policy = _policy(ec2_variants, "WakeUp")
    assert policy["AdjustmentType"] == "ExactCapacity"
    assert policy["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    alarm = _alarm_of(ec2_variants, policy_id)
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    assert (
        expression["Expression"] == "IF(desired == 0 AND (waiting + running + delayed) > 0, 1, 0)"
    )


def test_ec2_only_variant_keeps_a_minimum_and_skips_the_wake_up(ec2_variant: Synthesized) -> None:
    assert ec2_variant.settings.ec2.min_capacity == 1
    assert not [k for k in ec2_variant.data["Resources"] if "WakeUp" in k]


# -- Lambda worker and sender -------------------------------------------------------------------


def test_lambda_worker_uses_partial_batch_responses_and_reserved_concurrency(
    lambda_variants: Synthesized,
) -> None:
    lw = lambda_variants.settings.lambda_worker
    s = lambda_variants.settings
    function_id, function = one(
        lambda_variants, "AWS::Lambda::Function", Handler=contract.LAMBDA_WORKER_HANDLER
    )
    props = function["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["x86_64"]
    assert props["MemorySize"] == lw.memory_mb
    assert props["Timeout"] == lw.timeout_seconds
    if lw.reserved_concurrency is None:
        assert "ReservedConcurrentExecutions" not in props
    else:
        assert props["ReservedConcurrentExecutions"] == lw.reserved_concurrency
    queue_id = logical_id(lambda_variants, "AWS::SQS::Queue", QueueName=s.queue_name)
    mapping: dict[str, Any] = {
        "FunctionName": {"Ref": function_id},
        "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]},
        "BatchSize": lw.batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }
    if lw.max_concurrency is not None:
        mapping["ScalingConfig"] = {"MaximumConcurrency": lw.max_concurrency}
    lambda_variants.template.has_resource_properties("AWS::Lambda::EventSourceMapping", mapping)


def test_functions_get_the_runtime_environment(lambda_variants: Synthesized) -> None:
    from s3longbow.loader import CLUSTER_VARIABLES, TRANSFER_VARIABLES

    s = lambda_variants.settings
    _, function = one(
        lambda_variants, "AWS::Lambda::Function", Handler=contract.LAMBDA_WORKER_HANDLER
    )
    env = function["Properties"]["Environment"]["Variables"]
    known = {f"LONGBOW_{n.upper()}" for n in (*CLUSTER_VARIABLES, *TRANSFER_VARIABLES)} | {
        "LONGBOW_CONFIG",
        "LONGBOW_TIME_MARGIN_SECONDS",
        "LONGBOW_LOG_FORMAT",
    }
    assert set(env) <= known
    queue_id = logical_id(lambda_variants, "AWS::SQS::Queue", QueueName=s.queue_name)
    dlq_id = logical_id(lambda_variants, "AWS::SQS::Queue", QueueName=s.dead_letter_queue_name)
    table_id = logical_id(lambda_variants, "AWS::DynamoDB::Table", TableName=s.table_name)
    assert env["LONGBOW_QUEUE_URL"] == {"Ref": queue_id}
    assert env["LONGBOW_DEAD_LETTER_QUEUE_URL"] == {"Ref": dlq_id}
    assert env["LONGBOW_TABLE"] == {"Ref": table_id}
    assert env["LONGBOW_PAIRS_PARAMETER"] == s.pairs_parameter
    assert env["LONGBOW_CONFIG"] == "/var/task/cluster.toml"
    assert env["LONGBOW_TIME_MARGIN_SECONDS"] == str(s.lambda_worker.time_margin_seconds)
    if s.lambda_worker.workers is not None:
        assert env["LONGBOW_WORKERS"] == str(s.lambda_worker.workers)


def test_sender_runs_on_its_schedule_alone(variant: Synthesized) -> None:
    s = variant.settings
    function_id, function = one(variant, "AWS::Lambda::Function", FunctionName=f"{s.name}-sender")
    assert function["Properties"]["Handler"] == contract.SENDER_HANDLER
    assert function["Properties"]["ReservedConcurrentExecutions"] == 1
    variant.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": {"Ref": function_id}, "MaximumRetryAttempts": 0},
    )
    rules = variant.resources("AWS::Events::Rule")
    if s.sender.schedule is None:
        assert not rules
        return
    (rule,) = rules.values()
    assert rule["Properties"]["ScheduleExpression"] == s.sender.schedule
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_new_objects_of_the_source_bucket_are_queued(lambda_variant: Synthesized) -> None:
    t = lambda_variant.settings.trigger
    queue_id = logical_id(
        lambda_variant, "AWS::SQS::Queue", QueueName=lambda_variant.settings.queue_name
    )
    (notifications,) = lambda_variant.resources("Custom::S3BucketNotifications").values()
    props = notifications["Properties"]
    assert props["BucketName"] == t.bucket
    events = sorted(
        c["Events"][0] for c in props["NotificationConfiguration"]["QueueConfigurations"]
    )
    assert events == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectRestore:Completed"]
    for configuration in props["NotificationConfiguration"]["QueueConfigurations"]:
        assert configuration["QueueArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert configuration["Filter"] == {
            "Key": {"FilterRules": [{"Name": "prefix", "Value": t.prefix}]}
        }
    # S3 may send to the queue for this bucket only.
    lambda_variant.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": Match.array_with(["sqs:SendMessage"]),
                                "Principal": {"Service": "s3.amazonaws.com"},
                                "Condition": {
                                    "ArnLike": {
                                        "aws:SourceArn": {
                                            "Fn::Join": [
                                                "",
                                                [
                                                    "arn:",
                                                    {"Ref": "AWS::Partition"},
                                                    f":s3:::{t.bucket}",
                                                ],
                                            ]
                                        }
                                    }
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_no_trigger_without_a_trigger_bucket(ec2_variant: Synthesized) -> None:
    ec2_variant.template.resource_count_is("Custom::S3BucketNotifications", 0)


# -- logs ---------------------------------------------------------------------------------------


def test_every_log_group_has_the_configured_retention(variant: Synthesized) -> None:
    s = variant.settings
    groups = variant.resources("AWS::Logs::LogGroup")
    names = {g["Properties"]["LogGroupName"] for g in groups.values()}
    expected = {f"/longbow/{s.name}/sender"}
    if s.ec2.enabled:
        expected |= {f"/longbow/{s.name}/{n}" for n in ("worker", "metrics", "instances")}
    if s.lambda_worker.enabled:
        expected.add(f"/longbow/{s.name}/lambda-worker")
    assert names == expected
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == s.log_retention_days
        assert group["DeletionPolicy"] == ("Retain" if s.retain_data else "Delete")
    # Each function logs to the stack's group, not to one Lambda would create unbounded.
    for function in variant.resources("AWS::Lambda::Function").values():
        if function["Properties"].get("FunctionName", "").startswith(s.name):
            assert "LogGroup" in function["Properties"]["LoggingConfig"]


# -- alarms and dashboard -----------------------------------------------------------------------


def test_alarms_notify_the_operators(variant: Synthesized) -> None:
    s = variant.settings
    topic = logical_id(variant, "AWS::SNS::Topic")
    emails = sorted(
        sub["Properties"]["Endpoint"]
        for sub in variant.resources("AWS::SNS::Subscription").values()
        if sub["Properties"]["Protocol"] == "email"
    )
    assert emails == sorted(s.monitoring.emails)
    alarms = {
        a["Properties"].get("AlarmName"): a["Properties"]
        for a in variant.resources("AWS::CloudWatch::Alarm").values()
    }
    for suffix in ("dead-letters", "error-rate", "stalled", "batch-finished"):
        assert {"Ref": topic} in alarms[f"{s.name}-{suffix}"]["AlarmActions"]

    dlq_id = logical_id(variant, "AWS::SQS::Queue", QueueName=s.dead_letter_queue_name)
    dead = alarms[f"{s.name}-dead-letters"]
    assert dead["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dead["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}
    ]
    assert dead["Threshold"] == 1
    assert dead["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"

    rate = alarms[f"{s.name}-error-rate"]
    assert rate["Threshold"] == s.monitoring.error_rate_percent
    expressions = [m["Expression"] for m in rate["Metrics"] if "Expression" in m]
    assert "IF((errors + copied) > 0, 100 * errors / (errors + copied), 0)" in expressions
    longbow = {
        (
            m["MetricStat"]["Metric"]["MetricName"],
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"],
        )
        for m in rate["Metrics"]
        if "MetricStat" in m
    }
    modes = _modes(s)
    assert longbow == {(n, mode) for n in ("Errors", "ObjectsCopied") for mode in modes}

    stalled = alarms[f"{s.name}-stalled"]
    (expression,) = [
        m for m in stalled["Metrics"] if m.get("ReturnData", True) and "Expression" in m
    ]
    assert expression["Expression"] == (
        "IF((waiting + running) > 0 AND deleted == 0 AND sent == 0, 1, 0)"
    )
    assert stalled["EvaluationPeriods"] * 300 == s.monitoring.stall_minutes * 60


def _modes(s: Any) -> set[str]:
    return ({contract.MODE_EC2} if s.ec2.enabled else set()) | (
        {contract.MODE_LAMBDA} if s.lambda_worker.enabled else set()
    )


def _dashboard_metrics(variant: Synthesized) -> list[list[Any]]:
    (dashboard,) = variant.resources("AWS::CloudWatch::Dashboard").values()
    body = json.loads(render(dashboard["Properties"]["DashboardBody"], lambda _: "REF"))
    metrics = []
    for widget in body["widgets"]:
        metrics += widget["properties"].get("metrics", [])
    return metrics


def test_dashboard_charts_the_workers_metrics_scoped_to_this_deployment(
    variant: Synthesized,
) -> None:
    metrics = _dashboard_metrics(variant)
    plain = [m for m in metrics if not isinstance(m[0], dict)]
    charted = {(m[0], m[1]) for m in plain}
    modes = _modes(variant.settings)
    for name in ("BytesSent", "ObjectsCopied", "Errors", "ObjectsFailed", "JobsInFlight"):
        assert (contract.METRICS_NAMESPACE, name) in charted
    for m in plain:
        if m[0] == contract.METRICS_NAMESPACE:
            assert m[2:4] == [contract.MODE_DIMENSION, m[3]] and m[3] in modes
    for name in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
    ):
        assert ("AWS/SQS", name) in charted
    expressions = [m[0]["expression"] for m in metrics if isinstance(m[0], dict)]
    assert any("bytessent" in e and "PERIOD" in e for e in expressions)  # bytes per second
    assert all("SEARCH" not in e for e in expressions)
    if variant.settings.ec2.enabled:
        for namespace, name in (
            ("AWS/AutoScaling", "GroupInServiceInstances"),
            ("AWS/EC2", "CPUUtilization"),
            ("AWS/EC2", "NetworkOut"),
            ("CWAgent", "mem_used_percent"),
            ("CWAgent", "netstat_tcp_established"),
        ):
            assert (namespace, name) in charted
        # Instance metrics name their group: none charts every instance of the account.
        for m in plain:
            if m[0] in ("AWS/EC2", "CWAgent", "AWS/AutoScaling"):
                assert m[2] == "AutoScalingGroupName"
    if variant.settings.lambda_worker.enabled:
        assert ("AWS/Lambda", "ConcurrentExecutions") in charted


# -- IAM ----------------------------------------------------------------------------------------


def _resources(statement: dict[str, Any]) -> list[Any]:
    value = statement.get("Resource", [])
    return value if isinstance(value, list) else [value]


def _actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def test_no_data_plane_statement_grants_every_resource(variant: Synthesized) -> None:
    checked = 0
    for policy_id, statement in variant.statements():
        if not any(DATA_PLANE.match(a) for a in _actions(statement)):
            continue
        checked += 1
        for resource in _resources(statement):
            assert resource != "*", f"{policy_id}: {statement}"
            # Nor a pattern naming every bucket, queue, table or parameter.
            text = render(resource, lambda _: "x")
            assert not re.search(r"(:::|:)\*$", text), f"{policy_id}: {text}"
    assert checked > 10


def test_roles_carry_no_managed_policies(variant: Synthesized) -> None:
    for role_id, role in variant.resources("AWS::IAM::Role").items():
        if role["Properties"].get("Description", "").startswith("Longbow"):
            assert "ManagedPolicyArns" not in role["Properties"], role_id


def test_s3_rights_follow_the_sides_in_this_account(variant: Synthesized) -> None:
    s = variant.settings
    granted: dict[str, set[str]] = {}  # action -> "bucket" or "bucket/prefix*"
    for _, statement in variant.statements():
        if "cdk-" in json.dumps(statement):
            continue  # the asset bucket (the wheel), checked by the wildcard test
        for action in _actions(statement):
            if action.startswith("s3:") and action != "s3:PutBucketNotification":
                for resource in _resources(statement):
                    text = render(resource, lambda _: "")
                    granted.setdefault(action, set()).add(text.removeprefix("arn::s3:::"))
    for side in ("source", "destination"):
        buckets = set(s.buckets(side))
        every = set().union(*granted.values()) if granted else set()
        named = {r.split("/")[0] for r in every}
        if s.in_account(side):
            assert buckets <= granted["s3:ListBucket"]
        else:  # reached with the parameter's keys: no right on its buckets
            assert not buckets & named
    if s.in_account("source"):
        assert granted["s3:GetObject"] >= {f"{p.src_bucket}/{p.src_prefix}*" for p in s.pairs}
        assert "s3:GetObjectTagging" in granted
        restores = granted.get("s3:RestoreObject", set())
        wanted = {f"{p.src_bucket}/{p.src_prefix}*" for p in s.pairs}
        assert restores == (wanted if s.transfer.restore_days is not None else set())
    if s.in_account("destination"):
        assert granted["s3:PutObject"] == {f"{p.dst_bucket}/{p.dst_prefix}*" for p in s.pairs}
        assert ("s3:DeleteObject" in granted) == s.queue.delete_removed
    else:
        assert "s3:PutObject" not in granted


def test_the_sender_may_read_the_inventory_reports_of_sources_in_this_account(
    variant: Synthesized,
) -> None:
    s = variant.settings
    reports = {f"{p.inventory_bucket}/{p.inventory_folder}*" for p in s.pairs if p.src_inventory}
    found = [st for _, st in variant.statements() if st.get("Sid") == "SenderReadInventoryReports"]
    if not (reports and s.in_account("source")):
        assert found == []
        return
    (statement,) = found
    assert _actions(statement) == ["s3:GetObject"]
    granted = {render(r, lambda _: "").removeprefix("arn::s3:::") for r in _resources(statement)}
    assert granted == reports
    # Only the sender: the workers never read a report.
    assert not any(
        st.get("Sid", "").startswith("Worker") and "incoming-reports" in json.dumps(st)
        for _, st in variant.statements()
    )


def test_credentials_key_is_decryptable_only_when_it_is_a_customer_key(
    variant: Synthesized,
) -> None:
    arn = variant.settings.parameters.credentials_kms_key_arn
    decrypts = [st for _, st in variant.statements() if "kms:Decrypt" in _actions(st)]
    if arn is None:
        assert not decrypts  # the account's aws/ssm key needs no grant
    else:
        assert decrypts and all(_resources(st) == [arn] for st in decrypts)


def test_notification_handler_may_only_configure_the_trigger_bucket(
    lambda_variant: Synthesized,
) -> None:
    bucket = lambda_variant.settings.trigger.bucket
    statements = [
        st for _, st in lambda_variant.statements() if "s3:PutBucketNotification" in _actions(st)
    ]
    assert statements
    for statement in statements:
        assert [render(r, lambda _: "") for r in _resources(statement)] == [f"arn::s3:::{bucket}"]
