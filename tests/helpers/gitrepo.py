"""Real git repositories for the workspace tests: one identity for commits, and git run as a person would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; its output (CalledProcessError when it fails)."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env={**os.environ, **GIT_ENV}
    )
    return done.stdout.strip()


def new_repo(parent: Path, app: str, ignore: str) -> Path:
    """``parent/project``: a git repository on main with one commit of ``app.txt`` and ``.gitignore``."""
    root = parent / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.txt").write_text(app)
    (root / ".gitignore").write_text(ignore)
    git(root, "add", ".")
    git(root, "commit", "-qm", "start")
    return root


def hold_next_update(root: Path, ref: str, flag: Path, held: Path) -> None:
    """A ``reference-transaction`` hook in ``root``: while ``flag`` exists, the next transaction that updates ``ref``
    is held once git has taken its locks (the flag removed, the hook's pid written to ``held``, then a long sleep):
    a git to kill at that instant."""
    hook = root / ".git/hooks/reference-transaction"
    hook.write_text(
        "#!/bin/sh\n"
        "updates=$(cat)\n"
        f'if [ "$1" = prepared ] && [ -e "{flag}" ]; then\n'
        f'  case "$updates" in *" {ref}"*) rm -f "{flag}"; echo $$ > "{held}.tmp"; mv "{held}.tmp" "{held}"; '
        "exec sleep 600;; esac\n"
        "fi\n"
    )
    hook.chmod(0o755)
    flag.write_text("")
