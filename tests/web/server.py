"""A real `agentd web` process on a free localhost port, for tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    url: str
    login: str | None
    token: str | None
    proc: subprocess.Popen[str]


@contextmanager
def serve(root: Path, *extra: str, timeout: float = 30) -> Iterator[Server]:
    """Start `agentd web --port 0` in ``root``; yield once it printed its address; stop it after."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("AGENTD_ROOT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentd", "web", "--port", "0", *extra],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        first = proc.stdout.readline()  # the process prints its address at once, then flushes
        match = re.search(r"on (http://\S+)", first)
        if match is None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"agentd web did not start: {first!r} {proc.communicate()[1]!r}")
        login = token = None
        if "--no-token" not in extra:
            second = proc.stdout.readline()
            login = second.split("login: ", 1)[1].strip()
            token = login.rsplit("token=", 1)[1]
        yield Server(match.group(1), login, token, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
