"""Customer-provided encryption keys (SSE-C): read from the environment or a file, never from
a flag's value, and turned into the headers every request about an object of that side
carries. A key is never printed: errors name where it came from, not what it is.

S3 encrypts an object with the key the write carries and keeps only the key's MD5; every read
(GET, HEAD) must carry the same key. The ETag of such an object is not the MD5 of its bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from s3longbow.errors import ConfigError

KEY_BYTES = 32  # AES-256
ALGORITHM = "AES256"
_HINT = "give the base64 of a 32-byte key (e.g. from: head -c 32 /dev/urandom | base64)"


def decode_key(text: str | bytes, where: str) -> bytes:
    """A key given as the base64 of its 32 bytes (surrounding blanks ignored), or, from a
    file, as its 32 raw bytes.

    Raises:
        ConfigError: It is neither; the message names `where`, never the value.
    """
    raw = text.encode("latin-1", "replace") if isinstance(text, str) else text
    if len(raw) == KEY_BYTES and isinstance(text, bytes):
        return raw
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where} is not an SSE-C key (32 bytes, base64)", hint=_HINT)
    return key


def read_key_file(path: str) -> bytes:
    """The key in a file (base64 text or 32 raw bytes).

    Raises:
        ConfigError: The file cannot be read or holds no key.
    """
    try:
        content = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the SSE-C key file {path}: {exc.strerror or exc}",
            hint="check the path given to --src-sse-c-key-file / --dst-sse-c-key-file "
            "(or sse_c_key_file)",
        ) from None
    return decode_key(content, f"the SSE-C key file {path}")


def key_headers(key: bytes, *, copy_source: bool = False) -> dict[str, str]:
    """The headers that give a request `key`: of the object written or read, or (with
    `copy_source`) of the source of a server-side copy."""
    prefix = (
        "x-amz-copy-source-server-side-encryption-customer-"
        if copy_source
        else ("x-amz-server-side-encryption-customer-")
    )
    return {
        f"{prefix}algorithm": ALGORITHM,
        f"{prefix}key": base64.b64encode(key).decode(),
        f"{prefix}key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode(),
    }


def key_args(key: bytes, *, copy_source: bool = False) -> dict[str, str | bytes]:
    """The same for botocore's calls (it computes the key's MD5 itself)."""
    prefix = "CopySource" if copy_source else ""
    return {f"{prefix}SSECustomerAlgorithm": ALGORITHM, f"{prefix}SSECustomerKey": key}


__all__ = ["ALGORITHM", "KEY_BYTES", "decode_key", "key_args", "key_headers", "read_key_file"]
