"""Synthesise the Longbow stack from a settings file.

`cdk deploy` (cdk.json runs this file) or, offline, `python3 app.py`. The settings file is
`LONGBOW_DEPLOY_SETTINGS`, else `settings.toml` beside this file; start from
`settings.example.toml`. The cloud assembly goes to `CDK_OUTDIR` (set by the CDK CLI), else to
`cdk.out/` beside this file, where `python3 lint.py` reads it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from longbow_deploy.build import BuildError, build_artifacts, default_build_dir
from longbow_deploy.settings import SettingsError, load_settings
from longbow_deploy.stack import create_app

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent


def settings_path() -> Path:
    """The settings file to deploy."""
    configured = os.environ.get("LONGBOW_DEPLOY_SETTINGS")
    return Path(configured) if configured else HERE / "settings.toml"


def assembly_dir() -> Path:
    """Where the cloud assembly is written: the CDK CLI's choice, else `cdk.out/` here.

    Without an outdir the CDK writes to a temporary directory, so running this file by hand
    would leave nothing to lint or inspect.
    """
    configured = os.environ.get("CDK_OUTDIR")
    return Path(configured) if configured else HERE / "cdk.out"


def main() -> int:
    try:
        settings = load_settings(settings_path())
        build_dir = default_build_dir(PROJECT_ROOT)
        artifacts = build_artifacts(PROJECT_ROOT, build_dir, layer=True)
    except (SettingsError, BuildError) as exc:
        print(f"longbow deploy: {exc}", file=sys.stderr)
        return 2
    outdir = assembly_dir()
    app, stack = create_app(settings, artifacts=artifacts, build_dir=build_dir, outdir=str(outdir))
    app.synth()
    print(f"longbow deploy: wrote {outdir / stack.template_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
