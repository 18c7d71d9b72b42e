"""AWS Lambda entry point: run the jobs of an SQS event with the same engine as
`longbow worker`, and report the records that must come back (partial batch response).

Configure the event source mapping with `ReportBatchItemFailures`. When the invocation's
remaining time falls below `LONGBOW_TIME_MARGIN_SECONDS`, no new part is started: the parts
in flight finish, each unfinished job is given back with its multipart upload left open, and
its record is reported as failed and made visible at once, so the next invocation resumes the
upload from the parts already sent.

Environment variables (each optional unless said otherwise; they override the config file):

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

import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from s3longbow.cluster.config import ClusterSettings, parse_cluster_table
from s3longbow.cluster.jobqueue import BatchSource
from s3longbow.cluster.metrics import ClusterCounters, JsonLogFormatter, MetricsEmitter
from s3longbow.cluster.service import WorkerRuntime
from s3longbow.cluster.settings import ClusterConfig, check_pairs, load_cluster_config
from s3longbow.cluster.sqs import Received
from s3longbow.config import (
    PairSettings,
    SideSettings,
    TransferSettings,
    parse_size,
    side_from_environment,
)
from s3longbow.errors import ConfigError
from s3longbow.handlers.deadline import stop_before_deadline
from s3longbow.logsafety import quiet_secret_loggers
from s3longbow.progress.stats import Stats

log = logging.getLogger("s3longbow.handlers.sqs_worker")

DEFAULT_MARGIN_SECONDS = 60.0
_ENV_SOURCE = Path("<environment>")
# [cluster] settings that an environment variable LONGBOW_<NAME> may set.
_CLUSTER_ENV = (
    "queue_url",
    "dead_letter_queue_url",
    "table",
    "region",
    "endpoint_url",
    "visibility_timeout",
    "max_receive_count",
    "pairs_parameter",
    "credentials_parameter",
    "credentials_side",
    "delete_removed",
    "retry_base_seconds",
    "retry_max_seconds",
)
_TRANSFER_ENV = (
    "workers",
    "part_threads",
    "part_size",
    "resumable_threshold",
    "memory_limit",
    "storage_class",
)


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
    """The deployment's settings from LONGBOW_CONFIG and the LONGBOW_* variables.

    Raises:
        ConfigError: A value is invalid, or no queue or no pairs are named.
    """
    path = env.get("LONGBOW_CONFIG")
    base = load_cluster_config(Path(path)) if path else None
    table: dict[str, Any] = {}
    if base is not None:
        table = {
            k: (v.value if hasattr(v, "value") else v)
            for k, v in dataclasses.asdict(base.cluster).items()
            if v is not None
        }
    defaults = ClusterSettings()
    for name in _CLUSTER_ENV:
        variable = f"LONGBOW_{name.upper()}"
        if variable in env:
            table[name] = _typed(env[variable], getattr(defaults, name), variable)
    if "queue_url" in table:
        table.pop("queue_name", None)
    cluster = parse_cluster_table(table, _ENV_SOURCE)

    transfer = base.transfer if base else TransferSettings()
    changes: dict[str, Any] = {}
    for name in _TRANSFER_ENV:
        variable = f"LONGBOW_{name.upper()}"
        if variable not in env:
            continue
        if name in ("part_size", "resumable_threshold", "memory_limit"):
            changes[name] = parse_size(env[variable], what=variable)
        elif name == "storage_class":
            changes[name] = env[variable]
        else:
            changes[name] = _typed(env[variable], 1, variable)
    transfer = dataclasses.replace(transfer, **changes)
    transfer.validate()

    pairs = base.pairs if base else ()
    if "LONGBOW_PAIRS" in env:
        pairs = _pairs(env["LONGBOW_PAIRS"])
    if cluster.pairs_parameter:
        pairs = ()
    elif not pairs:
        raise ConfigError(
            "no pairs to copy",
            hint="set LONGBOW_PAIRS, LONGBOW_PAIRS_PARAMETER, or [[pairs]] in LONGBOW_CONFIG",
        )
    check_pairs(pairs, "LONGBOW_PAIRS")
    return ClusterConfig(
        cluster=cluster,
        source=side_from_environment("SRC", _side(env, "SRC", base.source if base else None)),
        destination=side_from_environment(
            "DST", _side(env, "DST", base.destination if base else None)
        ),
        transfer=transfer,
        pairs=pairs,
        ignore_patterns=base.ignore_patterns if base else (),
    )


def _side(env: Mapping[str, str], prefix: str, base: SideSettings | None) -> SideSettings:
    side = base or SideSettings()
    changes: dict[str, Any] = {}
    for name in ("endpoint_url", "region", "profile"):
        if f"LONGBOW_{prefix}_{name.upper()}" in env:
            changes[name] = env[f"LONGBOW_{prefix}_{name.upper()}"] or None
    variable = f"LONGBOW_{prefix}_PATH_STYLE"
    if variable in env:
        changes["path_style"] = _typed(env[variable], False, variable)
    return dataclasses.replace(side, **changes)


def _pairs(text: str) -> tuple[PairSettings, ...]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError("LONGBOW_PAIRS is not JSON") from None
    if not isinstance(value, list) or not all(
        isinstance(p, dict)
        and set(p) == {"src", "dst"}
        and all(isinstance(v, str) for v in p.values())
        for p in value
    ):
        raise ConfigError(
            'LONGBOW_PAIRS must be a JSON list of {"src", "dst"} objects',
            hint='e.g. [{"src": "s3://source/prefix/", "dst": "s3://destination/prefix/"}]',
        )
    return tuple(PairSettings(p["src"], p["dst"]) for p in value)


def _typed(text: str, like: object, variable: str) -> Any:
    """Convert an environment value to the type of `like`."""
    try:
        if isinstance(like, bool):
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"{variable}={text!r} is not a valid {type(like).__name__}") from None
    return text


def _number(env: Mapping[str, str], variable: str, default: float) -> float:
    if variable not in env:
        return default
    value = _typed(env[variable], default, variable)
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
