"""The options `longbow sync` and `verify` share (SRC, DST, --config, the --src-*/--dst-*
options, --ignore-file, the filters), and their translation into the settings loader's
`Flags`. `longbow send` takes the filters too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from s3longbow.config import COUNT_LIMITS, parse_rate, parse_size
from s3longbow.errors import ConfigError
from s3longbow.loader import FilterFlags, Flags, SideFlags, TransferFlags
from s3longbow.rewrites import parse_metadata, read_content_type_map
from s3longbow.selection import AgeLimit, parse_age, parse_duration, parse_filter_size

from .common import Decorator, telemetry_flags


# Not subscripted: ParamType is generic only in newer click, and click 8.1 is supported.
class ParsedParam(click.ParamType):  # type: ignore[type-arg]
    """A value written for people (8MiB, 200MiB/s, 2h, 7d, 2024-05-01), parsed by `parse`
    (which names the option in its error); a value already parsed (of `kind`) passes."""

    def __init__(self, name: str, parse: Callable[..., Any], kind: type) -> None:
        self.name = name
        self._parse = parse
        self._kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self._kind) and not isinstance(value, bool):
            return value
        what = (param.opts[0] if param and param.opts else self.name).lstrip("-")
        try:
            return self._parse(value, what=what)
        except ConfigError as exc:
            self.fail(f"{exc.message}. {exc.hint or ''}".strip(), param, ctx)


SIZE = ParsedParam("size", parse_size, int)
RATE = ParsedParam("rate", parse_rate, int)
FILTER_SIZE = ParsedParam("size", parse_filter_size, int)
DURATION = ParsedParam("duration", parse_duration, float)  # in seconds
AGE = ParsedParam("age", parse_age, AgeLimit)  # a duration or a date or time


def _files_option(name: str, text: str) -> Decorator:
    """A repeatable option naming files (`-`: standard input), with its help `text`."""
    return click.option(
        name, metavar="FILE", type=click.Path(path_type=Path), multiple=True, help=text
    )


# rclone's filters, in its dialect (see s3longbow.plan.filters); each replaces the config
# file's key of the same name.
FILTER_OPTIONS = [
    click.option(
        "--include",
        metavar="PATTERN",
        multiple=True,
        help="Take only keys that match (repeatable; any --include leaves out what no rule "
        "takes). rclone's patterns, relative to the pair's root: * within a segment, ** "
        "across, a leading / anchors.",
    ),
    _files_option(
        "--include-from",
        "--include each pattern of FILE, one a line ('-': standard input).",
    ),
    click.option(
        "--exclude",
        metavar="PATTERN",
        multiple=True,
        help="Leave out keys that match (repeatable; tried after every --include).",
    ),
    _files_option(
        "--exclude-from",
        "--exclude each pattern of FILE, one a line ('-': standard input).",
    ),
    click.option(
        "--filter",
        metavar="RULE",
        multiple=True,
        help="A rule: '+ pattern' takes, '- pattern' leaves out, '!' clears the rules before "
        "it (repeatable; tried after --include and --exclude, in the order given).",
    ),
    _files_option(
        "--filter-from",
        "Rules from a file, one a line, as --filter; '#' comments; tried after --filter. "
        "The first rule that matches a key decides.",
    ),
    click.option(
        "--ignore-case",
        is_flag=True,
        default=None,
        help="Patterns match keys whatever the case of their letters.",
    ),
    _files_option(
        "--files-from",
        "Take only the keys listed in FILE, one a line, relative to the pair's root "
        "('-': standard input).",
    ),
    _files_option(
        "--files-from-raw",
        "As --files-from, each line a key as it is: no spaces trimmed, no comments.",
    ),
    click.option(
        "--min-size",
        type=FILTER_SIZE,
        help="Leave out objects smaller than this (rclone's units: 100B, 10K, 10M, 1G; a bare "
        "number is KiB).",
    ),
    click.option("--max-size", type=FILTER_SIZE, help="Leave out objects larger than this."),
    click.option(
        "--min-age",
        type=AGE,
        help="Leave out objects modified more recently than this (30m, 2h, 7d) or after this "
        "date or time (2024-05-01, UTC).",
    ),
    click.option(
        "--max-age",
        type=AGE,
        help="Leave out objects modified longer ago than this (7d) or before this date or time.",
    ),
]


# What `longbow sync` deletes once its copies are done.
LISTING_THREADS_OPTION = click.option(
    "--listing-threads",
    type=click.IntRange(1, COUNT_LIMITS["listing_threads"]),
    help="Threads listing each pair, by key range (or by sub-folder where a store lists "
    "folder by folder) [8].",
)

DELETE_OPTIONS = [
    click.option(
        "--delete",
        is_flag=True,
        help="After every copy succeeds, delete destination objects the source no longer has.",
    ),
    click.option(
        "--max-delete",
        type=click.FloatRange(0, 100),
        default=10.0,
        show_default=True,
        help="With --delete: the most a run may delete, in percent of the destination's objects.",
    ),
    click.option("--force", is_flag=True, help="With --delete: delete beyond --max-delete."),
    click.option(
        "--delete-excluded",
        is_flag=True,
        help="With --delete: also delete destination objects the filters leave out (or whose "
        "source they leave out).",
    ),
]

# Limits that stop a `longbow sync` part way, as Ctrl-C does (the same command goes on).
LIMIT_OPTIONS = [
    click.option(
        "--max-duration",
        type=DURATION,
        metavar="DURATION",
        help="Stop as Ctrl-C stops once the run has gone on this long (90m, 2h, 1h30m): jobs "
        "in flight go back to the queue, and the same command goes on later (exit code 10).",
    ),
    click.option(
        "--max-transfer",
        type=SIZE,
        metavar="SIZE",
        help="Stop the same way once this many bytes have been sent (e.g. 500GiB; exit code 8).",
    ),
]


def side_options(side: str, role: str) -> list[Decorator]:
    return [
        click.option(f"--{side}-profile", help=f"AWS profile for the {role}."),
        click.option(f"--{side}-endpoint-url", help=f"Endpoint URL of the {role} (any S3 API)."),
        click.option(f"--{side}-region", help=f"Region of the {role}."),
        click.option(
            f"--{side}-path-style",
            is_flag=True,
            default=None,
            help=f"Use path-style addressing for the {role}.",
        ),
        click.option(
            f"--{side}-no-verify-ssl",
            is_flag=True,
            help=f"Do not check the TLS certificate of the {role}'s https endpoint (unsafe).",
        ),
        click.option(
            f"--{side}-ca-bundle",
            type=click.Path(dir_okay=False),
            help=f"PEM file of the certificate authorities trusted for the {role}'s https "
            "endpoint [AWS_CA_BUNDLE, the profile's ca_bundle, REQUESTS_CA_BUNDLE, certifi].",
        ),
        click.option(
            f"--{side}-bucket-names",
            type=click.Choice(["strict", "relaxed"]),
            help=f"Bucket naming rules of the {role}: S3's [strict], or relaxed for stores "
            "that allow other names (capitals, underscores).",
        ),
        click.option(
            f"--{side}-allow-http",
            is_flag=True,
            help=f"Allow a plain http endpoint for the {role} beyond this machine's addresses.",
        ),
        click.option(
            f"--{side}-requester-pays",
            is_flag=True,
            default=None,
            help=f"The {role} bucket is requester-pays: this side's account pays for requests.",
        ),
        click.option(
            f"--{side}-use-accelerate-endpoint",
            is_flag=True,
            default=None,
            help=f"Reach the {role} bucket through S3 Transfer Acceleration "
            "(bucket.s3-accelerate.amazonaws.com; AWS only, not in China).",
        ),
        click.option(
            f"--{side}-use-dualstack-endpoint",
            is_flag=True,
            default=None,
            help=f"Reach the {role} bucket over IPv6 or IPv4 through AWS's dual-stack "
            "endpoint (s3.dualstack.REGION.amazonaws.com).",
        ),
        click.option(
            f"--{side}-sse-c-key-file",
            type=click.Path(dir_okay=False),
            help=f"File holding the {role}'s SSE-C key (base64 of 32 bytes, or the raw bytes), "
            f"sent with every request about an object [LONGBOW_{side.upper()}_SSE_C_KEY].",
        ),
        click.option(
            f"--{side}-checksum-algorithm",
            *(["--checksum-algorithm"] if side == "dst" else []),
            f"{side}_checksum_algorithm",
            metavar="auto|MD5|CRC32C|CRC32|CRC64NVME|SHA1|SHA256",
            help=(
                "Additional checksum of every write: auto (the source's own) [auto], MD5 "
                "(Content-MD5 only, for stores that reject newer checksum headers), or one "
                "algorithm."
                if side == "dst"
                else "auto: ask the source for its additional checksums [auto]; MD5: never "
                "(for stores that reject the header)."
            ),
        ),
    ]


PAIR_OPTIONS = [
    click.argument("src", required=False),
    click.argument("dst", required=False),
    click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        help="TOML file with [[pairs]], [source], [destination] and transfer settings.",
    ),
    *side_options("src", "source"),
    *side_options("dst", "destination"),
    click.option(
        "--ignore-file",
        type=click.Path(path_type=Path),
        help="Shell-style patterns, one a line, matched against 'bucket/key'.",
    ),
    *FILTER_OPTIONS,
]


def pair_flags(
    src: str | None,
    dst: str | None,
    config_file: Path | None,
    ignore_file: Path | None,
    options: dict[str, Any],
    *,
    db_path: Path | None = None,
    delete: bool = False,
    force: bool = False,
    max_delete: float = 10.0,
    delete_excluded: bool = False,
) -> Flags:
    """The loader's flags from a command's arguments: the pair options, and in `options` the
    side and transfer options click gave by name (those a command lacks count as not given).

    Raises:
        ConfigError: A file a flag names (--content-type-map) cannot be read, or a value
            (--set-metadata) is not what it must be.
    """
    return Flags(
        src=src,
        dst=dst,
        config_file=config_file,
        ignore_file=ignore_file,
        db_path=db_path,
        source=_side_flags(options, "src"),
        destination=_side_flags(options, "dst"),
        transfer=_transfer_flags(options),
        filters=filter_flags(options),
        delete=delete,
        force=force,
        max_delete=max_delete,
        delete_excluded=delete_excluded,
        max_duration=options.get("max_duration"),
        max_transfer=options.get("max_transfer"),
        src_inventory=options.get("src_inventory"),
        telemetry=telemetry_flags(options),
        price_table=options.get("price_table"),
    )


def _side_flags(options: dict[str, Any], prefix: str) -> SideFlags:
    return SideFlags(
        profile=options[f"{prefix}_profile"],
        endpoint_url=options[f"{prefix}_endpoint_url"],
        region=options[f"{prefix}_region"],
        path_style=options[f"{prefix}_path_style"],
        verify_ssl=False if options[f"{prefix}_no_verify_ssl"] else None,
        allow_http=True if options[f"{prefix}_allow_http"] else None,
        requester_pays=options[f"{prefix}_requester_pays"],
        use_accelerate_endpoint=options[f"{prefix}_use_accelerate_endpoint"],
        use_dualstack_endpoint=options[f"{prefix}_use_dualstack_endpoint"],
        checksum_algorithm=options[f"{prefix}_checksum_algorithm"],
        ca_bundle=options[f"{prefix}_ca_bundle"],
        bucket_names=options[f"{prefix}_bucket_names"],
        sse_c_key_file=options.get(f"{prefix}_sse_c_key_file"),
        # Write options are the destination's; they are written without a side's prefix.
        sse=options.get("sse") if prefix == "dst" else None,
        sse_kms_key_id=options.get("sse_kms_key_id") if prefix == "dst" else None,
        acl=options.get("acl") if prefix == "dst" else None,
    )


def filter_flags(options: dict[str, Any]) -> FilterFlags:
    """The loader's filter flags from the options click gave by name (repeatable options
    given no value count as not given)."""

    def many(name: str) -> tuple[Any, ...] | None:
        values = options.get(name)
        return tuple(values) if values else None

    return FilterFlags(
        include=many("include"),
        include_from=many("include_from"),
        exclude=many("exclude"),
        exclude_from=many("exclude_from"),
        filter=many("filter"),
        filter_from=many("filter_from"),
        files_from=many("files_from"),
        files_from_raw=many("files_from_raw"),
        ignore_case=options.get("ignore_case"),
        min_size=options.get("min_size"),
        max_size=options.get("max_size"),
        min_age=options.get("min_age"),
        max_age=options.get("max_age"),
    )


def _transfer_flags(options: dict[str, Any]) -> TransferFlags:
    return TransferFlags(
        workers=options.get("workers"),
        autotune=False if options.get("no_autotune") else None,
        part_threads=options.get("part_threads"),
        part_size=options.get("part_size"),
        resumable_threshold=options.get("resumable_threshold"),
        memory_limit=options.get("memory_limit"),
        storage_class=options.get("storage_class"),
        max_attempts=options.get("max_attempts"),
        listing_threads=options.get("listing_threads"),
        bandwidth_limit=options.get("bandwidth_limit"),
        min_rate=options.get("min_rate"),
        prefix_read_rate=options.get("prefix_read_rate"),
        prefix_write_rate=options.get("prefix_write_rate"),
        rate_prefix=options.get("rate_prefix"),
        compare=options.get("compare"),
        copy_tags=False if options.get("no_tags") else None,
        server_side_copy=False if options.get("no_server_side_copy") else None,
        relay=False if options.get("no_relay") else None,
        preserve_mtime=True if options.get("preserve_mtime") else None,
        all_versions=True if options.get("all_versions") else None,
        update_properties=True if options.get("update_properties") else None,
        restore_days=options.get("restore_days"),
        restore_tier=options.get("restore_tier"),
        no_overwrite=True if options.get("no_overwrite") else None,
        content_type_map=read_content_type_map(Path(options["content_type_map"]))
        if options.get("content_type_map")
        else None,
        set_metadata=parse_metadata(options["set_metadata"], "--set-metadata")
        if options.get("set_metadata")
        else None,
    )


__all__ = [
    "AGE",
    "DELETE_OPTIONS",
    "DURATION",
    "FILTER_OPTIONS",
    "FILTER_SIZE",
    "LIMIT_OPTIONS",
    "PAIR_OPTIONS",
    "RATE",
    "SIZE",
    "ParsedParam",
    "filter_flags",
    "pair_flags",
    "side_options",
]
