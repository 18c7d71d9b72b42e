"""Exception tree. Each error says how far its damage reaches, so callers know what to do.

LongbowError                 base; carries a user-facing hint
├── ConfigError              bad input from the user: stop before doing anything
├── FatalError               the run cannot go on (bad credentials, missing bucket)
└── ObjectError              one object cannot be copied now
    ├── TransientError       worth retrying (timeouts, resets, 5xx, short reads)
    │   └── UploadMissingError   the multipart upload vanished: start a new one
    └── PermanentError       retrying will not help (source gone, access denied, bad key)
        ├── SourceChangedError   the pinned source identity no longer matches
        └── UnsafeKeyError       a key that cannot be mapped safely onto a filesystem
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


class ConfigError(LongbowError):
    """The command line, a config file or an ignore file is invalid."""


class FatalError(LongbowError):
    """The run cannot continue: every job would fail the same way."""


class ObjectError(LongbowError):
    """A single object failed; the run carries on with the others."""


class TransientError(ObjectError):
    """A failure that may pass: the job is retried with backoff."""


class UploadMissingError(TransientError):
    """The multipart upload being written no longer exists on the destination."""


class PermanentError(ObjectError):
    """A failure that retrying cannot fix: the job is marked failed at once."""


class ChecksumNotConfirmedError(PermanentError):
    """A part sent with an additional checksum and no Content-MD5 came back without the
    server echoing that checksum: it may not have been checked. Send it with an MD5."""


class SourceChangedError(PermanentError):
    """The source object changed (or vanished) after its identity was pinned."""


class UnsafeKeyError(PermanentError):
    """A key that would escape the destination root or cannot be a file path."""


__all__ = [
    "ConfigError",
    "FatalError",
    "LongbowError",
    "ObjectError",
    "PermanentError",
    "SourceChangedError",
    "TransientError",
    "UnsafeKeyError",
    "UploadMissingError",
]
