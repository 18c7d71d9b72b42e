"""Which credentials an S3 store signs with, and when it can start without botocore's session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3longbow.config import SideSettings
from s3longbow.stores.s3.session import _static_keys
from s3longbow.stores.s3.signing import StaticCredentials

KEYS = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG"}


@pytest.fixture()
def clean_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS configuration in the environment; HOME is an empty folder."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_keys_given_outright_are_used_as_they_are(clean_aws: Path) -> None:
    keys = _static_keys(SideSettings(**KEYS))
    assert isinstance(keys, StaticCredentials)
    assert keys.get_frozen_credentials() == ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None)


@pytest.mark.parametrize(
    "side",
    [
        SideSettings(),  # the default chain
        SideSettings(access_key_id="AKIDEXAMPLE"),  # half a pair: botocore says what is wrong
        SideSettings(profile="prod", **KEYS),
    ],
)
def test_anything_else_goes_through_botocore(clean_aws: Path, side: SideSettings) -> None:
    assert _static_keys(side) is None


@pytest.mark.parametrize("variable", ["AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"])
def test_a_configured_region_is_read_by_botocore(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "eu-west-3")
    assert _static_keys(SideSettings(**KEYS)) is None
    # A region given with the keys needs nothing from the configuration.
    assert _static_keys(SideSettings(region="us-west-2", **KEYS)) is not None


def test_a_config_file_is_read_by_botocore(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_aws / ".aws").mkdir()
    (clean_aws / ".aws" / "config").write_text("[default]\nregion = eu-west-3\n")
    assert _static_keys(SideSettings(**KEYS)) is None
    monkeypatch.setenv("AWS_CONFIG_FILE", str(clean_aws / "elsewhere"))
    assert _static_keys(SideSettings(**KEYS)) is not None  # named, and absent
    monkeypatch.setenv("AWS_CONFIG_FILE", str(clean_aws / ".aws" / "config"))
    assert _static_keys(SideSettings(**KEYS)) is None


def test_a_store_with_keys_starts_without_botocores_session(clean_aws: Path) -> None:
    # botocore's session and client cost ~0.6 s of CPU to import and build; a copy that
    # goes through the lean client alone never needs them.
    code = """
import json, sys
from s3longbow.config import SideSettings
from s3longbow.stores.s3 import S3Store
store = S3Store("bkt", SideSettings(endpoint_url="http://127.0.0.1:9", allow_http=True,
                                  access_key_id="AKIDEXAMPLE", secret_access_key="secret"))
before = "botocore.session" in sys.modules
store.client
print(json.dumps([before, "botocore.session" in sys.modules, store.data.region]))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(clean_aws)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == [False, True, "us-east-1"]
