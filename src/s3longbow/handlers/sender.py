"""AWS Lambda entry point of the job sender: `longbow send` on a schedule or on demand.

The event may hold options: `{"dry_run": true}`, `{"retry_failed": true}`, `{"requeue": true}`
(the flags of `longbow send`). Settings come from LONGBOW_CONFIG and the LONGBOW_* variables,
as for the Lambda worker.

Listing stops `LONGBOW_TIME_MARGIN_SECONDS` (default 90) before the function's timeout: what
was recorded by then is still sent, so no job is left pending without a message, and the
next run lists again and queues the rest (jobs already queued are skipped).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from s3longbow.cluster.aws import ControlPlane
from s3longbow.cluster.sender import send_jobs
from s3longbow.handlers.deadline import stop_before_deadline
from s3longbow.handlers.sqs_worker import config_from_environment, setup_logging

log = logging.getLogger("s3longbow.handlers.sender")

OPTIONS = ("dry_run", "requeue", "retry_failed")
DEFAULT_MARGIN_SECONDS = 90.0


class LambdaContext(Protocol):
    """What the handler uses of Lambda's context object."""

    def get_remaining_time_in_millis(self) -> int: ...


def handler(
    event: Mapping[str, Any] | None,
    context: LambdaContext,
    *,
    send: Callable[..., Any] = send_jobs,
    control_plane: Callable[[Any], Any] = ControlPlane,
) -> dict[str, Any]:
    """Queue the jobs of every pair; return `longbow send --json`'s summary.

    Raises:
        LongbowError: The settings are invalid, or the queue, the table or a bucket cannot
            be used (the invocation fails and is reported as such).
    """
    setup_logging(os.environ)
    event = event if isinstance(event, Mapping) else {}
    unknown = sorted(set(event) - set(OPTIONS) - {"source", "trigger"})
    if unknown:
        log.warning("ignored unknown option(s) %s", ", ".join(unknown))
    options = {name: bool(event.get(name, False)) for name in OPTIONS}
    margin = float(os.environ.get("LONGBOW_TIME_MARGIN_SECONDS", DEFAULT_MARGIN_SECONDS))
    config = config_from_environment(os.environ)
    control = control_plane(config.cluster)
    stop = threading.Event()
    try:
        why = "listing stops, what was recorded is sent"
        with stop_before_deadline(context, margin, stop, why):
            report = send(config, control, stop=stop, **options)
    finally:
        control.close()
    summary: dict[str, Any] = report.to_json()
    log.info("send finished", extra={"fields": {"event": "send", **summary}})
    return summary
