"""Secrets never reach the logs, whatever the log level.

Two guards. At debug level these libraries' loggers print request headers (session tokens,
signatures), credential lookups and response bodies (a decrypted SSM SecureString): they are
held at INFO. And every line a formatter of ours writes, in text or JSON, passes through
`redact` (and a line's extra fields through `redact_fields`), which blanks what has the shape
of a secret: the value of an Authorization header or a presigned URL's signature, a named
secret (`secret_access_key = ...`), an AWS access key id. A message built from a secret by
mistake is cut there, not in a log file someone copies into a ticket.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

SECRET_LOGGERS = (
    "botocore.auth",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "urllib3.connectionpool",
)

REDACTED = "[redacted]"

# Field names whose values are secrets, whatever they hold ("-" and "_" alike, any case).
_SECRET_NAME = re.compile(
    r"secret|password|passwd|token|authori[sz]ation|signature|credential(?!s_(parameter|side))"
    r"|access_key|private_key|api_key",
    re.IGNORECASE,
)

_NAMES = (
    r"x-amz-security-token|x-amz-signature|x-amz-credential|aws_secret_access_key"
    r"|aws_session_token|secret_access_key|secret_key|session_token|security_token"
    r"|password|signature|credential"
)
_SECRET_TEXT = re.compile(
    # An Authorization header's whole value, up to the quote or the line's end.
    r"(?P<header>\bauthorization[\"']?\s*[:=]\s*(?:b?[\"'])?)[^\"'\r\n]+"
    # A named secret in `name=value`, `name: value`, `'name': 'value'` or a query string.
    rf"|(?P<name>\b(?:{_NAMES})[\"']?\s*[:=]\s*(?:b?[\"'])?)[^\s\"',;&)}}\]]+"
    # An AWS access key id (long-term, temporary, a user's or a role's).
    r"|\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b",
    re.IGNORECASE,
)


def _blank(match: re.Match[str]) -> str:
    return (match.group("header") or match.group("name") or "") + REDACTED


def redact(text: str) -> str:
    """`text` with everything shaped like a secret replaced by ``[redacted]``."""
    return _SECRET_TEXT.sub(_blank, text)


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A log line's extra fields with the values of secret-named fields replaced and every
    string (in lists and nested mappings too) passed through `redact`."""
    return {
        key: REDACTED if _SECRET_NAME.search(str(key)) else _redact_value(value)
        for key, value in fields.items()
    }


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return redact_fields(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def quiet_secret_loggers() -> None:
    """Hold every logger that could print a secret at INFO."""
    for name in SECRET_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


__all__ = ["REDACTED", "SECRET_LOGGERS", "quiet_secret_loggers", "redact", "redact_fields"]
