"""AWS Lambda entry point: run the jobs of an SQS event with the same engine as
`longbow worker`, and report the records that must come back (partial batch response).

Configure the event source mapping with `ReportBatchItemFailures`. When the invocation's
remaining time falls below `LONGBOW_TIME_MARGIN_SECONDS`, no new part is started: the parts
in flight finish, each unfinished job is given back with its multipart upload left open, and
its record is reported as failed and made visible at once, so the next invocation resumes the
upload from the parts already sent.

Environment variables (each optional unless said otherwise; they override the config file;
`s3longbow.loader.load_deployment` reads them):

- `LONGBOW_CONFIG`: path of a cluster config file (TOML, as for `longbow worker`).
- `LONGBOW_QUEUE_URL` (required without a config file), `LONGBOW_DEAD_LETTER_QUEUE_URL`,
  `LONGBOW_TABLE`, `LONGBOW_REGION`, `LONGBOW_ENDPOINT_URL`, `LONGBOW_VISIBILITY_TIMEOUT`,
  `LONGBOW_MAX_RECEIVE_COUNT`, `LONGBOW_PAIRS_PARAMETER`, `LONGBOW_CREDENTIALS_PARAMETER`,
  `LONGBOW_CREDENTIALS_SIDE`, `LONGBOW_DELETE_REMOVED`, `LONGBOW_RETRY_BASE_SECONDS`,
  `LONGBOW_RETRY_MAX_SECONDS`: the `[cluster]` settings of the same name.
- `LONGBOW_PAIRS`: the pairs as JSON (`[{"src": "s3://...", "dst": "s3://..."}]`), when
  neither a config file nor a pairs parameter names them.
- `LONGBOW_SRC_ENDPOINT_URL`, `LONGBOW_SRC_REGION`, `LONGBOW_SRC_PATH_STYLE` (and `DST`):
  how to reach each side; `LONGBOW_SRC_ACCESS_KEY_ID` / `..._SECRET_ACCESS_KEY` /
  `..._SESSION_TOKEN` (and `DST`) give a side static keys (prefer the credentials parameter).
- `LONGBOW_WORKERS`, `LONGBOW_PART_THREADS`, `LONGBOW_PART_SIZE`,
  `LONGBOW_RESUMABLE_THRESHOLD`, `LONGBOW_MEMORY_LIMIT`, `LONGBOW_STORAGE_CLASS`: transfer
  settings.
- `LONGBOW_TIME_MARGIN_SECONDS`: stop starting parts when less time than this remains
  (default 60; keep it above the time one part takes).
- `LONGBOW_LOG_FORMAT`: `json` (default inside Lambda) or `text`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from s3longbow.cluster.jobqueue import BatchSource
from s3longbow.cluster.metrics import ClusterCounters, MetricsEmitter
from s3longbow.cluster.service import WorkerRuntime
from s3longbow.cluster.settings import ClusterConfig
from s3longbow.cluster.sqs import Received
from s3longbow.display import JsonLogFormatter
from s3longbow.errors import ConfigError
from s3longbow.handlers.deadline import stop_before_deadline
from s3longbow.loader import env_value, load_deployment
from s3longbow.logsafety import quiet_secret_loggers
from s3longbow.progress.stats import Stats

log = logging.getLogger("s3longbow.handlers.sqs_worker")

DEFAULT_MARGIN_SECONDS = 60.0


class LambdaContext(Protocol):
    """What the handler uses of Lambda's context object."""

    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


class _Cache:
    """The runtime of this container, kept between invocations while its settings hold."""

    key: str | None = None
    runtime: WorkerRuntime | None = None
    lock = threading.Lock()


def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run the jobs of an SQS event; return the records that must come back.

    Returns:
        `{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`.
    """
    env = os.environ
    setup_logging(env)
    runtime = _runtime(env)
    margin = _number(env, "LONGBOW_TIME_MARGIN_SECONDS", DEFAULT_MARGIN_SECONDS)
    records = event.get("Records") or []
    messages = [m for m in (_received(r) for r in records) if m is not None]
    source = BatchSource(messages, runtime.queue)
    stop = threading.Event()
    stats, counters = Stats(), ClusterCounters()
    worker_id = f"lambda:{env.get('AWS_LAMBDA_FUNCTION_NAME', 'local')}:{context.aws_request_id}"
    with stop_before_deadline(context, margin, stop, "unfinished jobs go back to the queue"):
        outcome = runtime.run(
            source, stop=stop, worker_id=worker_id, stats=stats, counters=counters
        )
    MetricsEmitter(
        stats,
        counters,
        _write_line,
        interval=3600,
        dimensions={"Mode": "lambda"},
        properties={"RequestId": context.aws_request_id},
    ).emit()
    if outcome.fatal is not None:
        log.error("the batch could not be run: %s", outcome.fatal.message)
        failed = [m.message_id for m in messages]
    else:
        failed = source.failures()
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}


def _received(record: Mapping[str, Any]) -> Received | None:
    try:
        attributes = record.get("attributes") or {}
        sent = attributes.get("SentTimestamp")
        return Received(
            message_id=str(record["messageId"]),
            receipt_handle=str(record["receiptHandle"]),
            body=str(record.get("body", "")),
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            sent_at=int(sent) / 1000 if sent else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        log.error("an event record without an SQS message (%s) was skipped", exc)
        return None


def _write_line(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def _runtime(env: Mapping[str, str]) -> WorkerRuntime:
    key = hashlib.sha256(
        json.dumps(sorted((k, v) for k, v in env.items() if k.startswith("LONGBOW_"))).encode()
    ).hexdigest()
    with _Cache.lock:
        if _Cache.runtime is not None and _Cache.key == key:
            return _Cache.runtime
        if _Cache.runtime is not None:
            _Cache.runtime.close()
            _Cache.runtime = None
        runtime = WorkerRuntime(config_from_environment(env))
        _Cache.key, _Cache.runtime = key, runtime
        return runtime


def close_runtime() -> None:
    """Close the container's cached runtime (clients and stores), e.g. at shutdown."""
    with _Cache.lock:
        if _Cache.runtime is not None:
            _Cache.runtime.close()
        _Cache.key, _Cache.runtime = None, None


def config_from_environment(env: Mapping[str, str]) -> ClusterConfig:
    """The deployment's settings from LONGBOW_CONFIG and the LONGBOW_* variables (the
    settings loader's `load_deployment`).

    Raises:
        ConfigError: A value is invalid, or no queue or no pairs are named.
    """
    return load_deployment(env)


def _number(env: Mapping[str, str], variable: str, default: float) -> float:
    if variable not in env:
        return default
    value = env_value(env[variable], default, variable)
    if value < 0:
        raise ConfigError(f"{variable} cannot be negative")
    return float(value)


def setup_logging(env: Mapping[str, str]) -> None:
    """Secret-bearing loggers held at INFO (AWS_LAMBDA_LOG_LEVEL=DEBUG sets the root logger to
    debug) and, in Lambda or with LONGBOW_LOG_FORMAT=json, JSON log lines."""
    quiet_secret_loggers()
    fmt = env.get("LONGBOW_LOG_FORMAT") or ("json" if "AWS_LAMBDA_FUNCTION_NAME" in env else "")
    if fmt != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for h in root.handlers:
        if not isinstance(h.formatter, JsonLogFormatter):
            h.setFormatter(JsonLogFormatter())
    logging.getLogger("s3longbow").setLevel(logging.INFO)


__all__ = ["LambdaContext", "close_runtime", "config_from_environment", "handler", "setup_logging"]
