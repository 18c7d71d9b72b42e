"""Synthesise the Longbow stack from a settings file.

`cdk deploy` (cdk.json runs this file) or, offline, `python app.py` (writes `cdk.out/`).
The settings file is `LONGBOW_DEPLOY_SETTINGS`, else `settings.toml` beside this file; start
from `settings.example.toml`.
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


def main() -> int:
    try:
        settings = load_settings(settings_path())
        build_dir = default_build_dir(PROJECT_ROOT)
        artifacts = build_artifacts(PROJECT_ROOT, build_dir, layer=True)
    except (SettingsError, BuildError) as exc:
        print(f"longbow deploy: {exc}", file=sys.stderr)
        return 2
    app, _ = create_app(settings, artifacts=artifacts, build_dir=build_dir)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
