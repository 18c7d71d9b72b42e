"""The deployment variants, each synthesised once per test session and shared by the tests.

- `ec2`: EC2 workers only, the destination reached with keys from the credentials parameter;
- `lambda`: the Lambda worker only, both sides in this account, the new-object trigger;
- `combined`: both kinds of workers in an existing VPC, the source reached with keys,
  synthesised by running `app.py` in a working copy of deploy/ as the README says (the
  operator's path).

Synthesis needs Node.js (the CDK's jsii runtime) and pip (the wheel and the Lambda layer are
built at synthesis); no AWS account and no Docker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# Before aws_cdk is imported anywhere: keep jsii's notices about this machine's Node.js
# version out of the test output (an operator running app.py sees them).
for _notice in ("DEPRECATED", "UNTESTED", "END_OF_LIFE"):
    os.environ.setdefault(f"JSII_SILENCE_WARNING_{_notice}_NODE_VERSION", "18,20")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = PROJECT_ROOT / "deploy"
if str(DEPLOY_DIR) not in sys.path:
    sys.path.insert(0, str(DEPLOY_DIR))

from aws_cdk.assertions import Template  # noqa: E402
from longbow_deploy.build import Artifacts, build_artifacts  # noqa: E402
from longbow_deploy.settings import settings_from_dict  # noqa: E402
from longbow_deploy.stack import create_app  # noqa: E402

from .templates import Synthesized  # noqa: E402

# Synthesis times by variant, printed at the end of the session.
SYNTH_SECONDS: dict[str, float] = {}

EC2_SETTINGS: dict[str, Any] = {
    "name": "lb-ec2",
    "pairs": [
        {"src": "s3://photos-src/2024/", "dst": "s3://photos-dst/archive/2024/"},
        {"src": "s3://photos-src/2025/", "dst": "s3://photos-dst/archive/2025/"},
        {"src": "s3://logs-src/", "dst": "s3://logs-dst/"},
    ],
    "source": {"region": "us-east-1"},
    "destination": {
        "region": "cn-north-1",
        "endpoint_url": "https://s3.cn-north-1.amazonaws.com.cn",
    },
    "parameters": {"credentials": "/lb-ec2/credentials", "credentials_side": "destination"},
    "transfer": {
        "workers": 24,
        "part_size": "32MiB",
        "memory_limit": "1GiB",
        "no_overwrite": True,
        "restore_days": 7,
        "restore_tier": "Bulk",
    },
    "filters": {
        "include": ["*.jpg", "*.png"],
        "filter": ["- thumbs/"],
        "ignore_case": True,
        "min_size": "1K",
        "max_age": "30d",
    },
    "queue": {"visibility_timeout": 300, "max_receive_count": 6, "retention_days": 7},
    "ec2": {
        "instance_types": ["c6i.large", "c5.large"],
        "min_capacity": 1,
        "max_capacity": 12,
        "scale_out_steps": [[100, 1], [500, 2], [5000, 5]],
        "idle_minutes": 20,
    },
    "sender": {"schedule": "rate(12 hours)"},
    "monitoring": {"emails": ["ops@example.com", "oncall@example.com"], "stall_minutes": 45},
    "log_retention_days": 14,
}

LAMBDA_SETTINGS: dict[str, Any] = {
    "name": "lb-fn",
    "retain_data": False,
    "pairs": [
        {
            "src": "s3://incoming-src/uploads/",
            "dst": "s3://incoming-dst/",
            "src_inventory": "s3://incoming-reports/inv/incoming-src/all/2024-05-01T01-00Z/"
            "manifest.json",
        }
    ],
    "queue": {"visibility_timeout": 900, "max_receive_count": 4, "delete_removed": True},
    "ec2": {"enabled": False},
    "lambda_worker": {
        "enabled": True,
        "memory_mb": 3008,
        "timeout_seconds": 840,
        "batch_size": 5,
        "reserved_concurrency": 40,
        "max_concurrency": 30,
        "workers": 8,
    },
    "trigger": {"bucket": "incoming-src", "prefix": "uploads/", "removed": True},
    "monitoring": {"emails": ["ops@example.com"]},
    "log_retention_days": 7,
}

COMBINED_TOML = """
name = "lb-both"
account = "123456789012"
region = "eu-west-1"

[[pairs]]
src = "s3://partner-src/exports/"
dst = "s3://lake-dst/partner/"

[source]
endpoint_url = "https://objects.example.net"
path_style = true

[parameters]
credentials = "/lb-both/partner-keys"
credentials_side = "source"
credentials_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd"

[transfer]
ignore = ["*.tmp", "_temporary/*"]
storage_class = "STANDARD_IA"

[queue]
visibility_timeout = 600

[network]
vpc_id = "vpc-0123456789abcdef0"
subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
availability_zones = ["eu-west-1a", "eu-west-1b"]

[ec2]
instance_types = ["c7g.large", "c6g.large", "m7g.large"]
on_demand_fallback = true

[lambda_worker]
enabled = true
timeout_seconds = 600
max_concurrency = 5

[sender]
schedule = "cron(0 3 * * ? *)"
"""


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("LONGBOW_DEPLOY_BUILD_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("deploy-build")


@pytest.fixture(scope="session")
def artifacts(build_dir: Path) -> Artifacts:
    return build_artifacts(PROJECT_ROOT, build_dir, layer=True)


def _synthesize_in_process(
    name: str, raw: dict[str, Any], artifacts: Artifacts, build_dir: Path, outdir: Path
) -> Synthesized:
    settings = settings_from_dict(raw, where=name)
    started = time.monotonic()
    app, stack = create_app(settings, artifacts=artifacts, build_dir=build_dir, outdir=str(outdir))
    assembly = app.synth()
    SYNTH_SECONDS[name] = time.monotonic() - started
    path = outdir / stack.template_file
    # One synthesis per variant: the assertions read the written template.
    data = assembly.get_stack_artifact(stack.artifact_id).template
    return Synthesized(name, settings, data, path, Template.from_json(data))


@pytest.fixture(scope="session")
def ec2_variant(
    artifacts: Artifacts, build_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    return _synthesize_in_process(
        "ec2", EC2_SETTINGS, artifacts, build_dir, tmp_path_factory.mktemp("cdk-ec2")
    )


@pytest.fixture(scope="session")
def lambda_variant(
    artifacts: Artifacts, build_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    return _synthesize_in_process(
        "lambda", LAMBDA_SETTINGS, artifacts, build_dir, tmp_path_factory.mktemp("cdk-lambda")
    )


@pytest.fixture(scope="session")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working copy of deploy/ for running `app.py` as the README says, without writing into
    this tree: deploy/ is copied (app.py finds its settings and writes `cdk.out/` beside
    itself) and the sources the wheel is built from are linked, so the build cache applies."""
    root = tmp_path_factory.mktemp("working-copy")
    copy = root / "deploy"
    shutil.copytree(
        DEPLOY_DIR,
        copy,
        ignore=shutil.ignore_patterns(".build", "cdk.out", "settings.toml", "__pycache__"),
    )
    for name in ("src", "pyproject.toml", "README.md"):
        (root / name).symlink_to(PROJECT_ROOT / name)
    return copy


@pytest.fixture(scope="session")
def combined_variant(artifacts: Artifacts, build_dir: Path, deploy_copy: Path) -> Synthesized:
    """Synthesised as the README's operator does it: `settings.toml` beside `app.py`, then
    `cd deploy && python3 app.py`, with nothing set by the CDK CLI."""
    from longbow_deploy.settings import load_settings

    settings_file = deploy_copy / "settings.toml"
    settings_file.write_text(COMBINED_TOML, encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CDK_OUTDIR", "LONGBOW_DEPLOY_SETTINGS", "LONGBOW_DEPLOY_BUILD_DIR")
    }
    env["LONGBOW_DEPLOY_BUILD_DIR"] = str(build_dir)  # the session's build, already made
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "app.py"],
        cwd=deploy_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    SYNTH_SECONDS["combined (app.py)"] = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    path = deploy_copy / "cdk.out" / "Longbow-lb-both.template.json"
    assert path.is_file(), f"app.py wrote no {path}:\n{done.stderr}"
    data = json.loads(path.read_text(encoding="utf-8"))
    settings = load_settings(settings_file)
    return Synthesized("combined", settings, data, path, Template.from_json(data))


VARIANTS = ("ec2", "lambda", "combined")


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> Synthesized:
    """Each variant in turn."""
    return request.getfixturevalue(f"{request.param}_variant")


@pytest.fixture(params=("ec2", "combined"))
def ec2_variants(request: pytest.FixtureRequest) -> Synthesized:
    """The variants with EC2 workers."""
    return request.getfixturevalue(f"{request.param}_variant")


@pytest.fixture(params=("lambda", "combined"))
def lambda_variants(request: pytest.FixtureRequest) -> Synthesized:
    """The variants with the Lambda worker."""
    return request.getfixturevalue(f"{request.param}_variant")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SYNTH_SECONDS:
        times = ", ".join(f"{k} {v:.1f} s" for k, v in SYNTH_SECONDS.items())
        terminalreporter.write_line(f"deploy synthesis: {times}")
