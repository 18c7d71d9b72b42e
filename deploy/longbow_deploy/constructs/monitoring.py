"""Dashboard, alarms and e-mail notifications, built on the metrics the workers publish
(namespace `Longbow`, dimension `Mode`) and on those of SQS, Auto Scaling, EC2 and Lambda."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from .. import contract
from ..settings import Monitoring as MonitoringSettings
from .ec2_workers import AGENT_NAMESPACE, Ec2Workers
from .job_queue import JobQueue

_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)
_MODE_LABELS = {contract.MODE_EC2: "EC2 workers", contract.MODE_LAMBDA: "Lambda worker"}
_WIDTH = 24  # the dashboard's grid width


def longbow_metric(
    name: str, mode: str, *, statistic: str = "Sum", period: Duration = _ONE_MINUTE
) -> cloudwatch.Metric:
    """A metric of the workers' EMF lines, for one mode (`worker` or `lambda`)."""
    return cloudwatch.Metric(
        namespace=contract.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={contract.MODE_DIMENSION: mode},
        statistic=statistic,
        period=period,
        label=f"{name} ({_MODE_LABELS[mode]})",
    )


def _sum_over_modes(name: str, modes: Sequence[str], *, period: Duration) -> cloudwatch.IMetric:
    """The sum of one Longbow metric over the deployed modes; a mode that wrote no line in a
    period counts as zero."""
    # Ids must be unique across nested expressions: derive them from the metric's name.
    stem = name[0].lower() + name[1:]
    metrics = {
        f"{stem}{i}": longbow_metric(name, mode, period=period) for i, mode in enumerate(modes)
    }
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL({key}, 0)" for key in metrics),
        using_metrics=metrics,
        period=period,
        label=name,
    )


class Monitoring(Construct):
    """The notification topic, the alarms and the dashboard.

    Alarms (each e-mails the topic when it fires):
    - dead letters: the dead-letter queue holds a message;
    - error rate: errors above `error_rate_percent` of attempts for 15 minutes;
    - stalled: the queue holds messages, yet none was finished and no byte was sent for
      `stall_minutes`;
    - batch finished (`idle_alarm`): the queue has been empty (waiting, in flight and
      delayed) for `idle_minutes`. The EC2 workers also scale in on it.

    Args:
        scope: The parent construct.
        id: The construct id.
        name: The deployment's name (prefix of the alarm and dashboard names).
        settings: The `[monitoring]` settings.
        queue: The job queue.
        modes: The deployed worker modes (`worker`, `lambda`).
        ec2: The EC2 workers, if deployed.
        functions: Lambda functions to chart (label -> function).
        log_groups: Log groups searched by the dashboard's recent-errors widget.
        idle_minutes: How long the queue must be empty before the batch counts as finished.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        settings: MonitoringSettings,
        queue: JobQueue,
        modes: Sequence[str],
        ec2: Ec2Workers | None,
        functions: dict[str, lambda_.IFunction],
        log_groups: Sequence[logs.ILogGroup],
        idle_minutes: int,
    ) -> None:
        super().__init__(scope, id)
        self.name = name
        self.topic = sns.Topic(self, "Topic", display_name=f"Longbow {name}", enforce_ssl=True)
        for email in settings.emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        notify = cloudwatch_actions.SnsAction(self.topic)

        self.dead_letter_alarm = queue.dead_letters(period=_FIVE_MINUTES).create_alarm(
            self,
            "DeadLetters",
            alarm_name=f"{name}-dead-letters",
            alarm_description=(
                "Longbow: the dead-letter queue holds messages. `longbow status --cluster` "
                "lists the failures and their reasons."
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        errors = _sum_over_modes("Errors", modes, period=_FIVE_MINUTES)
        copied = _sum_over_modes("ObjectsCopied", modes, period=_FIVE_MINUTES)
        self.error_rate = cloudwatch.MathExpression(
            expression="IF((errors + copied) > 0, 100 * errors / (errors + copied), 0)",
            using_metrics={"errors": errors, "copied": copied},
            period=_FIVE_MINUTES,
            label="errors per attempt (%)",
        )
        self.error_rate_alarm = self.error_rate.create_alarm(
            self,
            "ErrorRate",
            alarm_name=f"{name}-error-rate",
            alarm_description=(
                f"Longbow: more than {settings.error_rate_percent:g}% of attempts failed for "
                "15 minutes. The worker logs say why."
            ),
            threshold=settings.error_rate_percent,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        backlog = queue.backlog(period=_FIVE_MINUTES)
        periods = settings.stall_minutes // 5
        self.stall_alarm = cloudwatch.MathExpression(
            expression="IF((waiting + running) > 0 AND deleted == 0 AND sent == 0, 1, 0)",
            using_metrics={
                "waiting": backlog["waiting"],
                "running": backlog["running"],
                "deleted": queue.queue.metric_number_of_messages_deleted(
                    period=_FIVE_MINUTES, statistic="Sum"
                ),
                "sent": _sum_over_modes("BytesSent", modes, period=_FIVE_MINUTES),
            },
            period=_FIVE_MINUTES,
            label="messages queued, no progress",
        ).create_alarm(
            self,
            "Stalled",
            alarm_name=f"{name}-stalled",
            alarm_description=(
                f"Longbow: the queue holds messages but for {settings.stall_minutes} minutes no "
                "message was finished and no byte was sent. Check the workers' logs and count."
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        depth = queue.backlog(period=_ONE_MINUTE)
        self.idle_alarm = cloudwatch.MathExpression(
            expression="waiting + running + delayed",
            using_metrics=dict(depth),
            period=_ONE_MINUTE,
            label="messages in the queue",
        ).create_alarm(
            self,
            "BatchFinished",
            alarm_name=f"{name}-batch-finished",
            alarm_description=(
                f"Longbow: the job queue has been empty for {idle_minutes} minutes: the batch "
                "is finished (EC2 workers scale in). `longbow status --cluster` shows the "
                "totals and any failures."
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=idle_minutes,
            datapoints_to_alarm=idle_minutes,
            # SQS stops publishing the metrics of a queue nobody has used for six hours:
            # no data means an empty queue.
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        for alarm in (
            self.dead_letter_alarm,
            self.error_rate_alarm,
            self.stall_alarm,
            self.idle_alarm,
        ):
            alarm.add_alarm_action(notify)

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=name, default_interval=Duration.hours(3)
        )
        self._widgets(queue, modes, ec2, functions, log_groups)

    # -- dashboard ---------------------------------------------------------------------------

    def _widgets(
        self,
        queue: JobQueue,
        modes: Sequence[str],
        ec2: Ec2Workers | None,
        functions: dict[str, lambda_.IFunction],
        log_groups: Sequence[logs.ILogGroup],
    ) -> None:
        def per_second(metric_name: str, mode: str) -> cloudwatch.MathExpression:
            # Ids must be unique within a graph.
            key = f"{metric_name.lower()}{mode.capitalize()}"
            return cloudwatch.MathExpression(
                expression=f"{key} / PERIOD({key})",
                using_metrics={key: longbow_metric(metric_name, mode)},
                label=_MODE_LABELS[mode],
                period=_ONE_MINUTE,
            )

        depth = queue.backlog(period=_ONE_MINUTE)
        dead = queue.dead_letters(period=_ONE_MINUTE)
        labelled = {
            "running": depth["running"].with_(label="running (in flight)"),
            "waiting": depth["waiting"].with_(label="waiting"),
            "delayed": depth["delayed"].with_(label="delayed"),
            "dead": dead.with_(label="dead (DLQ)"),
        }
        rows: list[list[cloudwatch.IWidget]] = [
            [
                cloudwatch.SingleValueWidget(
                    title="Queue: running / waiting / dead",
                    metrics=[labelled["running"], labelled["waiting"], labelled["dead"]],
                    width=6,
                    height=6,
                ),
                cloudwatch.GraphWidget(
                    title="Bytes sent per second",
                    left=[per_second("BytesSent", mode) for mode in modes],
                    left_y_axis=cloudwatch.YAxisProps(min=0, label="bytes/s", show_units=False),
                    stacked=True,
                    width=9,
                    height=6,
                ),
                cloudwatch.GraphWidget(
                    title="Objects copied per second",
                    left=[per_second("ObjectsCopied", mode) for mode in modes],
                    left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
                    stacked=True,
                    width=9,
                    height=6,
                ),
            ],
            [
                cloudwatch.GraphWidget(
                    title="Queue depth",
                    left=[labelled["waiting"], labelled["running"], labelled["delayed"]],
                    right=[labelled["dead"]],
                    left_y_axis=cloudwatch.YAxisProps(min=0),
                    right_y_axis=cloudwatch.YAxisProps(min=0),
                    width=8,
                    height=6,
                ),
                cloudwatch.GraphWidget(
                    title="Errors and failures",
                    left=[
                        longbow_metric(name, mode)
                        for mode in modes
                        for name in ("Errors", "ObjectsFailed", "MessagesMovedAside")
                    ],
                    right=[self.error_rate],
                    left_y_axis=cloudwatch.YAxisProps(min=0),
                    right_y_axis=cloudwatch.YAxisProps(min=0, max=100, label="%"),
                    width=8,
                    height=6,
                ),
                cloudwatch.GraphWidget(
                    title="Jobs in flight and messages",
                    left=[longbow_metric("JobsInFlight", mode) for mode in modes],
                    right=[
                        longbow_metric(name, mode)
                        for mode in modes
                        for name in ("MessagesReceived", "MessagesDeleted", "DuplicateJobs")
                    ],
                    left_y_axis=cloudwatch.YAxisProps(min=0),
                    right_y_axis=cloudwatch.YAxisProps(min=0),
                    width=8,
                    height=6,
                ),
            ],
        ]
        if ec2 is not None:
            rows += self._ec2_rows(ec2)
        if functions:
            rows.append(self._lambda_row(functions))
        if log_groups:
            rows.append(
                [
                    cloudwatch.LogQueryWidget(
                        title="Recent warnings and errors",
                        log_group_names=[g.log_group_name for g in log_groups],
                        query_lines=[
                            "fields @timestamp, level, message, src, reason, hint",
                            "filter level in ['WARNING', 'ERROR', 'CRITICAL']",
                            "sort @timestamp desc",
                            "limit 100",
                        ],
                        view=cloudwatch.LogQueryVisualizationType.TABLE,
                        width=_WIDTH,
                        height=6,
                    )
                ]
            )
        for row in rows:
            self.dashboard.add_widgets(*row)

    def _ec2_rows(self, ec2: Ec2Workers) -> list[list[cloudwatch.IWidget]]:
        labels = {ec2.group: "Spot" if ec2.settings.spot else "on-demand"}
        if ec2.fallback is not None:
            labels[ec2.fallback] = "on-demand fallback"

        def by_group(
            namespace: str, metric_name: str, statistic: str, period: Duration
        ) -> list[cloudwatch.IMetric]:
            # Scoped to the workers' groups: an account-wide search would chart every
            # instance in the region.
            return [
                cloudwatch.Metric(
                    namespace=namespace,
                    metric_name=metric_name,
                    dimensions_map={"AutoScalingGroupName": group.auto_scaling_group_name},
                    statistic=statistic,
                    period=period,
                    label=f"{label} {statistic.lower()}",
                )
                for group, label in labels.items()
            ]

        def bytes_per_second(metric_name: str) -> list[cloudwatch.IMetric]:
            return [
                cloudwatch.MathExpression(
                    expression=f"{metric_name.lower()}{i} / PERIOD({metric_name.lower()}{i})",
                    using_metrics={f"{metric_name.lower()}{i}": metric},
                    label=f"{metric_name} {label}",
                    period=_FIVE_MINUTES,
                )
                for i, (metric, label) in enumerate(
                    zip(
                        by_group("AWS/EC2", metric_name, "Sum", _FIVE_MINUTES),
                        labels.values(),
                        strict=True,
                    )
                )
            ]

        workers = [
            ec2.group_metric(group, name, period=_ONE_MINUTE).with_(label=f"{label} {text}")
            for group, label in labels.items()
            for name, text in (
                ("GroupInServiceInstances", "in service"),
                ("GroupDesiredCapacity", "desired"),
            )
        ]
        percent = cloudwatch.YAxisProps(min=0, max=100, label="%", show_units=False)
        return [
            [
                cloudwatch.GraphWidget(
                    title="Worker instances",
                    left=workers,
                    left_y_axis=cloudwatch.YAxisProps(min=0),
                    width=6,
                    height=6,
                ),
                cloudwatch.GraphWidget(
                    title="CPU",
                    left=by_group("AWS/EC2", "CPUUtilization", "Average", _FIVE_MINUTES)
                    + by_group("AWS/EC2", "CPUUtilization", "Maximum", _FIVE_MINUTES),
                    left_y_axis=percent,
                    width=6,
                    height=6,
                ),
                cloudwatch.GraphWidget(
                    title="Memory used",
                    left=by_group(AGENT_NAMESPACE, "mem_used_percent", "Average", _ONE_MINUTE)
                    + by_group(AGENT_NAMESPACE, "mem_used_percent", "Maximum", _ONE_MINUTE),
                    left_y_axis=percent,
                    width=6,
                    height=6,
                ),
                cloudwatch.GraphWidget(
                    title="Network (bytes/s) and TCP connections",
                    left=bytes_per_second("NetworkOut") + bytes_per_second("NetworkIn"),
                    right=by_group(AGENT_NAMESPACE, "netstat_tcp_established", "Sum", _ONE_MINUTE),
                    left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
                    right_y_axis=cloudwatch.YAxisProps(min=0),
                    width=6,
                    height=6,
                ),
            ]
        ]

    def _lambda_row(self, functions: dict[str, lambda_.IFunction]) -> list[cloudwatch.IWidget]:
        width = _WIDTH // 3
        return [
            cloudwatch.GraphWidget(
                title="Lambda concurrency",
                left=[
                    fn.metric("ConcurrentExecutions", statistic="Maximum", label=label)
                    for label, fn in functions.items()
                ],
                left_y_axis=cloudwatch.YAxisProps(min=0),
                width=width,
                height=6,
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors and throttles",
                left=[fn.metric_errors(label=f"{label} errors") for label, fn in functions.items()]
                + [
                    fn.metric_throttles(label=f"{label} throttles")
                    for label, fn in functions.items()
                ],
                left_y_axis=cloudwatch.YAxisProps(min=0),
                width=width,
                height=6,
            ),
            cloudwatch.GraphWidget(
                title="Lambda duration",
                left=[
                    fn.metric_duration(statistic="p90", label=f"{label} p90")
                    for label, fn in functions.items()
                ],
                width=width,
                height=6,
            ),
        ]

    @property
    def dashboard_url(self) -> str:
        """The dashboard in the CloudWatch console."""
        return (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards:name={self.name}"
        )
