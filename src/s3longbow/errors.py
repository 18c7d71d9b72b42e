"""Exception tree. Each error says how far its damage reaches, so callers know what to do.

LongbowError                 base; carries a user-facing hint
├── Interrupted              the run is shutting down: the job goes back untouched
├── ConfigError              bad input from the user: stop before doing anything
├── FatalError               the run cannot go on (bad credentials, missing bucket)
│   ├── CredentialsRejectedError  the server refused the request's signature or keys
│   └── WrongRegionError     the bucket is in another region than the requests are for
└── ObjectError              one object cannot be copied now
    ├── ArchivedError        the source is archived: readable only once a restore finishes
    ├── TransientError       worth retrying (timeouts, resets, 5xx, short reads)
    │   ├── UploadMissingError   the multipart upload vanished: start a new one
    │   ├── ReplyLostError   the request went out but its reply was lost: it may have acted
    │   ├── ClockSkewError   the server refused this machine's clock
    │   └── VerificationError    the bytes copied do not match the source's fingerprint
    └── PermanentError       retrying will not help (source gone, access denied, bad key)
        ├── ChecksumNotConfirmedError  a part's checksum came back unconfirmed
        ├── SourceChangedError   the pinned source identity no longer matches
        ├── SourceGoneError      the source was deleted since the snapshot that listed it
        └── UnsafeKeyError       a key that cannot be mapped safely onto a filesystem

Lower layers raise their own exceptions only inside their package (the HTTP/1.1 reader's
framing errors, a conditional write that did not hold); each is turned into one of these at
the package's edge, with what it was doing.
"""

from __future__ import annotations


class LongbowError(Exception):
    """Base of every error Longbow raises on purpose.

    Args:
        message: What went wrong, in one line.
        hint: How the user can fix it, in one line (optional).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class Interrupted(LongbowError):
    """The run is shutting down; the job goes back to the queue untouched."""


class ConfigError(LongbowError):
    """The command line, a config file or an ignore file is invalid."""


class FatalError(LongbowError):
    """The run cannot continue: every job would fail the same way."""


class CredentialsRejectedError(FatalError):
    """The server refused the credentials or the signature (InvalidAccessKeyId,
    SignatureDoesNotMatch, ExpiredToken, ...). Stores judge whether that holds for every
    request, or only for one object's (whose request the server signs differently)."""


class WrongRegionError(FatalError):
    """The bucket is in another region than the one requests are signed for.

    Attributes:
        region: The bucket's region, as the server named it.
    """

    def __init__(self, message: str, *, region: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.region = region


class ObjectError(LongbowError):
    """A single object failed; the run carries on with the others."""


class ArchivedError(ObjectError):
    """The source object is archived (S3 Glacier Flexible Retrieval, Glacier Deep Archive, an
    Intelligent-Tiering archive tier): no read of it succeeds until a restore makes a copy
    readable. Neither a failure to retry nor a permanent one: the job is recorded as archived,
    and a later run copies it once it can be read.

    Attributes:
        storage_class: The source's storage class, where known.
        restoring: A restore was asked for (by this run or an earlier one) or is under way.
    """

    def __init__(
        self,
        message: str,
        *,
        storage_class: str | None = None,
        restoring: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.storage_class = storage_class
        self.restoring = restoring


class TransientError(ObjectError):
    """A failure that may pass: the job is retried with backoff."""


class UploadMissingError(TransientError):
    """The multipart upload being written no longer exists on the destination."""


class ReplyLostError(TransientError):
    """The whole request went out, but the connection failed before its reply was read:
    the server may have carried it out (what matters for a request that must not be made
    twice, such as starting a multipart upload)."""


class VerificationError(TransientError):
    """The bytes copied do not match the source's fingerprint."""


class ClockSkewError(TransientError):
    """The server refused a request for the time it was signed at (RequestTimeTooSkewed).

    Attributes:
        offset: Seconds the server's clock is ahead of this machine's.
    """

    def __init__(self, message: str, *, offset: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.offset = offset


class PermanentError(ObjectError):
    """A failure that retrying cannot fix: the job is marked failed at once."""


class ChecksumNotConfirmedError(PermanentError):
    """A part sent with an additional checksum and no Content-MD5 came back without the
    server echoing that checksum: it may not have been checked. Send it with an MD5."""


class SourceChangedError(PermanentError):
    """The source object changed (or vanished) after its identity was pinned."""


class SourceGoneError(PermanentError):
    """The source object no longer exists, and the listing that named it was a past snapshot
    (an inventory report): nothing is left to copy, so the job is skipped with the reason
    rather than failed."""


class NotReplacedError(PermanentError):
    """The destination has an object under the key (it appeared after planning), and the run
    never replaces one (--no-overwrite): the job is skipped with the reason, not failed."""


class UnsafeKeyError(PermanentError):
    """A key that would escape the destination root or cannot be a file path."""


__all__ = [
    "ArchivedError",
    "ClockSkewError",
    "ConfigError",
    "CredentialsRejectedError",
    "FatalError",
    "Interrupted",
    "LongbowError",
    "NotReplacedError",
    "ObjectError",
    "PermanentError",
    "ReplyLostError",
    "SourceChangedError",
    "SourceGoneError",
    "TransientError",
    "UnsafeKeyError",
    "UploadMissingError",
    "VerificationError",
    "WrongRegionError",
]
