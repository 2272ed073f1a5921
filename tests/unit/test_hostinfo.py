"""What agentd reads of processes from /proc: a process's start time, to tell it from a reused pid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.hostinfo import process_start

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


def test_process_start_is_field_22_of_stat_even_with_odd_command_names() -> None:
    """The start time is the 22nd field of /proc/PID/stat, found after the last ')' (a name may hold ') ' itself);
    a pid with no process gives None."""
    child = subprocess.Popen(
        [sys.executable, "-c", "open('/proc/self/comm', 'w').write('x) (y) 1 2'); print(); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()  # (renamed itself)
        data = Path(f"/proc/{child.pid}/stat").read_bytes()
        assert b"x) (y) 1 2)" in data
        assert process_start(child.pid) == int(data[data.rindex(b")") + 2 :].split()[19])
        assert process_start(os.getpid()) is not None
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(60)
    assert process_start(child.pid) is None
