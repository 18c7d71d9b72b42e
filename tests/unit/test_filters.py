"""The filter language as tables: rclone's documented examples, the rule order, key lists,
sizes, ages, and the values that are refused."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from s3longbow.config import Settings
from s3longbow.errors import ConfigError
from s3longbow.model import ObjectInfo
from s3longbow.plan.filters import Filters, KeyRules, PatternError, relative_key, translate
from s3longbow.plan.ledger import plan_options
from s3longbow.selection import (
    AgeLimit,
    FilterRule,
    FilterSpec,
    build_filters,
    filters_in_file,
    parse_age,
    parse_filter_size,
    parse_rule,
    read_files_from,
    read_filter_file,
    read_pattern_file,
)

# (pattern, keys it matches, keys it does not match). The first rows are the examples of
# rclone's filtering documentation, with its paths written as keys (no leading '/').
PATTERNS: list[tuple[str, list[str], list[str]]] = [
    ("file.jpg", ["file.jpg", "directory/file.jpg"], ["afile.jpg", "directory/afile.jpg"]),
    ("/file.jpg", ["file.jpg"], ["afile.jpg", "directory/file.jpg"]),
    ("*.jpg", ["file.jpg", "dir/file.jpg"], ["file.png", "dir/file.png"]),
    ("/*.jpg", ["file.jpg", "file2.jpg"], ["file.png", "dir/file.jpg"]),
    ("*.{jpg,png}", ["file.jpg", "dir/file.png"], ["file.gif", "dir/file.gif"]),
    ("dir/**", ["dir/anyfile", "subdir/dir/subsubdir/anyfile"], ["file.png", "subdir/file.png"]),
    ("*.t?t", ["file.txt", "dir/file.tzt"], ["file.qxt", "dir/file.png"]),
    ("*.[a-z]", ["file.a", "dir/file.b"], ["file.0", "dir/file.1"]),
    ("*.\\?\\?\\?", ["file.???", "dir/file.???"], ["file.abc", "dir/file.def"]),
    ("*.\\d\\d\\d", ["file.012", "dir/file.345"], ["file.abc", "dir/file.def"]),
    ("*.{{jpe?g}}", ["file.jpeg", "dir/file.jpg"], ["file.png", "dir/file.jpeeg"]),
    ("{A,B}/**", ["A/x", "B/y/z", "x/A/y"], ["C/x", "AB/x"]),
    ("??[^[:punct:]]*", ["abcd", "abc", "dir/xyz"], ["ab_c", "ab", "ab.c"]),
    # rclone's own translation table (fs/filter/glob_test.go), as matches.
    ("potato", ["potato", "a/potato"], ["POTATO", "potatoes", "apotato"]),
    ("potato,sausage", ["potato,sausage"], ["potato", "sausage"]),
    ("potato?sausage", ["potatoXsausage"], ["potato/sausage", "potatosausage"]),
    ("potat[oa]", ["potato", "potata"], ["potate"]),
    ("potat[[:alpha:]]or", ["potatXor"], ["potat1or"]),
    ("'.' '+' '(' ')' '|' '^' '$'", ["'.' '+' '(' ')' '|' '^' '$'"], ["'x' '+' '(' ')'"]),
    ("a{b,c,d}e", ["abe", "ace", "ade"], ["ae", "afe"]),
    ("potato**", ["potato", "potatoes/x/y"], ["potat"]),
    ("potato**sausage", ["potato/x/sausage", "potatosausage"], ["potato/x/sausages"]),
    ("[\\[\\]]", ["[", "]", "x/["], ["a"]),
    ("a\\*b", ["a*b"], ["axb"]),
    ("a\\\\b", ["a\\b"], ["ab", "a/b"]),
    # Segments and the root.
    ("*", ["a", "x/y/z"], []),
    ("a*", ["a", "abc", "x/abc"], ["a/b", "ba"]),
    ("/a/*.log", ["a/x.log"], ["a/b/x.log", "b/a/x.log"]),
    ("a/**/z", ["a/b/c/z", "x/a/b/z"], ["a/z", "a/b/zz"]),
    ("x[!a]y", ["xby"], ["xay", "x/y"]),
    ("x[^a-c]y", ["xdy"], ["xby", "x/y"]),
    ("\\{a,b\\}", ["{a,b}"], ["a", "b"]),
    ("*.{{(?i)jpg}}", ["a.JPG", "a.jpg", "d/b.Jpg"], ["a.png"]),
    ("{a,{b,c}d}.txt", ["a.txt", "bd.txt", "cd.txt"], ["b.txt"]),
    ("*.\\w", ["a.b", "a._"], ["a.-"]),
    # A directory: everything under it, wherever it is (or at the root with a leading '/').
    ("logs/", ["logs/a", "x/logs/b/c", "logs/"], ["logs", "mylogs/a", "logsx/a"]),
    ("/logs/", ["logs/a", "logs/b/c"], ["x/logs/a", "logs"]),
    ("/a/*/", ["a/b/c", "a/b/c/d"], ["a/c", "x/a/b/c"]),
    # Keys may hold any character: a newline is a character like any other.
    ("*.txt", ["a\nb.txt", "é/ü.txt"], ["a.txt\n", "a.txt/"]),
]


@pytest.mark.parametrize(("pattern", "matching", "other"), PATTERNS)
def test_patterns_match_as_rclone_documents(
    pattern: str, matching: list[str], other: list[str]
) -> None:
    rules = KeyRules([FilterRule(False, pattern, "--exclude")])
    assert [k for k in matching if rules.takes(k)] == []
    assert [k for k in other if not rules.takes(k)] == []


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("***potato", "too many stars"),
        ("ab]c", "']' without its '['"),
        ("ab[c", "'[' without its ']'"),
        ("ab}c", "'}' without its '{'"),
        ("ab{c", "'{' without its '}'"),
        ("a{{b", "'{{' without its '}}'"),
        ("a[]", "empty character class"),
        ("a[[:nope:]]", "unknown class"),
        ("a\\", "nothing after it"),
    ],
)
def test_bad_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message.replace("[", "\\[").replace("{", "\\{")):
        translate(pattern)


def test_a_bad_pattern_names_where_it_was_written() -> None:
    with pytest.raises(ConfigError) as info:
        KeyRules([FilterRule(True, "*.jpg", "--include"), FilterRule(False, "[z-a]", "f.txt:3")])
    assert info.value.message.startswith("f.txt:3: ")
    assert "[z-a]" in info.value.message and info.value.hint


def rules_of(*lines: str) -> KeyRules:
    return KeyRules([FilterRule(line[0] == "+", line[2:], "test") for line in lines])


def test_first_matching_rule_decides_and_unmatched_keys_are_taken() -> None:
    # rclone's --filter-from example.
    rules = rules_of(
        "- secret*.jpg",
        "+ *.jpg",
        "+ *.png",
        "+ file2.avi",
        "- /dir/tmp/**",
        "- /dir/Trash/**",
        "+ /dir/**",
        "- *",
    )
    taken = ["file1.jpg", "sub/file3.png", "file2.avi", "dir/tmp/x.jpg", "dir/z", "dir/y/w"]
    left = ["secret17.jpg", "sub/secret.jpg", "dir/tmp/x.txt", "dir/Trash/y", "other.txt"]
    assert [k for k in taken if not rules.takes(k)] == []
    assert [k for k in left if rules.takes(k)] == []
    # Without a rule that takes everything else, what no rule matches is taken.
    assert rules_of("- *.tmp").takes("a.txt")


def test_directory_rules_exclude_whole_trees() -> None:
    rules = rules_of("- /dir1/", "- /dir2/", "+ *.pdf", "- **")
    assert [k for k in ("a.pdf", "sub/b.pdf") if not rules.takes(k)] == []
    assert [k for k in ("dir1/a.pdf", "dir2/x/c.pdf", "x.txt") if rules.takes(k)] == []


def test_build_filters_orders_includes_excludes_then_files(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.txt"
    rules_file.write_text("# comment\n; also a comment\n\n  + keep/**  \n- *.bak\n")
    spec = build_filters(
        include=["*.jpg"], exclude=["secret*"], filter_from=[rules_file], min_size=1
    )
    assert [(r.include, r.pattern, r.origin) for r in spec.rules] == [
        (True, "*.jpg", "--include"),
        (False, "secret*", "--exclude"),
        (True, "keep/**", f"{rules_file}:4"),
        (False, "*.bak", f"{rules_file}:5"),
        (False, "/**", "--include (every key no rule took)"),
    ]
    rules = KeyRules(spec.rules)
    # As in rclone, includes come first: secret.jpg is taken by *.jpg before secret* is tried.
    assert rules.takes("secret.jpg") and rules.takes("keep/x.bak") and rules.takes("a.jpg")
    assert not rules.takes("secret.txt") and not rules.takes("a.txt")


def test_every_rule_source_in_rclones_order(tmp_path: Path) -> None:
    includes = tmp_path / "in.txt"
    includes.write_text("# images\n  *.png  \n\n")
    excludes = tmp_path / "out.txt"
    excludes.write_text("; never\ntmp/\n")
    rules_file = tmp_path / "rules.txt"
    rules_file.write_text("- *.bak\n")
    spec = build_filters(
        filter_from=[rules_file],
        filter=["+ keep/**", "- *.log"],
        exclude_from=[excludes],
        exclude=["secret*"],
        include_from=[includes],
        include=["*.jpg"],
    )
    assert [(r.include, r.pattern, r.origin) for r in spec.rules] == [
        (True, "*.jpg", "--include"),
        (True, "*.png", f"{includes}:2"),
        (False, "secret*", "--exclude"),
        (False, "tmp/", f"{excludes}:2"),
        (True, "keep/**", "--filter"),
        (False, "*.log", "--filter"),
        (False, "*.bak", f"{rules_file}:1"),
        (False, "/**", "--include (every key no rule took)"),
    ]
    rules = KeyRules(spec.rules)
    # The first rule that matches decides: an include before an exclude wins.
    assert rules.takes("tmp/a.png") and rules.takes("keep/x.log") and rules.takes("keep/x.bak")
    assert not rules.takes("tmp/a.txt") and not rules.takes("x.log") and not rules.takes("x.bak")


def test_an_include_from_file_alone_leaves_out_what_it_does_not_take(tmp_path: Path) -> None:
    includes = tmp_path / "in.txt"
    includes.write_text("*.jpg\n")
    rules = KeyRules(build_filters(include_from=[includes]).rules)
    assert rules.takes("a/b.jpg") and not rules.takes("a/b.txt")
    excludes = tmp_path / "out.txt"
    excludes.write_text("*.jpg\n")
    rules = KeyRules(build_filters(exclude_from=[excludes]).rules)
    assert not rules.takes("a/b.jpg") and rules.takes("a/b.txt")


def test_a_bang_filter_clears_includes_and_excludes_before_it() -> None:
    spec = build_filters(include=["*.jpg"], exclude=["*.txt"], filter=["!", "+ *.txt"])
    rules = KeyRules(spec.rules)
    # Cleared: the --exclude is gone; the implied exclude of an --include stays (as in rclone).
    assert rules.takes("a.txt") and not rules.takes("a.jpg")


def test_filter_rules_must_have_a_sign() -> None:
    assert parse_rule("+ a", "--filter") == FilterRule(True, "a", "--filter")
    assert parse_rule("!", "--filter") is None
    with pytest.raises(ConfigError) as info:
        build_filters(filter=["*.jpg"])
    assert info.value.message == "--filter: '*.jpg' is not a rule"
    assert "'+ pattern'" in (info.value.hint or "")


def test_pattern_files_read_from_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("*.jpg\n# not a pattern\n"))
    spec = build_filters(include_from=[Path("-")])
    assert [r.pattern for r in spec.rules] == ["*.jpg", "/**"]
    assert spec.rules[0].origin == "-:1"


def test_standard_input_is_read_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_filters(exclude_from=[Path("-")], files_from=[Path("-")])
    assert "standard input ('-')" in info.value.message and "--files-from" in (
        info.value.hint or ""
    )


def test_ignore_case_matches_letters_in_either_case() -> None:
    rules = [FilterRule(True, "*.JPG", "--include"), FilterRule(True, "/Ärger/**", "--include")]
    rules.append(FilterRule(False, "/**", "implied"))
    cased = KeyRules(rules)
    assert cased.takes("a/b.JPG") and not cased.takes("a/b.jpg")
    assert not cased.takes("ärger/x")
    folded = KeyRules(rules, ignore_case=True)
    assert folded.takes("a/b.jpg") and folded.takes("a/b.Jpg") and folded.takes("ärger/x")
    assert folded.takes("ÄRGER/x") and not folded.takes("a/b.jpgx")
    # Classes and wildcards keep their meaning: '?' is one character, '*' no '/'.
    assert KeyRules([FilterRule(False, "[a-c]?.TXT", "x")], ignore_case=True).takes("d1.txt")
    assert not KeyRules([FilterRule(False, "[a-c]?.TXT", "x")], ignore_case=True).takes("B1.txt")
    spec = FilterSpec(rules=tuple(rules), ignore_case=True)
    assert Filters(spec).takes_key("x/Y.jpg") and not Filters(spec).takes_key("x/y.png")


def test_pattern_file_lines_name_their_file(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("a\n\n b \n")
    assert read_pattern_file(path, include=False) == [
        FilterRule(False, "a", f"{path}:1"),
        FilterRule(False, "b", f"{path}:3"),
    ]
    with pytest.raises(ConfigError, match="cannot read pattern file") as info:
        read_pattern_file(tmp_path / "missing.txt", include=True)
    assert "--include-from" in (info.value.hint or "")


def test_a_bang_line_clears_the_rules_above(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("+ *.jpg\n+ *.gif\n!\n+ 42.doc\n- *\n")
    rules = KeyRules(build_filters(exclude=["*.doc"], filter_from=[path]).rules)
    assert rules.takes("42.doc")
    assert [k for k in ("a.jpg", "b.gif", "x.doc") if rules.takes(k)] == []


def test_filter_files_refuse_lines_that_are_not_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("+ ok\n*.jpg\n")
    with pytest.raises(ConfigError) as info:
        read_filter_file(path)
    assert f"{path}:2" in info.value.message and "'*.jpg' is not a rule" in info.value.message
    assert "+ pattern" in (info.value.hint or "")
    path.write_text("+*.jpg\n")  # no space after the sign
    with pytest.raises(ConfigError, match="is not a rule"):
        read_filter_file(path)


@pytest.mark.parametrize("reader", [read_filter_file, read_files_from])
def test_unreadable_lists_say_which_file(tmp_path: Path, reader: object) -> None:
    with pytest.raises(ConfigError) as info:
        reader(tmp_path / "missing.txt")  # type: ignore[operator]
    assert "missing.txt" in info.value.message and "No such file" in info.value.message
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        reader(binary)  # type: ignore[operator]


def test_key_lists_are_read_as_rclone_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# comment\n; comment\nfile1.jpg\n  /subdir/file2.jpg  \n\n")
    assert read_files_from(path) == {"file1.jpg", "subdir/file2.jpg"}
    other = tmp_path / "more.txt"
    other.write_text("c\n")
    assert build_filters(files_from=[path, other]).files_from == {
        "file1.jpg",
        "subdir/file2.jpg",
        "c",
    }


def test_raw_key_lists_take_each_line_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "raw.txt"
    path.write_bytes(b"# not a comment\n  two spaces \r\n/lead\n\ncarriage\rreturn\nlast")
    keys = {"# not a comment", "  two spaces ", "lead", "carriage\rreturn", "last"}
    assert read_files_from(path, raw=True) == keys
    spec = build_filters(files_from=[path], files_from_raw=[path])
    # Both lists together: the plain reading drops the comment and trims the spaces.
    assert spec.files_from is not None and keys <= spec.files_from
    assert "two spaces" in spec.files_from and "# not a comment" in keys


def test_raw_key_lists_from_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b" a\r\n;b\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert build_filters(files_from_raw=[Path("-")]).files_from == {" a", ";b"}


KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100 * KiB),  # a bare number is KiB, as in rclone
        (100, 100 * KiB),
        ("100B", 100),
        ("0", 0),
        ("10k", 10 * KiB),
        ("10K", 10 * KiB),
        ("10M", 10 * MiB),
        ("10MiB", 10 * MiB),
        ("10Mi", 10 * MiB),
        ("10MB", 10 * MiB),
        ("1.5G", int(1.5 * GiB)),
        ("2T", 2 * 1024 * GiB),
        ("1P", 1024**5),
        (" 3m ", 3 * MiB),
    ],
)
def test_sizes_are_read_as_rclone_reads_them(text: str | int, expected: int) -> None:
    assert parse_filter_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1M", "ten", "10X", "10 M", "1.2.3K", True])
def test_bad_sizes_are_refused(text: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_filter_size(text, what="--min-size")  # type: ignore[arg-type]
    assert info.value.message.startswith("--min-size") and "10M" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("500ms", 0.5),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        ("1M", 30 * 86400),
        ("1y", 365 * 86400),
        ("1.5h", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_age(text) == AgeLimit(text, seconds=seconds)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01 12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_dates_and_times(text: str, moment: datetime) -> None:
    assert parse_age(text) == AgeLimit(text, moment=moment.timestamp())


@pytest.mark.parametrize("text", ["", "7 days", "7x", "-1d", "d", "2024-13-01", "yesterday"])
def test_bad_ages_are_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_age(text, what="--max-age")
    assert info.value.message.startswith("--max-age") and "7d" in (info.value.hint or "")


def test_bounds_that_leave_nothing_are_refused() -> None:
    with pytest.raises(ConfigError, match="--min-size .* is above --max-size"):
        build_filters(min_size=10, max_size=5)
    with pytest.raises(ConfigError, match="leave no time between them"):
        build_filters(min_age=parse_age("7d"), max_age=parse_age("1d"), now=1e9)
    build_filters(min_age=parse_age("1d"), max_age=parse_age("7d"), now=1e9)


NOW = 1_700_000_000.0
DAY = 86400.0


def obj(key: str, size: int = 10, age_days: float | None = 1.0) -> ObjectInfo:
    modified = None if age_days is None else NOW - age_days * DAY
    return ObjectInfo(key, size, last_modified=modified)


def test_filters_judge_key_size_and_age() -> None:
    spec = FilterSpec(
        rules=(FilterRule(False, "*.tmp", "--exclude"),),
        min_size=10,
        max_size=100,
        min_age=parse_age("1h"),
        max_age=parse_age("30d"),
    )
    f = Filters(spec, now=NOW)
    cases = {
        "a.tmp": (obj("a.tmp"), "excluded by a filter rule"),
        "small": (obj("small", size=9), "smaller than --min-size (9 < 10 bytes)"),
        "large": (obj("large", size=101), "larger than --max-size (101 > 100 bytes)"),
        "young": (obj("young", age_days=0.01), "younger than --min-age 1h"),
        "old": (obj("old", age_days=31), "older than --max-age 30d"),
        "unknown": (obj("unknown", age_days=None), "its modification time is unknown"),
        "ok": (obj("ok", size=10), None),
        "edge": (obj("edge", size=100, age_days=30), None),
    }
    for key, (o, why) in cases.items():
        got = f.excludes(key, o)
        assert (got or "").startswith(why or "") and (got is None) == (why is None), key
    # Keys alone: size and age are not the key filters' business.
    assert f.takes_key("small") and not f.takes_key("x/a.tmp")


def test_age_bounds_may_be_moments() -> None:
    spec = FilterSpec(max_age=parse_age("2023-11-01"), min_age=parse_age("2023-11-10"))
    f = Filters(spec, now=NOW)  # NOW is 2023-11-14
    assert f.excludes("a", obj("a", age_days=10)) is None  # 2023-11-04
    assert f.excludes("a", obj("a", age_days=2)) == "younger than --min-age 2023-11-10"
    assert f.excludes("a", obj("a", age_days=20)) == "older than --max-age 2023-11-01"


def test_key_list_takes_only_its_keys() -> None:
    f = Filters(FilterSpec(files_from=frozenset({"a", "d/b"})), now=NOW)
    assert f.takes_key("a") and f.takes_key("d/b")
    assert not f.takes_key("b") and not f.takes_key("x/a")
    assert f.excludes("c", obj("c")) == "not in the --files-from list"
    assert not Filters(FilterSpec()) and Filters(FilterSpec(min_size=0))


def test_relative_keys() -> None:
    assert relative_key("photos/", "a/b.jpg") == "a/b.jpg"
    assert relative_key("photos", "/a/b.jpg") == "a/b.jpg"  # s3://bucket/photos
    assert relative_key("", "/a") == "/a"  # a key that starts with '/' at the bucket's root
    assert relative_key("photos", "2/x") == "2/x"


def test_config_file_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "longbow.toml"
    got = filters_in_file(
        {
            "include": "*.jpg",
            "include_from": "in.txt",
            "exclude": ["a", "b"],
            "exclude_from": ["out.txt"],
            "filter": ["+ x", "- y"],
            "ignore_case": True,
            "filter_from": "rules.txt",
            "files_from": ["k1.txt", "/abs/k2.txt"],
            "min_size": "10M",
            "max_size": 2048,
            "min_age": "1h",
            "max_age": "2024-01-01",
        },
        cfg,
    )
    assert got["include"] == ("*.jpg",) and got["exclude"] == ("a", "b")
    assert got["filter_from"] == (tmp_path / "rules.txt",)
    assert got["include_from"] == (tmp_path / "in.txt",)
    assert got["exclude_from"] == (tmp_path / "out.txt",)
    assert got["filter"] == ("+ x", "- y") and got["ignore_case"] is True
    assert got["files_from"] == (tmp_path / "k1.txt", Path("/abs/k2.txt"))
    assert (got["min_size"], got["max_size"]) == (10 * MiB, 2048 * KiB)
    assert got["min_age"].seconds == 3600 and got["max_age"].moment is not None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"include": 3}, "include must be a string or a list of strings"),
        ({"files_from": ["a", 1]}, "files_from must be a string or a list"),
        ({"min_size": "lots"}, "min_size: 'lots' is not a size"),
        ({"max_age": "soon"}, "max_age: 'soon' is not a duration or a date"),
        ({"min_age": True}, "min_age must be a string"),
        ({"ignore_case": "yes"}, "ignore_case must be true or false"),
        ({"filter": {"+": "x"}}, "filter must be a string or a list of strings"),
    ],
)
def test_bad_config_file_keys_name_the_file(
    tmp_path: Path, raw: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        filters_in_file(raw, tmp_path / "c.toml")
    assert info.value.message.startswith(f"config file {tmp_path / 'c.toml'}: ")
    assert message in info.value.message


def test_a_pass_planned_ignoring_case_is_not_resumed_by_one_that_does_not() -> None:
    rules = (FilterRule(False, "*.jpg", "--exclude"),)
    cased = Settings((), filters=FilterSpec(rules=rules))
    folded = Settings((), filters=FilterSpec(rules=rules, ignore_case=True))
    assert plan_options(cased) != plan_options(folded)
    assert plan_options(cased) == plan_options(Settings((), filters=FilterSpec(rules=rules)))
