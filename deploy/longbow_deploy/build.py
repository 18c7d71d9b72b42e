"""Build what the stack uploads, at synthesis and without Docker: the `longbow` wheel of this
repository (the EC2 workers install it) and a Lambda layer holding it with its dependencies.

Both are cached under a build directory by a hash of the project's sources, so synthesising
again (or several variants in one test run) builds once. The project is copied to a scratch
directory before `pip wheel`, so building never leaves files in the work tree.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The Lambda runtime the layer is built for; the EC2 workers use the same Python version.
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
_PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")
_SKIP = {"__pycache__", ".pytest_cache", ".ruff_cache"}


class BuildError(RuntimeError):
    """A package could not be built; the message holds pip's output."""


@dataclass(frozen=True)
class Artifacts:
    """What the stack uploads.

    Attributes:
        wheel: The `longbow` wheel.
        layer: A directory holding `python/` with the package and its dependencies for
            Lambda (None when no Lambda function is deployed).
    """

    wheel: Path
    layer: Path | None


def default_build_dir(project_root: Path) -> Path:
    """Where builds are cached: `LONGBOW_DEPLOY_BUILD_DIR`, else `deploy/.build`."""
    configured = os.environ.get("LONGBOW_DEPLOY_BUILD_DIR")
    return Path(configured) if configured else project_root / "deploy" / ".build"


def source_hash(project_root: Path) -> str:
    """A hash of everything that goes into the wheel."""
    digest = hashlib.sha256()
    paths = [project_root / name for name in _PROJECT_FILES if (project_root / name).exists()]
    paths += sorted(
        p
        for p in (project_root / "src").rglob("*")
        if p.is_file()
        and not _SKIP.intersection(p.parts)
        and not p.name.endswith(".pyc")
        and not any(part.endswith(".egg-info") for part in p.parts)
    )
    for path in paths:
        digest.update(str(path.relative_to(project_root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_artifacts(project_root: Path, build_dir: Path, *, layer: bool) -> Artifacts:
    """Build (or take from the cache) the wheel and, if asked, the Lambda layer.

    Raises:
        BuildError: pip failed.
    """
    key = source_hash(project_root)
    wheel = build_wheel(project_root, build_dir / f"wheel-{key}")
    layer_dir = build_layer(wheel, build_dir / f"layer-{key}") if layer else None
    # Builds of earlier sources are of no further use; the layer alone weighs ~50 MB.
    for old in (*build_dir.glob("wheel-*"), *build_dir.glob("layer-*")):
        if old.is_dir() and not old.name.endswith(key):
            shutil.rmtree(old, ignore_errors=True)
    return Artifacts(wheel=wheel, layer=layer_dir)


def build_wheel(project_root: Path, out: Path) -> Path:
    """The project's wheel in `out` (built unless already there)."""
    existing = sorted(out.glob("*.whl"))
    if existing:
        return existing[0]
    with tempfile.TemporaryDirectory(prefix="longbow-wheel-") as scratch:
        tree = Path(scratch) / "project"
        tree.mkdir()
        for name in _PROJECT_FILES:
            if (project_root / name).exists():
                shutil.copy2(project_root / name, tree / name)
        shutil.copytree(
            project_root / "src",
            tree / "src",
            ignore=shutil.ignore_patterns(*_SKIP, "*.pyc", "*.egg-info"),
        )
        staging = Path(scratch) / "dist"
        _pip("wheel", "--no-deps", "--wheel-dir", str(staging), str(tree))
        wheels = sorted(staging.glob("*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"expected one wheel, pip made {[w.name for w in wheels]}")
        _publish(staging, out)
    return sorted(out.glob("*.whl"))[0]


def build_layer(wheel: Path, out: Path) -> Path:
    """A Lambda layer directory (`python/...`) with the wheel and its dependencies."""
    if (out / "python").is_dir():
        return out
    with tempfile.TemporaryDirectory(prefix="longbow-layer-") as scratch:
        staging = Path(scratch) / "layer"
        # Binary wheels for Lambda's platform, whatever this machine is; nothing is compiled.
        _pip(
            "install",
            "--target",
            str(staging / "python"),
            "--platform",
            LAMBDA_PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            LAMBDA_PYTHON,
            "--only-binary=:all:",
            "--no-compile",
            str(wheel),
        )
        # Console scripts are of no use in a layer and name this machine's interpreter.
        shutil.rmtree(staging / "python" / "bin", ignore_errors=True)
        _publish(staging, out)
    return out


def function_code(build_dir: Path, files: dict[str, str | Path]) -> Path:
    """A directory holding `files` (name -> text, or a file to copy), named by their hash so
    equal content gives an equal asset.
    """
    digest = hashlib.sha256()
    contents: dict[str, bytes] = {}
    for name in sorted(files):
        value = files[name]
        data = value.read_bytes() if isinstance(value, Path) else value.encode()
        contents[name] = data
        digest.update(name.encode() + b"\0" + data + b"\0")
    out = build_dir / f"code-{digest.hexdigest()[:16]}"
    if out.is_dir():
        return out
    with tempfile.TemporaryDirectory(prefix="longbow-code-") as scratch:
        staging = Path(scratch) / "code"
        staging.mkdir()
        for name, data in contents.items():
            (staging / name).write_bytes(data)
        _publish(staging, out)
    return out


def _publish(staging: Path, out: Path) -> None:
    """Move a finished build into place, so a killed build never looks finished."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(staging, partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    log.info("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"pip {args[0]} failed:\n{done.stdout}\n{done.stderr}")


__all__ = [
    "Artifacts",
    "BuildError",
    "LAMBDA_PYTHON",
    "build_artifacts",
    "build_layer",
    "build_wheel",
    "default_build_dir",
    "function_code",
    "source_hash",
]
