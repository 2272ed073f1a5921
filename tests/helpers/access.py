"""Make file permissions bite for a child process, even when the tests run as root (as CI containers do).

Root reads a mode-000 file anyway: it holds CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. A child started with both
dropped from its bounding set execs with neither, so it meets permissions as any user does, while still owning
the files (uid 0) the test made. For a non-root run nothing needs dropping.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
from collections.abc import Callable

import pytest

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2


def _drop() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))


def permissions_bite() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes permissions apply to the child (None when they do already); skips the test when
    this machine allows neither."""
    preexec = _drop if os.geteuid() == 0 else None
    with tempfile.NamedTemporaryFile() as probe:
        os.chmod(probe.name, 0)
        try:
            read = subprocess.run(["cat", probe.name], preexec_fn=preexec, check=False, capture_output=True)
        except (subprocess.SubprocessError, OSError):
            pytest.skip("running as root without CAP_SETPCAP: cannot drop CAP_DAC_OVERRIDE to make a file unreadable")
    if read.returncode == 0:
        pytest.skip("a mode-000 file stays readable here, so permissions cannot be tested")
    return preexec
