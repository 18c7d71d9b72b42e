"""Telling a key the destination renamed from one deleted since: a HEAD of its exact name
(see :mod:`s3longbow.verdicts` for what is recorded of such keys)."""

from __future__ import annotations

from s3longbow.errors import ObjectError
from s3longbow.stores.base import ObjectStore


def answers_for(store: ObjectStore, key: str) -> bool:
    """Whether a HEAD of `key` finds an object (asked only of keys the listing lacks: an
    answer then means the store maps the name onto an object listed under another one)."""
    try:
        return store.head(key) is not None
    except ObjectError:
        return False  # no proof either way: the key is treated as plainly missing
