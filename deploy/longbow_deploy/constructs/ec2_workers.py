"""EC2 workers: an Auto Scaling group of Spot instances (with an on-demand group making up for
missing Spot capacity) that install the `longbow` wheel and run `longbow worker` as a systemd
service, scaled on the queue's backlog."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Aws, Duration
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from .. import contract
from ..settings import Ec2Workers as Ec2Settings
from .logs import log_group
from .network import Network

AGENT_NAMESPACE = "CWAgent"
_AGENT_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/longbow.json"
_LOG_DIR = "/var/log/longbow"
_VENV = "/opt/longbow/venv"
_EOF = "LONGBOW_EOF"
_ONE_MINUTE = Duration.minutes(1)

# systemd unit of the worker. Standard output carries the metric lines (EMF), standard error
# the JSON logs: the CloudWatch agent ships each file to its own log group. Exit code 2 is a
# bad configuration, which restarting cannot fix; anything else (e.g. 3: the queue or table
# is unreachable for now) is retried. SIGTERM makes the worker give its jobs back, which
# takes at most a part's time: systemd waits for it on scale-in and Spot interruptions.
_WORKER_UNIT = f"""[Unit]
Description=Longbow cluster worker
Wants=network-online.target
After=network-online.target amazon-cloudwatch-agent.service

[Service]
User=longbow
Group=longbow
ExecStart={_VENV}/bin/longbow worker --config {contract.CONFIG_PATH}
StandardOutput=append:{_LOG_DIR}/metrics.log
StandardError=append:{_LOG_DIR}/worker.log
Restart=on-failure
RestartSec=30
RestartPreventExitStatus=2
KillSignal=SIGTERM
TimeoutStopSec=110
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""

_LOGROTATE = f"""{_LOG_DIR}/*.log {{
    daily
    maxsize 200M
    rotate 2
    missingok
    notifempty
    compress
    copytruncate
}}
"""

# Long fat pipes (another region, another cloud) need BBR and large socket buffers to fill.
_SYSCTL = """net.core.default_qdisc = fq
net.ipv4.tcp_congestion_control = bbr
net.core.rmem_max = 67108864
net.core.wmem_max = 67108864
net.ipv4.tcp_rmem = 4096 131072 67108864
net.ipv4.tcp_wmem = 4096 65536 67108864
net.ipv4.tcp_mtu_probing = 1
"""


class Ec2Workers(Construct):
    """Launch template, Auto Scaling groups, scaling policies and log groups of the workers.

    Scaling, all on CloudWatch alarms:
    - out: step scaling on the messages waiting in the queue (`scale_out_steps`);
    - from zero: when the group has no instance and the queue holds messages, one instance;
    - in: `scale_in_when_idle` (the stack passes the queue-empty alarm) sets the group back to
      its minimum, and the on-demand group to zero;
    - fallback: when the Spot group lacks instances it asked for (Spot capacity unavailable)
      for `fallback_after_minutes`, the on-demand group adds instances, and gives them back
      when the Spot group has caught up.

    Args:
        scope: The parent construct.
        id: The construct id.
        name: The deployment's name (prefix of the log groups).
        settings: The `[ec2]` settings.
        network: Where the instances run.
        wheel: The `longbow` wheel the instances install.
        config: The cluster config file the worker reads (tokens allowed).
        ignore: The ignore file's content, or None.
        backlog: The queue's depth metrics (`waiting`, `running`, `delayed`).
        log_retention_days: Retention of the log groups.
        retain_logs: Keep the log groups when the stack is deleted.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        settings: Ec2Settings,
        network: Network,
        wheel: Path,
        config: str,
        ignore: str | None,
        backlog: Mapping[str, cloudwatch.IMetric],
        log_retention_days: int,
        retain_logs: bool,
    ) -> None:
        super().__init__(scope, id)
        self.name = name
        self.settings = settings

        def group_for(log_id: str, suffix: str) -> logs.LogGroup:
            return log_group(
                self,
                log_id,
                name=f"/longbow/{name}/{suffix}",
                retention_days=log_retention_days,
                retain=retain_logs,
            )

        self.worker_logs = group_for("WorkerLogs", "worker")
        self.metric_logs = group_for("MetricLogs", "metrics")
        self.instance_logs = group_for("InstanceLogs", "instances")

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Longbow EC2 workers",
        )
        self._grant_agents()

        wheel_asset = s3_assets.Asset(self, "Wheel", path=str(wheel))
        # The wheel's object only, not the whole (account-wide) asset bucket.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[wheel_asset.bucket.arn_for_objects(wheel_asset.s3_object_key)],
            )
        )
        user_data = ec2.UserData.for_linux()
        self._write_user_data(
            user_data, wheel=wheel, wheel_asset=wheel_asset, config=config, ignore=ignore
        )

        security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="Longbow workers: no inbound traffic (Session Manager for shells)",
            allow_all_outbound=True,
        )
        arch = "arm64" if settings.arm64 else "x86_64"
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            # AWS's public parameter of the current Amazon Linux 2023 image with its default
            # kernel, resolved at each deployment: no image id to maintain.
            machine_image=ec2.MachineImage.from_ssm_parameter(
                f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}",
                os=ec2.OperatingSystemType.LINUX,
            ),
            user_data=user_data,
            role=self.role,
            security_group=security_group,
            require_imdsv2=True,
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        settings.volume_gib,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
        )

        self.group = self._group(
            "Group", network=network, spot=settings.spot, min_capacity=settings.min_capacity
        )
        self.fallback: autoscaling.AutoScalingGroup | None = None
        if settings.spot and settings.on_demand_fallback:
            self.fallback = self._group("OnDemandFallback", network=network, spot=False)
        self.groups = [g for g in (self.group, self.fallback) if g is not None]

        self._scale_out(backlog)
        if settings.min_capacity == 0:
            self._wake_up(backlog)
        if self.fallback is not None:
            self._fall_back(self.fallback)

    # -- groups ------------------------------------------------------------------------------

    def _group(
        self, id: str, *, network: Network, spot: bool, min_capacity: int = 0
    ) -> autoscaling.AutoScalingGroup:
        s = self.settings
        on_demand_share = 0 if spot else 100
        return autoscaling.AutoScalingGroup(
            self,
            id,
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            min_capacity=min_capacity,
            max_capacity=s.max_capacity,
            mixed_instances_policy=autoscaling.MixedInstancesPolicy(
                launch_template=self.launch_template,
                launch_template_overrides=[
                    autoscaling.LaunchTemplateOverrides(instance_type=ec2.InstanceType(t))
                    for t in s.instance_types
                ],
                instances_distribution=autoscaling.InstancesDistribution(
                    on_demand_base_capacity=0,
                    on_demand_percentage_above_base_capacity=on_demand_share,
                    # The types listed first are preferred for on-demand instances.
                    on_demand_allocation_strategy=autoscaling.OnDemandAllocationStrategy.PRIORITIZED,
                    spot_allocation_strategy=autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED,
                ),
            ),
            # Replace a Spot instance at risk before its interruption notice.
            capacity_rebalance=spot,
            group_metrics=[autoscaling.GroupMetrics.all()],
            default_instance_warmup=Duration.minutes(s.warmup_minutes),
        )

    def group_metric(
        self, group: autoscaling.AutoScalingGroup, metric_name: str, *, period: Duration
    ) -> cloudwatch.Metric:
        """A group metric of AWS/AutoScaling (collected every minute, at no charge)."""
        return cloudwatch.Metric(
            namespace="AWS/AutoScaling",
            metric_name=metric_name,
            dimensions_map={"AutoScalingGroupName": group.auto_scaling_group_name},
            statistic="Maximum",
            period=period,
        )

    # -- scaling -----------------------------------------------------------------------------

    def _scale_out(self, backlog: Mapping[str, cloudwatch.IMetric]) -> None:
        steps = self.settings.scale_out_steps
        minutes = self.settings.scale_out_minutes
        first = steps[0][0]
        alarm = backlog["waiting"].create_alarm(
            self,
            "ScaleOutAlarm",
            alarm_name=f"{self.name}-workers-scale-out",
            alarm_description=f"Longbow: {first} or more messages wait in the queue",
            threshold=first,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = autoscaling.StepScalingAction(
            self.group,
            "ScaleOutOnBacklog",
            auto_scaling_group=self.group,
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            estimated_instance_warmup=Duration.minutes(self.settings.warmup_minutes),
            metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
        )
        # Step bounds are relative to the alarm's threshold, the first step's backlog.
        for i, (threshold, added) in enumerate(steps):
            upper = steps[i + 1][0] - first if i + 1 < len(steps) else None
            action.add_adjustment(
                adjustment=added, lower_bound=threshold - first, upper_bound=upper
            )
        alarm.add_alarm_action(cloudwatch_actions.AutoScalingAction(action))

    def _wake_up(self, backlog: Mapping[str, cloudwatch.IMetric]) -> None:
        # The backlog steps start at their first threshold, so a group at zero would never
        # start for a small batch: one instance as soon as anything waits and nothing runs.
        expression = cloudwatch.MathExpression(
            expression="IF(desired == 0 AND (waiting + running + delayed) > 0, 1, 0)",
            using_metrics={
                "desired": self.group_metric(
                    self.group, "GroupDesiredCapacity", period=_ONE_MINUTE
                ),
                **backlog,
            },
            period=_ONE_MINUTE,
            label="queue holds messages and no worker is asked for",
        )
        alarm = expression.create_alarm(
            self,
            "WakeUpAlarm",
            alarm_name=f"{self.name}-workers-wake-up",
            alarm_description="Longbow: messages are queued and the worker group is at zero",
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = autoscaling.StepScalingAction(
            self,
            "WakeUp",
            auto_scaling_group=self.group,
            adjustment_type=autoscaling.AdjustmentType.EXACT_CAPACITY,
        )
        action.add_adjustment(adjustment=1, lower_bound=0)
        alarm.add_alarm_action(cloudwatch_actions.AutoScalingAction(action))

    def _fall_back(self, fallback: autoscaling.AutoScalingGroup) -> None:
        # Instances the Spot group asked for and did not get, less those the on-demand group
        # already runs: positive means on-demand instances are missing, negative that the
        # Spot group has caught up and on-demand ones can go.
        shortfall = cloudwatch.MathExpression(
            expression="desired - spot - ondemand",
            using_metrics={
                "desired": self.group_metric(
                    self.group, "GroupDesiredCapacity", period=_ONE_MINUTE
                ),
                "spot": self.group_metric(
                    self.group, "GroupInServiceInstances", period=_ONE_MINUTE
                ),
                "ondemand": self.group_metric(
                    fallback, "GroupInServiceInstances", period=_ONE_MINUTE
                ),
            },
            period=_ONE_MINUTE,
            label="Spot instances missing",
        )
        minutes = self.settings.fallback_after_minutes
        warmup = Duration.minutes(self.settings.warmup_minutes)
        ge = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        le = cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD
        # Step bounds are relative to each alarm's threshold.
        for id, alarm_name, operator, steps, description in (
            (
                "MakeUpForSpot",
                "spot-shortfall",
                ge,
                ((0, 2, 1), (2, None, 3)),  # 1-2 missing: +1; 3 or more: +3
                "Spot instances the worker group asked for are missing",
            ),
            (
                "SpotCaughtUp",
                "spot-caught-up",
                le,
                ((None, 0, -1),),
                "the Spot group has caught up: on-demand instances can go",
            ),
        ):
            alarm = shortfall.create_alarm(
                self,
                f"{id}Alarm",
                alarm_name=f"{self.name}-{alarm_name}",
                alarm_description=f"Longbow: {description}",
                threshold=1 if operator is ge else -1,
                comparison_operator=operator,
                evaluation_periods=minutes,
                datapoints_to_alarm=minutes,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            action = autoscaling.StepScalingAction(
                fallback,
                id,
                auto_scaling_group=fallback,
                adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                estimated_instance_warmup=warmup,
                metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
            )
            for lower, upper, change in steps:
                action.add_adjustment(adjustment=change, lower_bound=lower, upper_bound=upper)
            alarm.add_alarm_action(cloudwatch_actions.AutoScalingAction(action))

    def scale_in_when_idle(self, alarm: cloudwatch.Alarm) -> None:
        """Back to the minimum (and the on-demand group to zero) when `alarm` fires.

        `alarm` must be a `<= 0` alarm on the queue's depth: its breaching range is
        (-inf, 0], which the step below covers.
        """
        for group, size in ((self.group, self.settings.min_capacity), (self.fallback, 0)):
            if group is None:
                continue
            action = autoscaling.StepScalingAction(
                group,
                "ScaleInWhenIdle",
                auto_scaling_group=group,
                adjustment_type=autoscaling.AdjustmentType.EXACT_CAPACITY,
            )
            action.add_adjustment(adjustment=size, upper_bound=0)
            alarm.add_alarm_action(cloudwatch_actions.AutoScalingAction(action))

    # -- instances ---------------------------------------------------------------------------

    def _grant_agents(self) -> None:
        """What the CloudWatch agent and the SSM agent need (not the worker's own rights)."""
        for group in (self.worker_logs, self.metric_logs, self.instance_logs):
            group.grant(self.role, "logs:CreateLogStream", "logs:PutLogEvents")
            group.grant(self.role, "logs:DescribeLogStreams")
        # Neither action supports resource-level permissions; the namespace condition keeps
        # the agent to its own metrics.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": AGENT_NAMESPACE}},
            )
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=["ec2:DescribeTags"], resources=["*"]))
        # Session Manager and Run Command, without AmazonSSMManagedInstanceCore, whose
        # ssm:GetParameter* on every parameter would undo the scoping of the parameters.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:UpdateInstanceInformation"],
                resources=[f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:instance/*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                    "ec2messages:AcknowledgeMessage",
                    "ec2messages:DeleteMessage",
                    "ec2messages:FailMessage",
                    "ec2messages:GetEndpoint",
                    "ec2messages:GetMessages",
                    "ec2messages:SendReply",
                ],
                resources=["*"],
            )
        )

    def _agent_config(self) -> str:
        files = [
            (f"{_LOG_DIR}/worker.log", self.worker_logs, "{instance_id}"),
            (f"{_LOG_DIR}/metrics.log", self.metric_logs, "{instance_id}"),
            ("/var/log/cloud-init-output.log", self.instance_logs, "{instance_id}/cloud-init"),
        ]
        config = {
            "agent": {
                "metrics_collection_interval": 60,
                "run_as_user": "root",
                "omit_hostname": True,
            },
            "metrics": {
                "namespace": AGENT_NAMESPACE,
                # One series per group rather than per instance: instances come and go, and
                # every series is billed.
                "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}"},
                "aggregation_dimensions": [["AutoScalingGroupName"]],
                "metrics_collected": {
                    "mem": {"measurement": ["mem_used_percent"]},
                    "disk": {"measurement": ["used_percent"], "resources": ["/"]},
                    "netstat": {"measurement": ["tcp_established"]},
                },
            },
            "logs": {
                "logs_collected": {
                    "files": {
                        "collect_list": [
                            {
                                "file_path": path,
                                "log_group_name": group.log_group_name,
                                "log_stream_name": stream,
                            }
                            for path, group, stream in files
                        ]
                    }
                }
            },
        }
        return json.dumps(config, indent=2)

    def _write_user_data(
        self,
        user_data: ec2.UserData,
        *,
        wheel: Path,
        wheel_asset: s3_assets.Asset,
        config: str,
        ignore: str | None,
    ) -> None:
        def file(path: str, content: str, mode: str = "0644") -> list[str]:
            return [f"cat > {path} <<'{_EOF}'", content.rstrip("\n"), _EOF, f"chmod {mode} {path}"]

        user_data.add_commands(
            "set -euxo pipefail",
            *file("/etc/sysctl.d/90-longbow.conf", _SYSCTL),
            "echo tcp_bbr > /etc/modules-load.d/longbow.conf",
            "modprobe tcp_bbr",
            "sysctl --system",
            "dnf install -y python3.12 python3.12-pip amazon-cloudwatch-agent logrotate",
            "id longbow || useradd --system --home-dir /var/lib/longbow --create-home "
            "--shell /sbin/nologin longbow",
            "install -d -m 0755 /etc/longbow",
            f"install -d -m 0755 -o longbow -g longbow {_LOG_DIR}",
            # Logs first, so a failing installation below can be read in CloudWatch.
            *file(_AGENT_CONFIG, self._agent_config()),
            "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config "
            f"-m ec2 -s -c file:{_AGENT_CONFIG}",
        )
        local_wheel = user_data.add_s3_download_command(
            bucket=wheel_asset.bucket,
            bucket_key=wheel_asset.s3_object_key,
            # pip reads the version from the file name: keep the wheel's own name.
            local_file=f"/opt/longbow/{wheel.name}",
            region=Aws.REGION,
        )
        user_data.add_commands(
            f"python3.12 -m venv {_VENV}",
            f"{_VENV}/bin/pip install --quiet --upgrade pip",
            f"{_VENV}/bin/pip install --quiet '{local_wheel}'",
            f"ln -sf {_VENV}/bin/longbow /usr/local/bin/longbow",
            *file(contract.CONFIG_PATH, config),
            *(file(f"/etc/longbow/{contract.IGNORE_FILE}", ignore) if ignore else []),
            *file("/etc/logrotate.d/longbow", _LOGROTATE),
            *file("/etc/systemd/system/longbow-worker.service", _WORKER_UNIT),
            "systemctl daemon-reload",
            "systemctl enable --now longbow-worker.service",
        )
