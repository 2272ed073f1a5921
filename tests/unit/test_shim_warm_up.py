"""The zygote's warm-up (``_shim._warm``): the supervisor's per-task code run once before the zygote freezes its heap
and forks, so that what CPython sets up at a first use is shared by the spares instead of done (and its pages copied)
in each. Run in a fresh ``python -I -S`` with the shim's code loaded, as the zygote is."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from agentd.run.runner import SHIM_PATH

PROBE = textwrap.dedent(
    """
    import dis, json, os, signal, sys
    shim = {"__name__": "agentd-shim-probe"}
    exec(compile(open(sys.argv[1], "rb").read(), sys.argv[1], "exec"), shim)

    def specialised(fn):
        plain = [i.opname for i in dis.get_instructions(fn)]
        return sum(a != b for a, b in zip(plain, [i.opname for i in dis.get_instructions(fn, adaptive=True)]))

    hot = [shim["Shim"].start, shim["Shim"].spawn, shim["Shim"].log, shim["Shim"].__init__, shim["_read_spec"]]
    state = lambda: (
        sorted(os.listdir("/proc/self/fd")),
        [signal.getsignal(s) for s in range(1, signal.NSIG) if s not in (signal.SIGKILL, signal.SIGSTOP)],
        os.getcwd(),
    )
    before, cold = state(), [specialised(fn) for fn in hot]
    if len(sys.argv) > 2:  # one descriptor left (the listing's): the warm-up cannot make its pipe
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(before[0]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    shim["_warm"]()
    try:
        os.waitpid(-1, os.WNOHANG)
        children = True
    except ChildProcessError:
        children = False
    print(json.dumps({"cold": cold, "warm": [specialised(fn) for fn in hot], "same": state() == before,
                      "children": children}))
    """
)


def probe(*extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(SHIM_PATH), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_warm_up_specialises_the_per_task_code_and_leaves_nothing_behind() -> None:
    """After the warm-up, each function on a task's way runs specialised bytecode (set up in the zygote, shared by
    every spare); no process was started (no child, not even a zombie), and the descriptors, signal handlers and
    working folder are as they were."""
    result = probe()
    assert result["cold"] == [0, 0, 0, 0, 0]
    warm = result["warm"]
    assert isinstance(warm, list)
    assert all(count > 0 for count in warm), warm
    assert result["same"] is True
    assert result["children"] is False


def test_a_warm_up_that_fails_only_stops_short() -> None:
    """Out of descriptors, the warm-up cannot make its pipe: it stops without an error (the zygote goes on to fork
    spares, which then do that work themselves) and leaves nothing open."""
    result = probe("no-descriptors")
    assert result["warm"] == result["cold"]  # (it stopped at its pipe: nothing ran)
    assert result["same"] is True
    assert result["children"] is False
