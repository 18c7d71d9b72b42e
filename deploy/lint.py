"""Run cfn-lint on the templates `python3 app.py` wrote, with this directory's settings.

    python3 lint.py [ASSEMBLY_DIR]      # default: cdk.out/ beside this file

A bare `cfn-lint cdk.out/*.template.json` depends on the shell when the glob matches nothing
(passed on literally, dropped, or refused); this fails with a message saying what to do.
Exit status: cfn-lint's own, or 1 when there is nothing to lint or cfn-lint is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def templates(assembly: Path) -> list[Path]:
    """The stack templates of a cloud assembly directory (none if it does not exist)."""
    return sorted(assembly.glob("*.template.json"))


def cfn_lint() -> str | None:
    """The cfn-lint installed beside this Python (the deploy virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "cfn-lint"
    return str(beside) if beside.is_file() else shutil.which("cfn-lint")


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(HERE)) if path.is_relative_to(HERE) else str(path)


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python3 lint.py [ASSEMBLY_DIR]", file=sys.stderr)
        return 1
    assembly = Path(argv[0]) if argv else HERE / "cdk.out"
    found = templates(assembly)
    if not found:
        print(
            f"lint: no templates to lint in {assembly}: run `python3 app.py` first "
            "(it writes cdk.out/ beside itself)",
            file=sys.stderr,
        )
        return 1
    executable = cfn_lint()
    if executable is None:
        print("lint: cfn-lint is not installed (pip install -r requirements.txt)", file=sys.stderr)
        return 1
    # cfn-lint runs here so that .cfnlintrc.yaml applies, whatever the caller's directory.
    names = [_shown(path) for path in found]
    print(f"cfn-lint {' '.join(names)}", flush=True)
    return subprocess.run([executable, *names], cwd=HERE, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
