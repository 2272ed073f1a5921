"""The supervisor's view of a task's process tree (``_shim._members``): who belongs, and in what order signals go."""

from __future__ import annotations

from agentd.run._shim import _members

R, S, Z = b"R", b"S", b"Z"


def stat(state: bytes, ppid: int, pgrp: int, sid: int, start: int = 1) -> tuple[bytes, int, int, int, int]:
    return state, ppid, pgrp, sid, start


def test_parents_come_before_their_children_whatever_their_pids() -> None:
    """A shell is signalled before the command it waits for: signalled after it, the shell could run its next line
    (the CI failure this fixes: a killed run's `sh -c '...; sleep 120; echo done'` still wrote `done`). Pids wrap, so a
    child's pid may be lower than its parent's."""
    shim = 100
    procs = {
        shim: stat(S, 1, shim, shim),
        90: stat(S, shim, shim, shim),  # sh -c ...
        7: stat(S, 90, shim, shim),  # its foreground sleep
        3: stat(S, 7, shim, shim),  # and that one's child
        95: stat(S, 90, shim, shim),  # a second child of the shell
        2: stat(S, 1, 2, 2),  # not ours
    }
    order = list(_members(procs, shim))
    assert order == [90, 7, 95, 3]
    for pid in order:
        parent = procs[pid][1]
        assert parent == shim or order.index(parent) < order.index(pid)


def test_escaped_processes_and_group_members_belong_and_zombies_and_strangers_do_not() -> None:
    shim = 500
    procs = {
        shim: stat(S, 1, shim, shim),
        501: stat(S, shim, shim, shim),
        40: stat(S, shim, 40, 40),  # setsid'ed, re-parented to the shim (a subreaper)
        41: stat(S, 40, 40, 40),
        30: stat(S, 1, 40, 40),  # in a session a member leads, though its parent is init
        502: stat(Z, shim, shim, shim),  # a zombie: nothing to signal
        600: stat(R, 1, 600, 600),  # unrelated
    }
    members = _members(procs, shim)
    assert list(members) == [40, 501, 41, 30]
    assert members[41] == (1, 40)  # (start time, process group)
    assert 600 not in members and 502 not in members and shim not in members
