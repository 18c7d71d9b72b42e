"""The settings loader: every entry point's settings, from four layers, each over the ones
before it: defaults < config file < environment < flags.

- `load_settings(flags, env)`: `longbow sync` and `longbow verify`. The file is `--config`
  (pairs, sides, transfer settings, filters); the environment gives each side static keys;
  the flags are the command line's.
- `load_cluster(path, env, transfer, filters, telemetry)`: `longbow send`, `worker`,
  `cluster-init` and `status --cluster`. The file is a cluster config file; the environment
  gives each side static keys; the flags are `worker`'s `--workers` and `--part-threads`,
  `send`'s filters, and every command's log (and `worker`'s metrics) options.
- `load_deployment(env)`: the Lambda functions. The file is the one `LONGBOW_CONFIG` names;
  every `LONGBOW_*` variable below may override it; there are no flags.

A config file is checked on its own, as its command reads it, before the layers above it are
laid over it. What each layer may set:

========================  ==============================  ====================================
layer                     sides                           the rest
========================  ==============================  ====================================
file                      [source], [destination]         [[pairs]], transfer keys,
                                                          filter keys, log and metrics
                                                          keys, [cluster]
environment (every path)  LONGBOW_{SRC,DST}_ACCESS_KEY_ID,
                          _SECRET_ACCESS_KEY,
                          _SESSION_TOKEN
environment (Lambda)      LONGBOW_{SRC,DST}_ENDPOINT_URL,  LONGBOW_<cluster key>,
                          _REGION, _PROFILE, _PATH_STYLE   LONGBOW_<transfer key>, LONGBOW_PAIRS
flags                     --src-*, --dst-*                 SRC DST, transfer flags,
                                                          filter flags, --log-*,
                                                          --metrics-*, --db, ...
========================  ==============================  ====================================
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from s3longbow.config import (
    PairSettings,
    Settings,
    SideSettings,
    TransferSettings,
    default_db_path,
    load_config_file,
    load_ignore_file,
    pair_from,
    parse_size,
    restore_tier,
    with_inventory,
)
from s3longbow.customerkeys import decode_key, read_key_file
from s3longbow.errors import ConfigError
from s3longbow.plan.filters import Filters
from s3longbow.plan.inventory_listing import check_inventory_options
from s3longbow.selection import AgeLimit, FilterSpec, build_filters
from s3longbow.stores.location import check_endpoint_url
from s3longbow.telemetry import TelemetrySettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from s3longbow.cluster.settings import ClusterConfig

_Settings = TypeVar("_Settings", SideSettings, TransferSettings, TelemetrySettings)

# [cluster] settings that an environment variable LONGBOW_<NAME> may set (Lambda).
CLUSTER_VARIABLES = (
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
    "fanout_threshold",
    "fanout_parts",
)
# [cluster] settings given as sizes ("5GiB"): the table's own reading converts them.
_CLUSTER_SIZE_VARIABLES = ("fanout_threshold",)
# Transfer settings that an environment variable LONGBOW_<NAME> may set (Lambda).
TRANSFER_VARIABLES = (
    "workers",
    "part_threads",
    "part_size",
    "resumable_threshold",
    "memory_limit",
    "storage_class",
    "restore_days",
    "restore_tier",
)
# How to reach a side, from LONGBOW_{SRC,DST}_<NAME> (Lambda).
SIDE_VARIABLES = ("endpoint_url", "region", "profile", "path_style")
_SIZE_VARIABLES = ("part_size", "resumable_threshold", "memory_limit")
_ENVIRONMENT = Path("<environment>")


def _given(record: DataclassInstance) -> dict[str, Any]:
    """The fields of a flags record that were given (not None)."""
    return {
        f.name: value
        for f in dataclasses.fields(record)
        if (value := getattr(record, f.name)) is not None
    }


@dataclass(frozen=True)
class SideFlags:
    """The command line's `--src-*` or `--dst-*` options; None: not given."""

    profile: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool | None = None
    verify_ssl: bool | None = None
    allow_http: bool | None = None
    requester_pays: bool | None = None
    use_accelerate_endpoint: bool | None = None
    use_dualstack_endpoint: bool | None = None
    checksum_algorithm: str | None = None
    ca_bundle: str | None = None
    bucket_names: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    acl: str | None = None
    sse_c_key_file: str | None = None

    def changes(self) -> dict[str, Any]:
        """The SideSettings fields these flags set (a key file replaces a key from the
        environment)."""
        given = _given(self)
        if "sse_c_key_file" in given:
            given["sse_c_key"] = None
        return given


@dataclass(frozen=True)
class TransferFlags:
    """The command line's transfer options; None: not given."""

    workers: int | None = None
    autotune: bool | None = None
    part_threads: int | None = None
    part_size: int | None = None
    resumable_threshold: int | None = None
    memory_limit: int | None = None
    storage_class: str | None = None
    copy_tags: bool | None = None
    listing_threads: int | None = None
    bandwidth_limit: int | None = None
    min_rate: int | None = None
    prefix_read_rate: int | None = None
    prefix_write_rate: int | None = None
    rate_prefix: str | None = None
    max_attempts: int | None = None
    compare: str | None = None
    server_side_copy: bool | None = None
    relay: bool | None = None
    preserve_mtime: bool | None = None
    all_versions: bool | None = None
    update_properties: bool | None = None
    restore_days: int | None = None
    restore_tier: str | None = None
    no_overwrite: bool | None = None
    content_type_map: tuple[tuple[str, str], ...] | None = None
    set_metadata: tuple[tuple[str, str], ...] | None = None

    def changes(self) -> dict[str, Any]:
        """The TransferSettings fields these flags set."""
        return _given(self)


@dataclass(frozen=True)
class FilterFlags:
    """The command line's filter options; None: not given (a given one replaces the config
    file's key of the same name)."""

    include: tuple[str, ...] | None = None
    include_from: tuple[Path, ...] | None = None
    exclude: tuple[str, ...] | None = None
    exclude_from: tuple[Path, ...] | None = None
    filter: tuple[str, ...] | None = None
    filter_from: tuple[Path, ...] | None = None
    files_from: tuple[Path, ...] | None = None
    files_from_raw: tuple[Path, ...] | None = None
    ignore_case: bool | None = None
    min_size: int | None = None
    max_size: int | None = None
    min_age: AgeLimit | None = None
    max_age: AgeLimit | None = None

    def changes(self) -> dict[str, Any]:
        """The `build_filters` arguments these flags set."""
        return _given(self)


def filters_of(file: Mapping[str, Any], flags: FilterFlags | None = None) -> FilterSpec:
    """The filters of a run: the config file's filter keys, each replaced by its flag when
    given; the files they name are read, and every pattern is checked.

    Raises:
        ConfigError: A file cannot be read, a pattern is not valid, or the bounds leave
            nothing to take.
    """
    values = {**file, **(flags.changes() if flags is not None else {})}
    spec = build_filters(**values, now=time.time())
    Filters(spec)  # compiles every pattern: a bad one stops the run before anything is listed
    return spec


@dataclass(frozen=True)
class TelemetryFlags:
    """The command line's `--log-*` and `--metrics-*` options; None: not given."""

    log_file: Path | None = None
    log_format: str | None = None
    metrics_port: int | None = None
    metrics_address: str | None = None
    metrics_file: Path | None = None

    def changes(self) -> dict[str, Any]:
        """The TelemetrySettings fields these flags set."""
        return _given(self)


@dataclass(frozen=True)
class Flags:
    """What the command line of `longbow sync` or `verify` says.

    Attributes:
        src: SRC, or None (then the config file's [[pairs]]).
        dst: DST, or None.
        config_file: `--config`.
        ignore_file: `--ignore-file` (over the file's `ignore_file`).
        db_path: `--db` (over the file's `db`).
        source: The `--src-*` options.
        destination: The `--dst-*` options.
        transfer: The transfer options.
        filters: The filter options (`--include`, `--min-size`, ...).
        delete: `--delete`.
        force: `--force` (only with `delete`).
        max_delete: `--max-delete`, in percent.
        delete_excluded: `--delete-excluded` (only with `delete`).
        max_duration: `--max-duration`, in seconds.
        max_transfer: `--max-transfer`, in bytes.
        src_inventory: `--src-inventory`: the manifest of an S3 Inventory report that every
            pair reads instead of listing its source (over the pairs' `src_inventory`).
        telemetry: `--log-*` and `--metrics-*`.
        price_table: `--price-table`: a dry run's prices (over the file's `price_table`).
    """

    src: str | None = None
    dst: str | None = None
    config_file: Path | None = None
    ignore_file: Path | None = None
    db_path: Path | None = None
    source: SideFlags = field(default_factory=SideFlags)
    destination: SideFlags = field(default_factory=SideFlags)
    transfer: TransferFlags = field(default_factory=TransferFlags)
    filters: FilterFlags = field(default_factory=FilterFlags)
    delete: bool = False
    force: bool = False
    max_delete: float = 10.0
    delete_excluded: bool = False
    max_duration: float | None = None
    max_transfer: int | None = None
    src_inventory: str | None = None
    telemetry: TelemetryFlags = field(default_factory=TelemetryFlags)
    price_table: Path | None = None


def load_settings(flags: Flags, env: Mapping[str, str]) -> Settings:
    """`longbow sync` and `verify`: defaults < `--config` < static keys from the environment <
    flags.

    Raises:
        ConfigError: A layer holds something invalid, or nothing is named to copy.
    """
    file: dict[str, Any] = load_config_file(flags.config_file) if flags.config_file else {}
    if (flags.src is None) != (flags.dst is None):
        raise ConfigError(
            "give both SRC and DST, or neither (with --config listing [[pairs]])",
            hint="longbow sync s3://source-bucket/prefix s3://destination-bucket/prefix",
        )
    pairs: tuple[PairSettings, ...] = (
        (PairSettings(flags.src, flags.dst),)
        if flags.src is not None and flags.dst is not None
        else tuple(file.get("pairs", ()))
    )
    if not pairs:
        raise ConfigError(
            "nothing to copy: no SRC and DST given and no [[pairs]] in a config file",
            hint="longbow sync SRC DST, or longbow sync --config pairs.toml",
        )
    pairs = with_inventory(pairs, flags.src_inventory)
    transfer = dataclasses.replace(TransferSettings(), **file.get("transfer", {}))
    if flags.config_file and file.get("transfer"):
        try:  # name the file when its own settings are what is wrong
            transfer.validate()
        except ConfigError as exc:
            raise ConfigError(
                f"config file {flags.config_file}: {exc.message}", hint=exc.hint
            ) from None
    transfer = dataclasses.replace(transfer, **flags.transfer.changes())
    transfer.validate()
    sides = []
    for prefix, table, side_flags in (
        ("src", file.get("source", {}), flags.source),
        ("dst", file.get("destination", {}), flags.destination),
    ):
        side = _layered(SideSettings(**table), keys_from_environment(env, prefix.upper()))
        side = with_customer_key(_layered(side, side_flags.changes()))
        check_endpoint_url(
            side.endpoint_url, allow_http=side.allow_http, flag=f"--{prefix}-allow-http"
        )
        sides.append(side.validate(prefix))
    ignore_path = flags.ignore_file or file.get("ignore_file")
    settings = Settings(
        pairs=pairs,
        source=sides[0],
        destination=sides[1],
        transfer=transfer,
        ignore_patterns=load_ignore_file(ignore_path) if ignore_path else (),
        filters=filters_of(file.get("filters", {}), flags.filters),
        db_path=flags.db_path or file.get("db") or default_db_path(),
        telemetry=_layered(
            TelemetrySettings(**file.get("telemetry", {})), flags.telemetry.changes()
        ).validate(),
        price_table=flags.price_table or file.get("price_table"),
    )
    if flags.force and not flags.delete:
        raise ConfigError("--force only goes with --delete")
    if flags.delete_excluded and not flags.delete:
        raise ConfigError(
            "--delete-excluded only goes with --delete",
            hint="add --delete: the destination objects the filters leave out are then "
            "deleted with those the source no longer has",
        )
    check_inventory_options(pairs, transfer, delete=flags.delete)
    return dataclasses.replace(
        settings,
        delete=flags.delete,
        force=flags.force,
        delete_excluded=flags.delete_excluded,
        max_delete_fraction=flags.max_delete / 100,
        max_duration=flags.max_duration,
        max_transfer=flags.max_transfer,
    )


def load_cluster(
    path: Path,
    env: Mapping[str, str],
    transfer: TransferFlags | None = None,
    filters: FilterFlags | None = None,
    telemetry: TelemetryFlags | None = None,
) -> ClusterConfig:
    """`longbow send`, `worker`, `cluster-init`, `status --cluster`: defaults < the cluster
    config file < static keys from the environment < `transfer`, `filters` and `telemetry`
    flags.

    Raises:
        ConfigError: The file is missing or invalid, an endpoint is plain http to another
            machine without `allow_http`, or the keys in the environment are half set.
    """
    from s3longbow.cluster.settings import load_cluster_config

    config = load_cluster_config(path, filters.changes() if filters is not None else None)
    sides = []
    for name, prefix, side in (
        ("source", "SRC", config.source),
        ("destination", "DST", config.destination),
    ):
        side = with_customer_key(_layered(side, keys_from_environment(env, prefix)))
        check_endpoint_url(
            side.endpoint_url, allow_http=side.allow_http, flag=f"allow_http = true in [{name}]"
        )
        sides.append(side)
    config = dataclasses.replace(
        config,
        source=sides[0],
        destination=sides[1],
        telemetry=_layered(config.telemetry, telemetry.changes() if telemetry else {}).validate(),
    )
    changes = transfer.changes() if transfer is not None else {}
    if changes:
        settings = dataclasses.replace(config.transfer, **changes)
        settings.validate()
        config = dataclasses.replace(config, transfer=settings)
    return config


def load_deployment(env: Mapping[str, str]) -> ClusterConfig:
    """A Lambda function's settings: defaults < the file `LONGBOW_CONFIG` names (checked as
    `longbow worker` reads it) < every `LONGBOW_*` variable.

    The endpoints are checked when the stores open, not here.

    Raises:
        ConfigError: A value is invalid, or no queue or no pairs are named.
    """
    from s3longbow.cluster.config import ClusterSettings, parse_cluster_table
    from s3longbow.cluster.settings import ClusterConfig, check_pairs, load_cluster_config

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
    for name in CLUSTER_VARIABLES:
        variable = f"LONGBOW_{name.upper()}"
        if variable in env and name in _CLUSTER_SIZE_VARIABLES:
            table[name] = env[variable]
        elif variable in env:
            table[name] = env_value(env[variable], getattr(defaults, name), variable)
    if "queue_url" in table:
        table.pop("queue_name", None)
    cluster = parse_cluster_table(table, _ENVIRONMENT)

    transfer = _layered(base.transfer if base else TransferSettings(), _transfer_variables(env))
    transfer.validate()

    pairs = base.pairs if base else ()
    if "LONGBOW_PAIRS" in env:
        pairs = _pairs_variable(env["LONGBOW_PAIRS"])
    if cluster.pairs_parameter:
        pairs = ()
    elif not pairs:
        raise ConfigError(
            "no pairs to copy",
            hint="set LONGBOW_PAIRS, LONGBOW_PAIRS_PARAMETER, or [[pairs]] in LONGBOW_CONFIG",
        )
    check_pairs(pairs, "LONGBOW_PAIRS")

    sides = []
    for prefix, side in (
        ("SRC", base.source if base else SideSettings()),
        ("DST", base.destination if base else SideSettings()),
    ):
        side = _layered(side, _side_variables(env, prefix))
        sides.append(with_customer_key(_layered(side, keys_from_environment(env, prefix))))
    return ClusterConfig(
        cluster=cluster,
        source=sides[0],
        destination=sides[1],
        transfer=transfer,
        pairs=pairs,
        ignore_patterns=base.ignore_patterns if base else (),
        filters=base.filters if base else FilterSpec(),
    )


def keys_from_environment(env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """Static keys from LONGBOW_{prefix}_ACCESS_KEY_ID and friends, and an SSE-C key from
    LONGBOW_{prefix}_SSE_C_KEY (over a config file's key file), when they are set.

    Raises:
        ConfigError: Only one of the key id and the secret key is set, or the SSE-C key is
            not the base64 of 32 bytes.
    """
    key = env.get(f"LONGBOW_{prefix}_ACCESS_KEY_ID")
    secret = env.get(f"LONGBOW_{prefix}_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        raise ConfigError(
            f"LONGBOW_{prefix}_ACCESS_KEY_ID and LONGBOW_{prefix}_SECRET_ACCESS_KEY must be set "
            "together",
        )
    found: dict[str, Any] = {}
    customer = env.get(f"LONGBOW_{prefix}_SSE_C_KEY")
    if customer:
        found["sse_c_key"] = decode_key(customer, f"LONGBOW_{prefix}_SSE_C_KEY")
        found["sse_c_key_file"] = None
    if not key:
        return found
    return {
        **found,
        "access_key_id": key,
        "secret_access_key": secret,
        "session_token": env.get(f"LONGBOW_{prefix}_SESSION_TOKEN") or None,
    }


def with_customer_key(side: SideSettings) -> SideSettings:
    """The side with the SSE-C key its key file holds, where the last layer named a file.

    Raises:
        ConfigError: The file cannot be read or holds no key.
    """
    if side.sse_c_key_file is None:
        return side
    return dataclasses.replace(side, sse_c_key=read_key_file(side.sse_c_key_file))


def env_value(text: str, like: object, variable: str) -> Any:
    """An environment variable's value converted to the type of `like`.

    Raises:
        ConfigError: The text is not a value of that type (naming the variable).
    """
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


def _layered(settings: _Settings, changes: Mapping[str, Any]) -> _Settings:
    """`settings` with the fields a layer sets replaced."""
    return dataclasses.replace(settings, **changes) if changes else settings


def _transfer_variables(env: Mapping[str, str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in TRANSFER_VARIABLES:
        variable = f"LONGBOW_{name.upper()}"
        if variable not in env:
            continue
        if name in _SIZE_VARIABLES:
            changes[name] = parse_size(env[variable], what=variable)
        elif name == "storage_class":
            changes[name] = env[variable]
        elif name == "restore_tier":
            changes[name] = restore_tier(env[variable])
        else:
            changes[name] = env_value(env[variable], 1, variable)
    return changes


def _side_variables(env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in SIDE_VARIABLES:
        variable = f"LONGBOW_{prefix}_{name.upper()}"
        if variable not in env:
            continue
        if name == "path_style":
            changes[name] = env_value(env[variable], False, variable)
        else:
            changes[name] = env[variable] or None
    return changes


def _pairs_variable(text: str) -> tuple[PairSettings, ...]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError("LONGBOW_PAIRS is not JSON") from None
    pairs = [pair_from(item) for item in value] if isinstance(value, list) else [None]
    if None in pairs:
        raise ConfigError(
            'LONGBOW_PAIRS must be a JSON list of {"src", "dst"} objects (each may also name '
            "its src_inventory)",
            hint='e.g. [{"src": "s3://source/prefix/", "dst": "s3://destination/prefix/"}]',
        )
    return tuple(p for p in pairs if p is not None)


__all__ = [
    "CLUSTER_VARIABLES",
    "SIDE_VARIABLES",
    "TRANSFER_VARIABLES",
    "FilterFlags",
    "Flags",
    "SideFlags",
    "TelemetryFlags",
    "TransferFlags",
    "env_value",
    "filters_of",
    "keys_from_environment",
    "with_customer_key",
    "load_cluster",
    "load_deployment",
    "load_settings",
]
