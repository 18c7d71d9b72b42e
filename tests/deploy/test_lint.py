"""cfn-lint on the synthesised templates, and ruff on the deploy app (the project's lint step
covers src/ and tests/ only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DEPLOY_DIR, PROJECT_ROOT
from .templates import Synthesized


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_cfn_lint_finds_nothing_in_any_variant(
    ec2_variant: Synthesized, lambda_variant: Synthesized, combined_variant: Synthesized
) -> None:
    paths = [str(v.path) for v in (ec2_variant, lambda_variant, combined_variant)]
    # From deploy/, so its .cfnlintrc.yaml applies, as when an operator runs it there.
    done = subprocess.run(
        [_tool("cfn-lint"), "--format", "json", *paths],
        cwd=DEPLOY_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert not errors, json.dumps(errors, indent=2)
    assert not findings, json.dumps(findings, indent=2)
    assert done.returncode == 0, done.stderr


def test_deploy_code_is_ruff_clean() -> None:
    targets = [str(DEPLOY_DIR), str(PROJECT_ROOT / "tests" / "deploy")]
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [_tool("ruff"), *command, *targets],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_lint_step_fails_when_there_is_nothing_to_lint(tmp_path: Path, state: str) -> None:
    assembly = tmp_path / "cdk.out"
    if state == "empty":
        assembly.mkdir()
    done = subprocess.run(
        [sys.executable, str(DEPLOY_DIR / "lint.py"), str(assembly)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert f"no templates to lint in {assembly}" in done.stderr
    assert "python3 app.py" in done.stderr  # what to do about it


def test_lint_step_lints_what_app_wrote(deploy_copy: Path, combined_variant: Synthesized) -> None:
    # README step 3, in the working copy app.py ran in: `python3 lint.py` with no argument.
    done = subprocess.run(
        [sys.executable, "lint.py"],
        cwd=deploy_copy,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cdk.out/Longbow-lb-both.template.json" in done.stdout
