"""The wheel and the Lambda layer built at synthesis."""

from __future__ import annotations

import zipfile
from pathlib import Path

from longbow_deploy.build import Artifacts, build_artifacts, function_code, source_hash

from .conftest import PROJECT_ROOT

_EM_X86_64 = 62  # ELF e_machine of x86-64


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


def test_function_code_is_content_addressed(tmp_path: Path) -> None:
    first = function_code(tmp_path, {"cluster.toml": "a = 1\n"})
    assert function_code(tmp_path, {"cluster.toml": "a = 1\n"}) == first
    other = function_code(tmp_path, {"cluster.toml": "a = 2\n"})
    assert other != first
    assert (other / "cluster.toml").read_text() == "a = 2\n"
