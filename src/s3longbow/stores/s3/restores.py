"""Restoring archived objects (RestoreObject, through botocore): a readable copy of an object
kept in S3 Glacier Flexible Retrieval or Glacier Deep Archive for some days, or an object of
an Intelligent-Tiering archive tier moved back to a tier that reads.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3longbow.errors import PermanentError
from s3longbow.stores.base import RestoreAnswer
from s3longbow.stores.s3.common import StoreBase, _one_object
from s3longbow.stores.s3.errors import error_code, http_status, translate

# What a refusal of RestoreObject means: a restore already under way is what was wanted; an
# object in a tier that reads needs none (S3 says ObjectAlreadyInActiveTierError, some servers
# InvalidObjectState).
_IN_PROGRESS = "RestoreAlreadyInProgress"
_NOT_ARCHIVED = frozenset({"ObjectAlreadyInActiveTierError", "InvalidObjectState"})


class Restores(StoreBase):
    """The restore call of the store port (a part of S3Store)."""

    @_one_object
    def restore_object(
        self,
        key: str,
        *,
        days: int | None,
        tier: str,
        version_id: str | None = None,
    ) -> RestoreAnswer:
        request: dict[str, Any] = {"GlacierJobParameters": {"Tier": tier}}
        if days is not None:
            request["Days"] = days
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "RestoreRequest": request}
        if version_id:
            kwargs["VersionId"] = version_id
        where = f"asking for a restore of {self.describe(key)}"
        try:
            resp = self.client.restore_object(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code == _IN_PROGRESS or http_status(exc) == 409:
                return RestoreAnswer.IN_PROGRESS
            if code in _NOT_ARCHIVED:
                return RestoreAnswer.NOT_ARCHIVED
            if code == "AccessDenied":
                raise PermanentError(
                    f"{where}: access denied",
                    hint="grant s3:RestoreObject on the source bucket to these credentials, or "
                    "run without --restore-days",
                ) from None
            raise translate(exc, where, source=True) from None
        except BotoCoreError as exc:  # the network, the credentials
            raise translate(exc, where, source=True) from None
        # 202: a restore began; 200: a restored copy exists already (its expiry moves on).
        status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode") or 202)
        return RestoreAnswer.READY if status == 200 else RestoreAnswer.STARTED


__all__ = ["Restores"]
