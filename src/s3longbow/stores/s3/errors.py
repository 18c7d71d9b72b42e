"""What an S3 error reply means for Longbow: one mapping shared by every S3 client path, so a
reply means the same whichever path (boto3 or the lean HTTP data plane) received it."""

from __future__ import annotations

from s3longbow.errors import (
    CredentialsRejectedError,
    FatalError,
    LongbowError,
    PermanentError,
    SourceChangedError,
    TransientError,
    UploadMissingError,
)

AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "BadDigest",
        "InvalidDigest",
        "XAmzContentSHA256Mismatch",
        "IncompleteBody",
    }
)


def error_from_response(
    code: str, status: int, message: str, where: str, *, fatal: bool = False, source: bool = False
) -> LongbowError:
    """Map an S3 error response (its Code, HTTP status and Message) onto the error tree.

    Shared by every S3 client path, so a reply means the same whichever path received it.
    `source` marks a read of the source object (404 then means the source is gone); `fatal`
    marks a check whose failure stops the run.
    """
    message = message or code
    text = f"{where}: {code or status} ({message})" if message != code else f"{where}: {code}"
    if code in AUTH_CODES:
        return CredentialsRejectedError(
            text, hint="check the access key, secret key, session token and region"
        )
    if code == "NoSuchBucket":
        return FatalError(text, hint="check the bucket name, endpoint URL and region")
    if code == "NoSuchUpload":
        return UploadMissingError(text)
    if code == "PreconditionFailed" or status == 412:
        return SourceChangedError(f"{where}: the source object changed since the job started")
    if source and (code in ("NoSuchKey", "NotFound") or status == 404):
        return SourceChangedError(f"{where}: the source object no longer exists")
    if code == "RequestTimeTooSkewed":
        return (FatalError if fatal else TransientError)(
            text,
            hint="set this machine's clock right (NTP): S3 refuses requests signed more "
            "than 15 minutes away from its own time",
        )
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return (FatalError if fatal else TransientError)(text)
    if status == 403 or code == "AccessDenied":
        return (FatalError if fatal else PermanentError)(
            text, hint="check the permissions of the credentials on this bucket"
        )
    return (FatalError if fatal else PermanentError)(text)
