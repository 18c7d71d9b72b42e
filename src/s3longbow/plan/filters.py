"""Filters: rclone's pattern language for keys, the rule list it is used in, and the judgment
of one object by its key, size and age. Pure: no I/O.

Patterns are matched against a key relative to the pair's root (its source or destination
prefix), as rclone matches paths relative to the root of a remote:

- `*` matches any run of characters but `/`; `**` any run, `/` included; `?` one character
  but `/`; `[a-z]`, `[!a-z]` (or `[^a-z]`), `[[:alpha:]]`, `\\d`, `\\w`, `\\s` (and their
  capitals) classes of characters (negated classes never match `/`); `{a,b}` alternatives
  (which may nest and hold any pattern); `{{regexp}}` a regular expression; `\\c` the
  character c itself.
- A pattern starting with `/` is anchored at the pair's root: `/a.jpg` is `a.jpg` there only.
  Otherwise it matches at the end of the key, from a segment boundary: `a.jpg` matches
  `a.jpg` and `x/a.jpg`, not `xa.jpg`.
- A pattern ending with `/` matches a directory: every key under it (`logs/` takes
  `logs/x` and `a/logs/y/z`).

Rules are tried in order and the first that matches decides; a key no rule matches is taken.
Every rule is compiled into one regular expression (one alternative per rule, in order), so a
key costs one match however many rules there are.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from s3longbow.errors import ConfigError
from s3longbow.model import ObjectInfo
from s3longbow.selection import FilterRule, FilterSpec

# POSIX classes as rclone (Go's regexp) knows them, in Python's class syntax (ASCII only).
_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_PERL_CLASSES = "dDwWsS"
_LEADING_FLAGS = re.compile(r"^\(\?([a-zA-Z]+)\)")


class PatternError(ValueError):
    """A pattern that is not valid; the text says why."""


def translate(pattern: str, *, ignore_case: bool = False) -> str:
    """The regular expression (Python's syntax) that matches the keys `pattern` matches.

    The expression is meant for `re.fullmatch`-like use: it matches a whole key.

    Raises:
        PatternError: The pattern is not valid (unbalanced brackets or braces, `***`, ...).
    """
    anchored = pattern.startswith("/")
    body = pattern[1:] if anchored else pattern
    directory = body.endswith("/") and not body.endswith("\\/")
    regex = _Translator(body, pattern, ignore_case).run()
    if directory:
        regex += ".*"  # a directory: whatever lies under it
    return regex if anchored else f"(?:.*/)?{regex}"


class _Translator:
    """One pass over a pattern, writing its regular expression."""

    def __init__(self, body: str, pattern: str, ignore_case: bool = False) -> None:
        self.text = body
        self.pattern = pattern
        self.ignore_case = ignore_case
        self.i = 0
        self.out: list[str] = []
        self.braces = 0

    def fail(self, why: str) -> PatternError:
        # Not repr(): patterns hold backslashes, which errors already show escaped.
        return PatternError(f"{why} in pattern '{self.pattern}'")

    def run(self) -> str:
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c == "*":
                stars = len(text[self.i :]) - len(text[self.i :].lstrip("*"))
                if stars > 2:
                    raise self.fail("too many stars ('***')")
                self.out.append("[^/]*" if stars == 1 else ".*")
                self.i += stars
                continue
            self.i += 1
            if c == "?":
                self.out.append("[^/]")
            elif c == "\\":
                self.out.append(self.escaped())
            elif c == "[":
                self.out.append(self.character_class())
            elif c == "]":
                raise self.fail("a ']' without its '['")
            elif c == "{" and text.startswith("{", self.i):
                self.i += 1
                self.out.append(self.regexp())
            elif c == "{":
                self.braces += 1
                self.out.append("(?:")
            elif c == "}":
                if not self.braces:
                    raise self.fail("a '}' without its '{'")
                self.braces -= 1
                self.out.append(")")
            elif c == "," and self.braces:
                self.out.append("|")
            else:
                self.out.append(self.literal(c))
        if self.braces:
            raise self.fail("a '{' without its '}'")
        return "".join(self.out)

    def escaped(self) -> str:
        if self.i >= len(self.text):
            raise self.fail("a backslash with nothing after it")
        c = self.text[self.i]
        self.i += 1
        return "\\" + c if c in _PERL_CLASSES else self.literal(c)

    def literal(self, c: str) -> str:
        """The character itself; ignoring case, a letter beyond ASCII also in its other case
        (the expression's IGNORECASE folds ASCII letters only, as it matches in ASCII mode)."""
        if self.ignore_case and not c.isascii():
            cases = {v for v in (c, c.lower(), c.upper()) if len(v) == 1}
            if len(cases) > 1:
                return "[" + "".join(re.escape(v) for v in sorted(cases)) + "]"
        return re.escape(c)

    def character_class(self) -> str:
        text = self.text
        negated = self.i < len(text) and text[self.i] in "!^"
        if negated:
            self.i += 1
        items: list[str] = []
        while True:
            if self.i >= len(text):
                raise self.fail("a '[' without its ']'")
            c = text[self.i]
            if c == "]":
                self.i += 1
                break
            if text.startswith("[:", self.i):
                end = text.find(":]", self.i + 2)
                name = text[self.i + 2 : end] if end >= 0 else ""
                if name not in _POSIX_CLASSES:
                    raise self.fail(f"an unknown class '[:{name}:]'")
                items.append(_POSIX_CLASSES[name])
                self.i = end + 2
            elif c == "\\":
                if self.i + 1 >= len(text):
                    raise self.fail("a backslash with nothing after it")
                nxt = text[self.i + 1]
                items.append("\\" + nxt if nxt in _PERL_CLASSES else re.escape(nxt))
                self.i += 2
            elif c == "-" and items and self.i + 1 < len(text) and text[self.i + 1] != "]":
                items.append("-")
                self.i += 1
            else:
                items.append(re.escape(c) if c in "[^-" else c)
                self.i += 1
        if not items:
            raise self.fail("an empty character class '[]'")
        body = "".join(items)
        return f"[^/{body}]" if negated else f"[{body}]"

    def regexp(self) -> str:
        end = self.text.find("}}", self.i)
        if end < 0:
            raise self.fail("a '{{' without its '}}'")
        inner = self.text[self.i : end]
        self.i = end + 2
        # rclone's (Go's) regexps take flags at their start, e.g. {{(?i)jpg}}; Python only
        # takes them there for the whole expression, so they are scoped to this part.
        flags = _LEADING_FLAGS.match(inner)
        if flags:
            return f"(?{flags.group(1)}:{inner[flags.end() :]})"
        return f"(?:{inner})"


class KeyRules:
    """Include and exclude rules, tried in order; the first that matches decides.
    `ignore_case`: whatever the case of the key's letters.

    Raises:
        ConfigError: A pattern is not valid (naming it and where it was written).
    """

    def __init__(self, rules: Sequence[FilterRule], *, ignore_case: bool = False) -> None:
        self.rules = tuple(rules)
        flags = re.DOTALL | re.ASCII | (re.IGNORECASE if ignore_case else 0)
        alternatives = []
        for n, rule in enumerate(self.rules):
            try:
                regex = translate(rule.pattern, ignore_case=ignore_case)
                re.compile(regex, flags)
            except (PatternError, re.error) as exc:
                # A regular expression's own error: its position is in our translation.
                why = f"{exc.msg} in pattern '{rule.pattern}'" if isinstance(exc, re.error) else exc
                raise ConfigError(
                    f"{rule.origin}: {why}",
                    # No backslash: a hint is printed as plain text, where it would show doubled.
                    hint="patterns follow rclone's: * within a segment, ** across segments, "
                    "? one character, [a-z] classes, {a,b} alternatives; a backslash escapes",
                ) from None
            alternatives.append(f"(?P<r{n}>{regex})")
        # One expression, each rule an alternative in order: at the start of a key, the first
        # alternative that matches the whole key is the first rule that matches.
        self._regex = (
            re.compile("(?:" + "|".join(alternatives) + r")\Z", flags) if alternatives else None
        )
        groups = self._regex.groupindex if self._regex else {}
        self._groups = [(groups[f"r{n}"], rule.include) for n, rule in enumerate(self.rules)]

    def takes(self, key: str) -> bool:
        """Whether the rules take `key` (relative to the pair's root)."""
        if self._regex is None:
            return True
        match = self._regex.match(key)
        if match is None:
            return True
        for group, include in self._groups:
            if match.start(group) >= 0:
                return include
        return True  # pragma: no cover - a match always has its alternative


def relative_key(prefix: str, suffix: str) -> str:
    """The key that patterns and key lists see: what follows the pair's prefix, without the
    `/` that separates it from a prefix written without its trailing `/`."""
    if prefix and not prefix.endswith("/") and suffix.startswith("/"):
        return suffix[1:]
    return suffix


class Filters:
    """A run's filters, ready to judge objects.

    Args:
        spec: What the filters say.
        now: When ages are measured from (seconds since the epoch), the same for every object
            of a pass; None: the clock at each judgment (a worker that runs for days).

    Raises:
        ConfigError: A pattern is not valid.
    """

    def __init__(self, spec: FilterSpec, *, now: float | None = None) -> None:
        self.spec = spec
        self.now = now
        self._rules = KeyRules(spec.rules, ignore_case=spec.ignore_case) if spec.rules else None
        self._keys = spec.files_from

    def __bool__(self) -> bool:
        return bool(self.spec)

    @property
    def by_key(self) -> bool:
        return self.spec.by_key

    def takes_key(self, key: str) -> bool:
        """Whether the key filters (rules and key list) take `key`, relative to the root."""
        if self._keys is not None and key not in self._keys:
            return False
        return self._rules is None or self._rules.takes(key)

    def excludes(self, key: str, obj: ObjectInfo) -> str | None:
        """Why the filters leave out source object `obj` with relative key `key`, or None
        when they take it."""
        return self.judge(key, obj.size, obj.last_modified)

    def judge(self, key: str, size: int | None, modified: float | None) -> str | None:
        """Why the filters leave out a source object with relative key `key`, `size` bytes
        (None: unknown, the size bounds are not applied) modified at `modified` (seconds since
        the epoch; unknown fails an age bound), or None when they take it."""
        if self._keys is not None and key not in self._keys:
            return "not in the --files-from list"
        if self._rules is not None and not self._rules.takes(key):
            return "excluded by a filter rule"
        spec = self.spec
        if size is not None:
            if spec.min_size is not None and size < spec.min_size:
                return f"smaller than --min-size ({size} < {spec.min_size} bytes)"
            if spec.max_size is not None and size > spec.max_size:
                return f"larger than --max-size ({size} > {spec.max_size} bytes)"
        if spec.min_age is None and spec.max_age is None:
            return None
        if modified is None:
            return "its modification time is unknown, and an age filter is set"
        now = time.time() if self.now is None else self.now
        if spec.min_age is not None and modified > spec.min_age.cutoff(now):
            return f"younger than --min-age {spec.min_age.text}"
        if spec.max_age is not None and modified < spec.max_age.cutoff(now):
            return f"older than --max-age {spec.max_age.text}"
        return None


__all__ = ["Filters", "KeyRules", "PatternError", "relative_key", "translate"]
