"""`app.py` run as the README says: where the cloud assembly goes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import DEPLOY_DIR
from .templates import Synthesized


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("longbow_deploy_app", DEPLOY_DIR / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_writes_cdk_out_beside_itself(deploy_copy: Path, combined_variant: Synthesized) -> None:
    # README step 3: `cd deploy && python3 app.py` writes cdk.out/, which the lint step reads.
    assert combined_variant.path.parent == deploy_copy / "cdk.out"
    written = sorted(p.name for p in (deploy_copy / "cdk.out").glob("*.template.json"))
    assert written == ["Longbow-lb-both.template.json"]


def test_the_cdk_cli_chooses_the_assembly_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _load_app()
    monkeypatch.delenv("CDK_OUTDIR", raising=False)
    assert app.assembly_dir() == DEPLOY_DIR / "cdk.out"
    # `cdk synth` and `cdk deploy` set it (to cdk.json's "output") and read the assembly there.
    monkeypatch.setenv("CDK_OUTDIR", "/tmp/cli-assembly")
    assert app.assembly_dir() == Path("/tmp/cli-assembly")
