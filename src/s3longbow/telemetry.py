"""Where a command's logs and metrics go: the settings behind `--log-file`, `--log-format`,
`--metrics-port`, `--metrics-address` and `--metrics-file`, and the reading of the config-file
keys of the same names (`log_file`, `log_format`, ...), which every command reading a config
file accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3longbow.errors import ConfigError

LOG_FORMATS = ("text", "json")
DEFAULT_METRICS_ADDRESS = "127.0.0.1"
TELEMETRY_KEYS = frozenset(
    {"log_file", "log_format", "metrics_port", "metrics_address", "metrics_file"}
)
_PATH_KEYS = ("log_file", "metrics_file")


@dataclass(frozen=True)
class TelemetrySettings:
    """Where logs and metrics go.

    Attributes:
        log_file: Log lines are appended to this file instead of standard error.
        log_format: "text" or "json" (one JSON object a line); None: the command's own
            (text, or JSON for `longbow worker`).
        metrics_port: Serve the counters in Prometheus' text format on this TCP port
            (0: any free port); None: no endpoint.
        metrics_address: The address the endpoint listens on (this machine only by default).
        metrics_file: Keep the counters in this file in Prometheus' text format (for
            node_exporter's textfile collector), rewritten every few seconds and at the end.
    """

    log_file: Path | None = None
    log_format: str | None = None
    metrics_port: int | None = None
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    metrics_file: Path | None = None

    @property
    def exports_metrics(self) -> bool:
        """Whether an endpoint or a file is asked for."""
        return self.metrics_port is not None or self.metrics_file is not None

    def validate(self) -> TelemetrySettings:
        """This record, checked.

        Raises:
            ConfigError: A format, port or address is not valid.
        """
        if self.log_format is not None and self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"log format {self.log_format!r} is not known",
                hint=f"use one of: {', '.join(LOG_FORMATS)}",
            )
        port = self.metrics_port
        if port is not None and (isinstance(port, bool) or not 0 <= port <= 65535):
            raise ConfigError(
                f"metrics port {port!r} is not a TCP port",
                hint="give a number from 1 to 65535 (0: any free port)",
            )
        if not self.metrics_address.strip():
            raise ConfigError(
                "the metrics address is empty",
                hint=f"give an address to listen on, e.g. {DEFAULT_METRICS_ADDRESS}",
            )
        return self


def telemetry_in_file(raw: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The telemetry keys of a config file as `TelemetrySettings` fields; a path is taken
    relative to the file.

    Raises:
        ConfigError: A key holds a value of the wrong type (naming the file and the key).
    """
    out: dict[str, Any] = {}
    for key in TELEMETRY_KEYS & set(raw):
        value = raw[key]
        if key == "metrics_port":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"config file {path}: {key} must be a whole number")
            out[key] = value
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"config file {path}: {key} must be a non-empty string")
        out[key] = (path.parent / Path(value).expanduser()) if key in _PATH_KEYS else value
    try:
        TelemetrySettings(**out).validate()
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc.message}", hint=exc.hint) from None
    return out


__all__ = [
    "DEFAULT_METRICS_ADDRESS",
    "LOG_FORMATS",
    "TELEMETRY_KEYS",
    "TelemetrySettings",
    "telemetry_in_file",
]
