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


def test_own_start_is_this_process_start_and_a_forked_childs_its_own() -> None:
    """``own_start`` (read once, then kept) is ``process_start`` of this process; a child forked after it was read
    gets its own start time, not its parent's (a supervisor forked by the zygote, a daemon's forked helper)."""
    from agentd.hostinfo import own_start

    assert own_start() == process_start(os.getpid())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own start time, and what /proc says of it
        try:
            os.write(write, f"{own_start()} {process_start(os.getpid())}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 100).decode().split()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer[0] == answer[1] and answer[0] != "None", answer
    assert own_start() == process_start(os.getpid())
