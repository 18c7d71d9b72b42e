"""Ignore patterns: shell-style, case-sensitive, matched against `bucket/key` as a whole."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence


class IgnoreRules:
    """Shell-style patterns (`*` crosses `/`) matched against "<bucket>/<key>".

    All patterns are compiled into one regular expression, so each key costs one match
    however many patterns there are.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._regex = (
            re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns))
            if self.patterns
            else None
        )

    def matches(self, bucket: str, key: str) -> bool:
        return self._regex is not None and self._regex.match(f"{bucket}/{key}") is not None

    def __bool__(self) -> bool:
        return self._regex is not None
