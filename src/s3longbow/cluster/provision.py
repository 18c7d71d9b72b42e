"""The job table itself, for `cluster-init` and for a worker's or the sender's first check:
created on demand with its state index and TTL, and recognised by its key schema."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3longbow.errors import FatalError

from .aws import error_code, translate, translated

STATE_INDEX = "by-state"
# The attributes the state index carries besides its keys (what `status --cluster` reads).
INDEX_ATTRIBUTES = [
    "kind",
    "state",
    "size",
    "reason",
    "attempts",
    "src_bucket",
    "src_key",
    "dst_bucket",
    "dst_key",
]
TTL_ATTRIBUTE = "expires_at"


def check_table(client: Any, name: str) -> None:
    """Fail fast when the table does not exist or has another key schema."""
    with translated(f"reading job table {name!r}", fatal=True):
        table = client.describe_table(TableName=name)["Table"]
    keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", ())}
    if keys != {"pk": "HASH", "sk": "RANGE"}:
        raise FatalError(
            f"table {name!r} is not a Longbow job table (keys {keys})",
            hint="point [cluster] table at a table made by `longbow cluster-init`",
        )


def create_table(client: Any, name: str, *, wait_seconds: float = 300) -> bool:
    """Create the job table (on-demand, with its state index and TTL) unless it exists.

    Returns:
        True when it was created now.
    """
    created = False
    try:
        client.describe_table(TableName=name)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise translate(exc, f"reading table {name!r}", fatal=True) from None
        with translated(f"creating table {name!r}", fatal=True):
            client.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    {"AttributeName": "gsi_state", "AttributeType": "S"},
                    {"AttributeName": "updated_at", "AttributeType": "N"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": STATE_INDEX,
                        "KeySchema": [
                            {"AttributeName": "gsi_state", "KeyType": "HASH"},
                            {"AttributeName": "updated_at", "KeyType": "RANGE"},
                        ],
                        "Projection": {
                            "ProjectionType": "INCLUDE",
                            "NonKeyAttributes": INDEX_ATTRIBUTES,
                        },
                    }
                ],
            )
        created = True
    except BotoCoreError as exc:
        raise translate(exc, f"reading table {name!r}", fatal=True) from None
    deadline = time.monotonic() + wait_seconds
    while True:
        with translated(f"waiting for table {name!r}", fatal=True):
            status = client.describe_table(TableName=name)["Table"]["TableStatus"]
        if status == "ACTIVE":
            break
        if time.monotonic() > deadline:
            raise FatalError(f"table {name!r} is still {status} after {wait_seconds}s")
        time.sleep(2)
    try:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    except ClientError as exc:
        # Enabling TTL twice is refused; that is the idempotent case.
        if "already enabled" not in str(exc).lower():
            raise translate(exc, f"enabling TTL on {name!r}", fatal=True) from None
    except BotoCoreError as exc:
        raise translate(exc, f"enabling TTL on {name!r}", fatal=True) from None
    check_table(client, name)
    return created


__all__ = ["INDEX_ATTRIBUTES", "STATE_INDEX", "TTL_ATTRIBUTE", "check_table", "create_table"]
