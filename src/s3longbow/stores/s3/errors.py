"""What an S3 error reply means for Longbow: one mapping shared by every S3 client path, so a
reply means the same whichever path (boto3 or the lean HTTP data plane) received it."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from s3longbow.errors import (
    ArchivedError,
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
# The answers to a read (or a server-side copy) of an object that must be restored first: a
# GET or UploadPartCopy says InvalidObjectState, a CopyObject ObjectNotInActiveTierError.
ARCHIVED_CODES = frozenset({"InvalidObjectState", "ObjectNotInActiveTierError"})
RESTORE_HINT = (
    "rerun with --restore-days N to ask for a restore (restores take hours and are billed), "
    "then run the same command again once it is restored"
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
    `source` marks a read of the source object (404 then means the source is gone, and
    InvalidObjectState that it is archived); `fatal` marks a check whose failure stops the run.
    """
    message = message or code
    text = f"{where}: {code or status} ({message})" if message != code else f"{where}: {code}"
    if code in AUTH_CODES:
        return CredentialsRejectedError(
            text, hint="check the access key, secret key, session token and region"
        )
    if source and code in ARCHIVED_CODES:
        # No permission problem: the object is in an archive tier, unreadable until restored.
        return ArchivedError(
            f"{where}: the source object is archived ({message})", hint=RESTORE_HINT
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


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def translate(
    exc: BaseException, where: str, *, fatal: bool = False, source: bool = False
) -> LongbowError:
    """Map a botocore error onto the error tree; `where` says what we were doing."""
    if isinstance(exc, LongbowError):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return FatalError(
            f"{where}: no AWS credentials found",
            hint="pass --src-profile/--dst-profile, set LONGBOW_SRC_ACCESS_KEY_ID and "
            "LONGBOW_SRC_SECRET_ACCESS_KEY (or DST), or configure the default credential chain",
        )
    if isinstance(exc, BotoCoreError):
        if fatal and "certificate verify failed" in str(exc).lower():
            return FatalError(
                f"{where}: the endpoint's TLS certificate is not trusted: {exc}",
                hint="set AWS_CA_BUNDLE to the CA file that signed it, or (unsafe, on a "
                "network you trust) pass --src-no-verify-ssl / --dst-no-verify-ssl",
            )
        if fatal:
            return FatalError(
                f"{where}: {type(exc).__name__}: {exc}",
                hint="check the endpoint URL and region, and that the server is reachable",
            )
        return TransientError(f"{where}: {type(exc).__name__}: {exc}")
    assert isinstance(exc, ClientError)
    message = exc.response.get("Error", {}).get("Message") or ""
    return error_from_response(
        error_code(exc), http_status(exc), message, where, fatal=fatal, source=source
    )
