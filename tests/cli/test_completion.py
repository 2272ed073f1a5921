"""Shell completion scripts, and that bash really completes agentd's commands with them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_agentd


@pytest.mark.parametrize(
    ("shell", "marker"), [("bash", "complete -o"), ("zsh", "#compdef agentd"), ("fish", "complete")]
)
def test_completion_scripts(shell: str, marker: str, tmp_path: Path) -> None:
    """Each shell gets its script; an unknown shell is a usage error."""
    result = run_agentd("completion", shell, cwd=tmp_path)
    assert result.returncode == 0 and marker in result.stdout
    assert run_agentd("completion", "powershell", cwd=tmp_path).returncode == 2


def test_completion_protocol_offers_subcommands(tmp_path: Path) -> None:
    """What the bash script asks agentd for `agentd queue s<TAB>` is the CLI's own subcommands."""
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "COMP_WORDS": "agentd queue s",
        "COMP_CWORD": "2",
        "_AGENTD_COMPLETE": "bash_complete",
    }
    out = subprocess.run([str(bindir / "agentd")], env=env, capture_output=True, text=True, cwd=tmp_path).stdout
    offered = {line.split(",", 1)[1] for line in out.splitlines() if "," in line}
    assert {"set-status", "show"} <= offered
