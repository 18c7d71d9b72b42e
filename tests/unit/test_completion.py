"""Shell completion, as the README tells users to set it up: the `longbow` command prints its
completion script for bash, zsh and fish, and the script's answers complete commands and
options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _longbow() -> str:
    """The console script installed beside this interpreter (as `pip install` puts it)."""
    beside = Path(sys.executable).parent / "longbow"
    found = str(beside) if beside.exists() else shutil.which("longbow")
    assert found, "the longbow command is not installed"
    return found


def _run(**env: str) -> str:
    result = subprocess.run(
        [_longbow()],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize(
    ("shell", "registers"),
    [
        ("bash", "complete -o nosort -F _longbow_completion longbow"),
        ("zsh", "compdef _longbow_completion longbow"),
        ("fish", 'complete --no-files --command longbow --arguments "(_longbow_completion)"'),
    ],
)
def test_the_completion_script_of_each_shell(shell: str, registers: str) -> None:
    script = _run(_LONGBOW_COMPLETE=f"{shell}_source")
    assert registers in script
    # The script asks the command itself for its answers, in that shell's dialect.
    assert f"_LONGBOW_COMPLETE={shell}_complete" in script


def test_the_answers_complete_commands_and_options() -> None:
    commands = _run(_LONGBOW_COMPLETE="bash_complete", COMP_WORDS="longbow ver", COMP_CWORD="1")
    assert commands.split() == ["plain,verify"]
    options = _run(
        _LONGBOW_COMPLETE="bash_complete",
        COMP_WORDS="longbow sync --dst-use-d",
        COMP_CWORD="2",
    )
    assert options.split() == ["plain,--dst-use-dualstack-endpoint"]
