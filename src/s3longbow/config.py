"""Frozen settings and their config file (TOML). The layering of defaults < config file <
environment < flags is `s3longbow.loader`'s; sizes like "16MiB" are `s3longbow.sizes`'."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from s3longbow.checksums import normalise_algorithm

# The `[cluster]` table's settings live in s3longbow.cluster.config (a leaf); the name stays
# importable from here for the modules that still import it from here.
from s3longbow.errors import ConfigError
from s3longbow.ratelimit import READS_PER_PREFIX, WRITES_PER_PREFIX, PrefixDepth
from s3longbow.rewrites import metadata_table, read_content_type_map
from s3longbow.selection import FILTER_KEYS, FilterSpec, filters_in_file

# Sizes stay importable from here for the modules that import them from here.
from s3longbow.sizes import GiB, KiB, MiB, format_size, parse_rate, parse_size
from s3longbow.telemetry import TELEMETRY_KEYS, TelemetrySettings, telemetry_in_file

# A bound on restore-days that catches a slip of the keyboard: a restored copy is billed for
# every day it stays, beside the archived object.
MAX_RESTORE_DAYS = 30_000

# S3's multipart limits: parts between 5 MiB and 5 GiB (the last may be smaller), 10,000 at most.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

# When an object present at the destination is copied again (see plan/diff.py).
CompareMode = Literal["size", "etag", "mtime", "version"]
COMPARE_MODES: tuple[CompareMode, ...] = ("size", "etag", "mtime", "version")
# What planning compares: a mode, or "history" (every key, its versions compared by its job).
PlanCompare = Literal["size", "etag", "mtime", "version", "history"]
CHECKSUM_POLICIES = ("auto", "MD5")
RESTORE_TIERS = ("Standard", "Bulk", "Expedited")  # how fast (and dear) an archive restore is
BUCKET_NAMING = ("strict", "relaxed")  # S3's bucket naming rules, or other stores' looser ones
SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
KEEP_CLASS = "keep"  # --storage-class keep: each copy in its source's class
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)


@dataclass(frozen=True)
class SideSettings:
    """How to reach one side (source or destination) of a migration.

    Credentials come from the profile, the LONGBOW_{SRC,DST}_* environment variables or the
    default credential chain; never from a file the tool writes.
    """

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    path_style: bool = False
    verify_ssl: bool = True  # off only when asked; a warning says so
    allow_http: bool = False  # plain http beyond loopback addresses only when asked
    requester_pays: bool = False  # the bucket's owner bills the requester (this side's account)
    # AWS only: S3 Transfer Acceleration (bucket.s3-accelerate.amazonaws.com), and the
    # dual-stack endpoints (IPv6 and IPv4), alone or together.
    use_accelerate_endpoint: bool = False
    use_dualstack_endpoint: bool = False
    # "auto": ask for and send S3 additional checksums where they help; "MD5": Content-MD5
    # only, for stores that reject the newer checksum headers; or an algorithm (CRC32C, CRC32,
    # SHA256, CRC64NVME) that every write to this side carries.
    checksum_algorithm: str = "auto"
    sse: str | None = None  # server-side encryption of writes: AES256, aws:kms, aws:kms:dsse
    sse_kms_key_id: str | None = None
    acl: str | None = None  # canned ACL of writes, e.g. bucket-owner-full-control
    # PEM file of the certificate authorities this side's https endpoint is checked against;
    # unset: AWS_CA_BUNDLE, the profile's ca_bundle, REQUESTS_CA_BUNDLE, then certifi's.
    ca_bundle: str | None = None
    # "strict": S3's bucket naming rules; "relaxed": other stores' (capitals, underscores).
    bucket_names: str = "strict"
    # A file holding this side's SSE-C key (base64, or 32 raw bytes); the key read from it,
    # or from LONGBOW_{SRC,DST}_SSE_C_KEY, goes with every request about an object.
    sse_c_key_file: str | None = None
    sse_c_key: bytes | None = field(default=None, repr=False)
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    def validate(self, which: str) -> SideSettings:
        """Check the write and checksum options; return them in canonical spelling.

        `which` is "src" or "dst", as the command-line options are named.
        """
        name = self.checksum_algorithm
        if name.lower() == "auto" or name.upper() == "MD5":
            algorithm = "auto" if name.lower() == "auto" else "MD5"
        else:
            try:
                algorithm = normalise_algorithm(name)
            except ValueError:
                raise ConfigError(
                    f"--{which}-checksum-algorithm {name!r} is not known",
                    hint="use auto, MD5 (Content-MD5 only), CRC32, CRC32C, CRC64NVME, SHA1 or "
                    "SHA256",
                ) from None
        if self.sse is not None and self.sse not in SSE_MODES:
            raise ConfigError(
                f"--sse {self.sse!r} is not a server-side encryption mode",
                hint=f"use one of {', '.join(SSE_MODES)}",
            )
        if self.sse_kms_key_id and self.sse not in ("aws:kms", "aws:kms:dsse"):
            raise ConfigError(
                "--sse-kms-key-id needs --sse aws:kms (or aws:kms:dsse)",
                hint="add --sse aws:kms, or leave the key id out to use the default key",
            )
        if self.acl is not None and self.acl not in CANNED_ACLS:
            raise ConfigError(
                f"--acl {self.acl!r} is not a canned ACL",
                hint=f"use one of {', '.join(CANNED_ACLS)}",
            )
        if self.bucket_names not in BUCKET_NAMING:
            raise ConfigError(
                f"--{which}-bucket-names {self.bucket_names!r} is not a naming rule",
                hint="use strict (S3's rules) or relaxed (other stores' names)",
            )
        self._check_aws_endpoints(which)
        if self.ca_bundle is not None and not Path(self.ca_bundle).expanduser().is_file():
            raise ConfigError(
                f"--{which}-ca-bundle {self.ca_bundle}: no such file",
                hint="give the PEM file of the certificate authorities to trust",
            )
        return dataclasses.replace(self, checksum_algorithm=algorithm)

    def _check_aws_endpoints(self, which: str) -> None:
        """Acceleration and dual-stack name AWS's own endpoints: neither goes with an
        endpoint URL, and acceleration reaches buckets by host name only, never in China."""
        chosen = [
            f"--{which}-use-{name}-endpoint"
            for name, on in (
                ("accelerate", self.use_accelerate_endpoint),
                ("dualstack", self.use_dualstack_endpoint),
            )
            if on
        ]
        if chosen and self.endpoint_url:
            raise ConfigError(
                f"{' and '.join(chosen)} cannot go with --{which}-endpoint-url "
                f"{self.endpoint_url}: they choose AWS's own endpoints",
                hint=f"leave out --{which}-endpoint-url for AWS, or give the endpoint URL "
                "alone (a dual-stack or accelerated URL of your own included)",
            )
        if not self.use_accelerate_endpoint:
            return
        if self.path_style:
            raise ConfigError(
                f"--{which}-use-accelerate-endpoint cannot go with --{which}-path-style: "
                "S3 Transfer Acceleration reaches buckets by host name only",
                hint=f"leave out --{which}-path-style (path_style) for this side",
            )
        if self.region and self.region.startswith("cn-"):
            raise ConfigError(
                f"--{which}-use-accelerate-endpoint: S3 Transfer Acceleration is not offered "
                f"in the China regions ({self.region})",
                hint=f"leave it out; --{which}-use-dualstack-endpoint works in China",
            )


# The most each count setting may be, from the command line or a config file: beyond these a
# run would start absurd numbers of threads or retry a hopeless job almost forever.
COUNT_LIMITS = {
    "workers": 1024,
    "part_threads": 256,
    "max_attempts": 100,
    "part_attempts": 100,
    "listing_threads": 64,
}


@dataclass(frozen=True)
class TransferSettings:
    """Knobs of the transfer engine. Memory in flight is at most `memory_limit` bytes of buffers."""

    # The most objects in flight at once. With autotune the run finds how many pay on its
    # path, starting at 64 and never above this; without it, exactly this many run.
    workers: int = 256
    autotune: bool = True
    part_threads: int = 16  # the most parts of one object in flight
    part_size: int = 8 * MiB
    resumable_threshold: int = 5 * MiB
    memory_limit: int = 96 * MiB
    storage_class: str | None = None
    copy_tags: bool = True
    listing_threads: int = 8
    bandwidth_limit: int | None = None  # bytes per second sent, for the whole process
    # Once bytes flow, a request and its reply must move this many bytes a second at least,
    # on average over 30 s, or fail as a timeout (0: no minimum): a server that trickles
    # cannot hold a worker forever.
    min_rate: int = 64 * KiB
    # Requests per second per key prefix (0: no cap, and a SlowDown slows no prefix): S3's
    # documented rates per partitioned prefix; a SlowDown lowers its prefix's rate below them.
    prefix_read_rate: int = READS_PER_PREFIX
    prefix_write_rate: int = WRITES_PER_PREFIX
    rate_prefix: str = "segments:1"  # what names a key's prefix: segments:N or chars:N
    max_attempts: int = 3
    part_attempts: int = 5
    lease_seconds: float = 120.0
    compare: CompareMode = "size"  # when a present destination object is replaced
    server_side_copy: bool = True  # copy on the server when one endpoint and account hold both
    relay: bool = True  # move bytes that need no checksum of ours as they arrive
    # Files keep modification times: x-amz-meta-mtime on upload, the file's time on download.
    preserve_mtime: bool = False
    all_versions: bool = False  # copy every version of each key, oldest first
    update_properties: bool = False  # fix properties and tags of objects already copied
    # Archived sources (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering archive tiers): ask for a
    # restore kept this many days, and copy each once a later run finds it readable (None:
    # ask for none; such objects are reported as needing a restore).
    restore_days: int | None = None
    restore_tier: str | None = None  # Standard (None), Bulk or Expedited: speed and price
    # Never replace an object the destination has: writes carry If-None-Match: *, and a
    # present object that differs is reported as not replaced.
    no_overwrite: bool = False
    # (extension, Content-Type) pairs for copies whose source has no, or a generic, type;
    # a config file names the file they are read from (see s3longbow.rewrites).
    content_type_map: tuple[tuple[str, str], ...] = ()
    set_metadata: tuple[tuple[str, str], ...] = ()  # user metadata every copy gets

    @property
    def keeps_storage_class(self) -> bool:
        """--storage-class keep: each copy in its source's own class (STANDARD: none named)."""
        return (self.storage_class or "").lower() == KEEP_CLASS

    @property
    def planning_compare(self) -> PlanCompare:
        """The comparison planning uses: with all versions, every key's history is compared
        when its job runs, so every key is planned."""
        return "history" if self.all_versions else self.compare

    def validate(self) -> None:
        """Reject settings that cannot work, with the fix in the message."""
        for name, most in COUNT_LIMITS.items():
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1")
            if value > most:
                raise ConfigError(
                    f"{name.replace('_', '-')} {value} is above {most}",
                    hint=f"choose at most {most}",
                )
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"part-size {format_size(self.part_size)} is outside S3's limits",
                hint="choose a part size between 5MiB and 5GiB",
            )
        if self.resumable_threshold < 0:
            raise ConfigError("resumable-threshold cannot be negative")
        if self.resumable_threshold > MAX_PART_SIZE:
            raise ConfigError(
                "resumable-threshold is above 5GiB, the largest single PUT S3 accepts",
                hint="choose a threshold of at most 5GiB",
            )
        if self.bandwidth_limit is not None and self.bandwidth_limit < 1024:
            raise ConfigError(
                "bwlimit is below 1 KiB/s",
                hint="give a rate such as 200MiB/s (or leave it out for no limit)",
            )
        for name in ("prefix_read_rate", "prefix_write_rate"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"{name.replace('_', '-')} cannot be negative",
                    hint="give requests per second per prefix, or 0 for no cap",
                )
        PrefixDepth.parse(self.rate_prefix)
        if self.compare not in COMPARE_MODES:
            raise ConfigError(
                f"compare {self.compare!r} is not a comparison mode",
                hint="use size (the default), etag, mtime or version",
            )
        if self.restore_days is not None and (
            isinstance(self.restore_days, bool)
            or not isinstance(self.restore_days, int)
            or not 1 <= self.restore_days <= MAX_RESTORE_DAYS
        ):
            raise ConfigError(
                f"restore-days {self.restore_days!r} is not a number of days",
                hint=f"give a whole number of days from 1 to {MAX_RESTORE_DAYS}",
            )
        if self.restore_tier is not None:
            if self.restore_tier not in RESTORE_TIERS:
                raise ConfigError(
                    f"restore-tier {self.restore_tier!r} is not a retrieval tier",
                    hint=f"use one of {', '.join(RESTORE_TIERS)}",
                )
            if self.restore_days is None:
                raise ConfigError(
                    "restore-tier needs restore-days",
                    hint="add --restore-days N (how long the restored copies stay readable)",
                )
        if self.no_overwrite and (self.all_versions or self.update_properties):
            raise ConfigError(
                "no-overwrite cannot go with "
                + ("all-versions" if self.all_versions else "update-properties")
                + ": both change objects the destination has",
                hint="leave one of them out",
            )
        if self.memory_limit < self.part_size:
            raise ConfigError(
                "memory-limit is smaller than one part",
                hint=f"raise memory-limit to at least {format_size(self.part_size)}",
            )


@dataclass(frozen=True)
class PairSettings:
    """One source location copied to one destination location.

    `src_inventory`: the manifest.json of an S3 Inventory report of the source bucket, read
    instead of listing the source (None: the source is listed).
    """

    src: str
    dst: str
    src_inventory: str | None = None


def with_inventory(
    pairs: tuple[PairSettings, ...], manifest: str | None
) -> tuple[PairSettings, ...]:
    """The pairs, each reading the inventory report `manifest` instead of listing its source
    (--src-inventory); unchanged when None."""
    if manifest is None:
        return pairs
    return tuple(dataclasses.replace(pair, src_inventory=manifest) for pair in pairs)


@dataclass(frozen=True)
class Settings:
    """Everything one `longbow sync` needs."""

    pairs: tuple[PairSettings, ...]
    source: SideSettings = SideSettings()
    destination: SideSettings = SideSettings()
    transfer: TransferSettings = TransferSettings()
    ignore_patterns: tuple[str, ...] = ()
    filters: FilterSpec = FilterSpec()  # which objects the run takes (--include, --min-size...)
    db_path: Path = field(default_factory=lambda: default_db_path())
    delete: bool = False  # remove destination objects the source no longer has
    force: bool = False  # delete even beyond max_delete_fraction
    # With delete: also destination objects the filters leave out, or whose source they do.
    delete_excluded: bool = False
    # The run stops as Ctrl-C stops it once it has gone on this many seconds, or sent this
    # many bytes (None: no such limit); the same command goes on from there.
    max_duration: float | None = None
    max_transfer: int | None = None
    max_delete_fraction: float = 0.1
    telemetry: TelemetrySettings = TelemetrySettings()  # where logs and metrics go
    price_table: Path | None = None  # a dry run's prices (None: the built-in table)


def default_db_path() -> Path:
    """Where the job database lives unless --db says otherwise."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "longbow" / "jobs.db"


_SIDE_KEYS = {f.name for f in dataclasses.fields(SideSettings)} - {
    "sse_c_key",
    "access_key_id",
    "secret_access_key",
    "session_token",
}
_SIDE_FLAGS = {
    "path_style",
    "verify_ssl",
    "allow_http",
    "requester_pays",
    "use_accelerate_endpoint",
    "use_dualstack_endpoint",
}
_TRANSFER_KEYS = {f.name for f in dataclasses.fields(TransferSettings)}
_SIZE_KEYS = {"part_size", "resumable_threshold", "memory_limit", "bandwidth_limit"}
_BOOL_KEYS = {
    "no_overwrite",
    "autotune",
    "copy_tags",
    "server_side_copy",
    "relay",
    "preserve_mtime",
    "all_versions",
    "update_properties",
}
_TRANSFER_DEFAULTS = TransferSettings()
_PAIR_KEYS = {"src", "dst", "src_inventory"}
# What a pair of a config file, LONGBOW_PAIRS or the cluster's pairs parameter must be.
PAIR_SHAPE = "must have exactly the strings src and dst (and optionally src_inventory)"


def pair_from(table: object) -> PairSettings | None:
    """A pair from one table of a config file or one object of a JSON list of pairs: the
    non-empty strings src and dst, and optionally src_inventory; None for anything else."""
    if (
        not isinstance(table, dict)
        or not {"src", "dst"} <= set(table) <= _PAIR_KEYS
        or not all(isinstance(v, str) and v for v in table.values())
    ):
        return None
    return PairSettings(table["src"], table["dst"], table.get("src_inventory"))


TOP_KEYS = {
    "source",
    "destination",
    "pairs",
    "ignore_file",
    "db",
    "price_table",
    *FILTER_KEYS,
    *TELEMETRY_KEYS,
} | _TRANSFER_KEYS


def load_config_file(path: Path) -> dict[str, Any]:
    """Read and check a TOML config file; return its contents normalised.

    The file may hold transfer settings and filters (`include`, `min_size`, ...) at the top
    level, `[source]` and `[destination]` tables and any number of `[[pairs]]` with `src` and
    `dst`.
    """
    return normalise_config(read_toml(path), path, TOP_KEYS)


def read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only a run with a config file pays for the parser's import

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def normalise_config(raw: dict[str, Any], path: Path, known: set[str]) -> dict[str, Any]:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}",
            hint=f"known settings: {', '.join(sorted(known))}",
        )
    out: dict[str, Any] = {}
    for side in ("source", "destination"):
        table = raw.get(side, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [{side}] must be a table")
        bad = sorted(set(table) - _SIDE_KEYS)
        if bad:
            raise ConfigError(
                f"config file {path}: unknown key(s) in [{side}]: {', '.join(bad)}",
                hint=f"known keys: {', '.join(sorted(_SIDE_KEYS))}; credentials belong in a "
                "profile or the environment, not in this file",
            )
        for key, value in table.items():
            expected: type = bool if key in _SIDE_FLAGS else str
            if not isinstance(value, expected):
                raise ConfigError(
                    f"config file {path}: [{side}] {key} must be a {expected.__name__}"
                )
        for name in ("ca_bundle", "sse_c_key_file"):  # a path is relative to the file
            if name in table:
                table = {**table, name: str(path.parent / Path(table[name]).expanduser())}
        out[side] = table
    pairs = raw.get("pairs", [])
    if not isinstance(pairs, list):
        raise ConfigError(f"config file {path}: pairs must be an array of tables ([[pairs]])")
    out["pairs"] = []
    for i, table in enumerate(pairs, 1):
        pair = pair_from(table)
        if pair is None:
            raise ConfigError(
                f"config file {path}: pair {i} {PAIR_SHAPE}",
                # Plain text: a backslash in a hint would be shown escaped.
                hint='one [[pairs]] table per pair, e.g. src = "s3://source-bucket/prefix/" '
                'and dst = "s3://destination-bucket/prefix/"',
            )
        out["pairs"].append(pair)
    transfer: dict[str, Any] = {}
    for key in _TRANSFER_KEYS & set(raw):
        value = raw[key]
        if key in ("bandwidth_limit", "min_rate"):
            transfer[key] = parse_rate(value, what=key)
        elif key in _SIZE_KEYS:
            transfer[key] = parse_size(value, what=key.replace("_", "-"))
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"config file {path}: {key} must be true or false")
            transfer[key] = value
        elif key == "restore_days":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"config file {path}: {key} must be a whole number of days")
            transfer[key] = value
        elif key == "restore_tier":
            if not isinstance(value, str):
                raise ConfigError(f"config file {path}: {key} must be a string")
            transfer[key] = restore_tier(value)
        elif key == "content_type_map":
            if not isinstance(value, str):
                raise ConfigError(f"config file {path}: {key} must be the path of a file")
            transfer[key] = read_content_type_map(path.parent / Path(value).expanduser())
        elif key == "set_metadata":
            transfer[key] = metadata_table(value, f"config file {path}: {key}")
        elif key in ("storage_class", "compare", "rate_prefix"):
            if not isinstance(value, str):
                raise ConfigError(f"config file {path}: {key} must be a string")
            transfer[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"config file {path}: {key} must be a number")
            if isinstance(getattr(_TRANSFER_DEFAULTS, key), int) and not isinstance(value, int):
                raise ConfigError(f"config file {path}: {key} must be a whole number, not {value}")
            transfer[key] = value
    out["transfer"] = transfer
    out["filters"] = filters_in_file(raw, path)
    out["telemetry"] = telemetry_in_file(raw, path)
    if "ignore_file" in raw:
        out["ignore_file"] = (path.parent / str(raw["ignore_file"])).resolve()
    if "db" in raw:
        out["db"] = (path.parent / str(raw["db"])).resolve()
    if "price_table" in raw:
        out["price_table"] = (path.parent / str(raw["price_table"])).resolve()
    return out


def restore_tier(name: str) -> str:
    """A retrieval tier in S3's spelling (Standard, Bulk, Expedited), from any case; a name
    that is none of them is kept for validate() to refuse with the choices."""
    return next((tier for tier in RESTORE_TIERS if tier.lower() == name.lower()), name)


def load_ignore_file(path: Path) -> tuple[str, ...]:
    """Read shell-style patterns, one a line; blank lines and lines starting with # are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read ignore file {path}: {exc.strerror or exc}",
            hint="check the path given to --ignore-file",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"ignore file {path} is not UTF-8 text") from None
    return tuple(
        line.rstrip("\r\n")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


__all__ = [
    "GiB",
    "KEEP_CLASS",
    "KiB",
    "MAX_PARTS",
    "MAX_RESTORE_DAYS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "MiB",
    "PairSettings",
    "RESTORE_TIERS",
    "Settings",
    "SideSettings",
    "TransferSettings",
    "default_db_path",
    "format_size",
    "load_config_file",
    "load_ignore_file",
    "parse_rate",
    "parse_size",
    "read_toml",
    "restore_tier",
    "normalise_config",
    "with_inventory",
]
