"""Secrets never reach the logs, whatever the log level.

At debug level these libraries' loggers print request headers (session tokens, signatures),
credential lookups and response bodies (a decrypted SSM SecureString): they are held at INFO.
"""

from __future__ import annotations

import logging

SECRET_LOGGERS = (
    "botocore.auth",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "urllib3.connectionpool",
)


def quiet_secret_loggers() -> None:
    """Hold every logger that could print a secret at INFO."""
    for name in SECRET_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


__all__ = ["SECRET_LOGGERS", "quiet_secret_loggers"]
