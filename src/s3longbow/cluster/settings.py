"""A cluster deployment's settings: the config file, then what SSM adds at start (the pairs,
and one side's keys). Environment variables are applied by the entry points (cli, handlers).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3longbow.config import (
    PAIR_SHAPE,
    TOP_KEYS,
    PairSettings,
    Settings,
    SideSettings,
    TransferSettings,
    load_ignore_file,
    normalise_config,
    pair_from,
    read_toml,
)
from s3longbow.errors import ConfigError
from s3longbow.plan.filters import Filters
from s3longbow.selection import FilterSpec, build_filters
from s3longbow.stores.location import parse_location
from s3longbow.telemetry import TelemetrySettings

from .config import ClusterSettings, CredentialsSide, parse_cluster_table
from .messages import Route

if TYPE_CHECKING:
    from .aws import Parameters

_CREDENTIAL_KEYS = {"access_key_id", "secret_access_key", "session_token", "region"}


@dataclass(frozen=True)
class ClusterConfig:
    """Everything a sender or a worker of one deployment needs.

    Attributes:
        cluster: The `[cluster]` table.
        source: How to reach the source side.
        destination: How to reach the destination side.
        transfer: Transfer settings (workers, part size, ...).
        pairs: The `[[pairs]]` of the file (empty when `pairs_parameter` names them).
        ignore_patterns: Ignore patterns for the sender and for S3 events.
        filters: The filters of the sender (`include`, `min_size`, ...).
        telemetry: Where logs and metrics go (`log_file`, `metrics_port`, ...).
        price_table: `send --dry-run`'s prices (None: the built-in table).
    """

    cluster: ClusterSettings
    source: SideSettings = SideSettings()
    destination: SideSettings = SideSettings()
    transfer: TransferSettings = TransferSettings()
    pairs: tuple[PairSettings, ...] = ()
    ignore_patterns: tuple[str, ...] = ()
    filters: FilterSpec = FilterSpec()
    telemetry: TelemetrySettings = TelemetrySettings()
    price_table: Path | None = None

    def settings(self, pairs: tuple[PairSettings, ...]) -> Settings:
        """The single-machine Settings of these pairs (to reuse planning and stores)."""
        return Settings(
            pairs=pairs,
            source=self.source,
            destination=self.destination,
            transfer=self.transfer,
            ignore_patterns=self.ignore_patterns,
            filters=self.filters,
            price_table=self.price_table,
        )


def load_cluster_config(path: Path, filters: Mapping[str, Any] | None = None) -> ClusterConfig:
    """Read and check a cluster config file (no network, no environment).

    Args:
        path: The file.
        filters: Filter values given on the command line (`build_filters` arguments), each
            over the file's key of the same name.

    Raises:
        ConfigError: The file is missing, invalid, or names no pairs and no pairs parameter.
    """
    raw = read_toml(path)
    if "cluster" not in raw:
        raise ConfigError(
            f"config file {path} has no [cluster] table",
            hint="add [cluster] with queue_url (or queue_name) and table; see docs/cluster.md",
        )
    cluster = parse_cluster_table(raw.pop("cluster"), path)
    file = normalise_config(raw, path, TOP_KEYS | {"cluster"})
    transfer = dataclasses.replace(TransferSettings(), **file.get("transfer", {}))
    transfer.validate()
    if transfer.compare == "version":
        raise ConfigError(
            f'config file {path}: compare = "version" works with `longbow sync` only',
            hint="use size, etag or mtime in cluster mode",
        )
    for key in ("all_versions", "update_properties"):
        if getattr(transfer, key):
            raise ConfigError(
                f"config file {path}: {key} works with `longbow sync` only, not in cluster mode",
                hint=f"remove {key} from the file, or run `longbow sync` with it",
            )
    pairs = tuple(file.get("pairs", ()))
    if pairs and cluster.pairs_parameter:
        raise ConfigError(
            f"config file {path}: both [[pairs]] and [cluster] pairs_parameter are set",
            hint="keep one source of pairs",
        )
    if not pairs and not cluster.pairs_parameter:
        raise ConfigError(
            f"config file {path}: no pairs to copy",
            hint="list [[pairs]] with src and dst, or set [cluster] pairs_parameter",
        )
    check_pairs(pairs, f"config file {path}")
    ignore_file = file.get("ignore_file")
    spec = build_filters(**{**file["filters"], **(filters or {})}, now=time.time())
    Filters(spec)  # every pattern compiles, or the command stops here
    return ClusterConfig(
        cluster=cluster,
        source=SideSettings(**file.get("source", {})).validate("src"),
        destination=SideSettings(**file.get("destination", {})).validate("dst"),
        transfer=transfer,
        pairs=pairs,
        ignore_patterns=load_ignore_file(ignore_file) if ignore_file else (),
        filters=spec,
        telemetry=TelemetrySettings(**file["telemetry"]),
        price_table=file.get("price_table"),
    )


def check_pairs(pairs: tuple[PairSettings, ...], where: str) -> None:
    """Cluster mode copies between buckets only: both sides must be s3:// locations."""
    for i, pair in enumerate(pairs, 1):
        for text in (pair.src, pair.dst):
            if not parse_location(text).is_s3:
                raise ConfigError(
                    f"{where}: pair {i} names {text!r}; cluster mode copies between buckets only",
                    hint="use s3://bucket/prefix on both sides, or `longbow sync` for directories",
                )


def resolve_pairs(config: ClusterConfig, parameters: Parameters) -> tuple[PairSettings, ...]:
    """The pairs of the file, or those the pairs parameter holds (JSON [{"src", "dst"}], each
    may also name its "src_inventory")."""
    name = config.cluster.pairs_parameter
    if not name:
        return config.pairs
    value = parameters.json(name, decrypt=True)
    where = f"SSM parameter {name!r}"
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{where} must hold a non-empty JSON list of pairs",
            hint='e.g. [{"src": "s3://source/prefix/", "dst": "s3://destination/prefix/"}]',
        )
    pairs = []
    for i, item in enumerate(value, 1):
        pair = pair_from(item)
        if pair is None:
            raise ConfigError(f"{where}: pair {i} {PAIR_SHAPE}")
        pairs.append(pair)
    result = tuple(pairs)
    check_pairs(result, where)
    return result


def resolve_credentials(config: ClusterConfig, parameters: Parameters) -> ClusterConfig:
    """Give the configured side the keys held by the credentials parameter, if one is set.

    The parameter is an SSM SecureString holding JSON: `access_key_id`, `secret_access_key`,
    optional `session_token` and `region`. The other side keeps the default chain.
    """
    name = config.cluster.credentials_parameter
    if not name:
        return config
    value: Any = parameters.json(name, decrypt=True)
    where = f"SSM parameter {name!r}"
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must hold a JSON object with access_key_id and secret key")
    unknown = sorted(set(value) - _CREDENTIAL_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(_CREDENTIAL_KEYS))}",
        )
    for key in ("access_key_id", "secret_access_key"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise ConfigError(f"{where} must hold a non-empty string {key}")
    for key in ("session_token", "region"):
        if key in value and not isinstance(value[key], str):
            raise ConfigError(f"{where}: {key} must be a string")
    side_name = config.cluster.credentials_side
    side = config.destination if side_name is CredentialsSide.DESTINATION else config.source
    side = dataclasses.replace(
        side,
        access_key_id=value["access_key_id"],
        secret_access_key=value["secret_access_key"],
        session_token=value.get("session_token") or None,
        region=value.get("region") or side.region,
    )
    if side_name is CredentialsSide.DESTINATION:
        return dataclasses.replace(config, destination=side)
    return dataclasses.replace(config, source=side)


def routes_of(pairs: tuple[PairSettings, ...]) -> tuple[Route, ...]:
    """The event routes of S3 pairs."""
    routes = []
    for pair in pairs:
        src, dst = parse_location(pair.src), parse_location(pair.dst)
        routes.append(Route(src.bucket, src.prefix, dst.bucket, dst.prefix))
    return tuple(routes)


__all__ = [
    "ClusterConfig",
    "check_pairs",
    "load_cluster_config",
    "resolve_credentials",
    "resolve_pairs",
    "routes_of",
]
