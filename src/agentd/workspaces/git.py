"""The git command, run as a child process with an argv (never a shell), its output in plain C-locale English."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from agentd.errors import AgentdError, ExitCode

TIMEOUT = 600.0  # s: git worktree add of a big repository can take a while; a hung git must not hang a daemon


class GitError(AgentdError, RuntimeError):
    """A git command failed: ``git ARGS (in FOLDER): its last line of stderr``."""

    exit_code = ExitCode.FAILURE

    def __init__(self, args: tuple[str, ...], cwd: Path, returncode: int | None, stderr: str) -> None:
        self.args_ = args
        self.cwd = cwd
        self.returncode = returncode
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        self.stderr = stderr
        reason = lines[-1] if lines else (f"exit code {returncode}" if returncode is not None else "timed out")
        super().__init__(f"git {' '.join(args)} (in {cwd}): {reason}")


class Git:
    """git in one folder."""

    def __init__(self, cwd: Path, environ: Mapping[str, str] | None = None) -> None:
        self.cwd = Path(cwd)
        base = dict(os.environ if environ is None else environ)
        for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):  # set by a hook that called us: not ours
            base.pop(name, None)
        base.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", GIT_EDITOR="true", GIT_OPTIONAL_LOCKS="0")
        self.env = base
        self.killed: list[tuple[str, ...]] = []  # the runs killed on their timeout (their lock files stay behind)

    def at(self, cwd: Path) -> Git:
        """The same git in another folder (sharing its record of killed runs)."""
        other = Git(cwd, self.env)
        other.killed = self.killed
        return other

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``git ARGS``; GitError when it fails and ``check``."""
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            self.killed.append(args)
            raise GitError(args, self.cwd, None, str(exc.stderr or "")) from None
        if check and done.returncode != 0:
            raise GitError(args, self.cwd, done.returncode, done.stderr)
        return done

    def out(self, *args: str) -> str:
        """``git ARGS``'s output, stripped."""
        return self.run(*args).stdout.strip()

    def ok(self, *args: str) -> bool:
        """Whether ``git ARGS`` succeeds."""
        return self.run(*args, check=False).returncode == 0

    def rev(self, name: str) -> str | None:
        """The commit ``name`` points to, or None."""
        done = self.run("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
        return done.stdout.strip() or None if done.returncode == 0 else None
