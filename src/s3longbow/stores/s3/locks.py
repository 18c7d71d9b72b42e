"""Object Lock on an S3 bucket: whether the bucket has it (GetObjectLockConfiguration, asked
once), and setting an object's retention and legal hold after it was written, for servers
that keep none of what the write carried."""

from __future__ import annotations

import threading

from s3longbow.errors import FatalError, LongbowError, TransientError
from s3longbow.model import ObjectLock
from s3longbow.stores.s3.common import StoreBase, _one_object, log

# What a bucket without Object Lock (or a server without it) answers.
_NO_LOCK_CODES = frozenset(
    {"ObjectLockConfigurationNotFoundError", "NotImplemented", "MethodNotAllowed"}
)


class Locks(StoreBase):
    """The Object Lock calls of the store port (a part of S3Store)."""

    _lock_enabled: bool | None = None
    _lock_asked = threading.Lock()

    def object_lock(self) -> bool:
        with self._lock_asked:
            if self._lock_enabled is None:
                self._lock_enabled = self._ask_object_lock()
            return self._lock_enabled

    def _ask_object_lock(self) -> bool:
        where = f"reading the Object Lock configuration of s3://{self.bucket}"
        try:
            with self._errors(where):
                reply = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except (FatalError, TransientError):
            raise  # a passing failure decides nothing: asked again by the next object
        except LongbowError as exc:
            # A bucket without Object Lock answers ObjectLockConfigurationNotFoundError; a
            # server without it, or a refusal, tells no more: copies go without locks.
            if not any(code in exc.message for code in _NO_LOCK_CODES):
                log.warning("%s: %s (taken as no Object Lock)", where, exc.message)
            return False
        enabled = reply.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        return bool(enabled == "Enabled")

    @_one_object
    def set_lock(self, key: str, lock: ObjectLock) -> None:
        where = f"setting the Object Lock of {self.describe(key)}"
        with self._errors(where):
            if lock.mode and lock.retain_until:
                self.client.put_object_retention(
                    Bucket=self.bucket,
                    Key=key,
                    Retention={"Mode": lock.mode, "RetainUntilDate": lock.retain_until},
                )
            if lock.legal_hold:
                self.client.put_object_legal_hold(
                    Bucket=self.bucket, Key=key, LegalHold={"Status": "ON"}
                )


__all__ = ["Locks"]
