"""The click-free path of the hot commands (agentd.cli.fast) answers exactly as the click commands do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import small_queue

CONFIG = '[roles.builder]\ncommand = ["true"]\n'

# Each argv runs once through `python -m agentd` (the fast path where it applies) and once through the click group
# alone, each in a fresh copy of the same project.
CASES: tuple[tuple[str, ...], ...] = (
    ("queue", "add", "N1", "--title", "New"),
    (
        "queue",
        "add",
        "N1",
        "--title=New",
        "--type",
        "Build",
        "--priority",
        "3",
        "--depends-on",
        "B1",
        "--depends-on",
        "S1",
        "--prompt",
        "do it",
    ),
    ("queue", "add", "--title", "Options first", "N1"),
    ("queue", "add", "N1", "--title", "one", "--title", "last wins"),
    ("queue", "add", "N1", "--title", "Sub", "--parent", "B1"),
    ("queue", "add", "N1", "--title", "Under nobody", "--parent", "nope"),
    ("queue", "add", "B1", "--title", "Duplicate"),
    ("queue", "add", "../evil", "--title", "Unsafe id"),
    ("queue", "add", "N1", "--title", "Unknown dep", "--depends-on", "nope"),
    ("queue", "add", "N1", "--title", "Odd status", "--status", "redy"),
    ("queue", "add", "N1", "--title", "Forced", "--status", "parked", "--force"),
    ("queue", "add", "N1", "--title", "\x1b[31mred\x1b[0m", "--status", "\x1b[1mbold", "--force"),
    ("queue", "add", "N1", "--title", "Negative", "--priority", "-1"),
    ("queue", "add", "N1", "--title", "Underscored", "--priority", "1_0"),
    ("queue", "add", "N1", "--title", "Bad priority", "--priority", "x"),
    ("queue", "add", "N1"),
    ("queue", "add", "N1", "--title"),
    ("queue", "add", "N1", "N2", "--title", "Two ids"),
    ("queue", "add", "N1", "--title", "t", "--force=yes"),
    ("queue", "add", "N1", "--title", "t", "--", "x"),
    ("queue", "add", "--help"),
    ("queue", "set-status", "B1", "blocked", "--force"),
    ("queue", "set-status", "B1", "awaiting_test", "--note", "why not"),
    ("queue", "set-status", "B1", "awaiting_tst"),
    ("queue", "set-status", "nope", "done"),
    ("queue", "set-status", "B1", "done", "--token", "5"),
    ("queue", "set-status", "B1", "done", "--token", "five"),
    ("queue", "set-status", "B1"),
    ("queue", "set-status", "B1", "done", "--bogus"),
    ("queue", "list"),
    ("queue", "list", "--json"),
    ("queue", "list", "--status", "ready", "--status", "needs_plan"),
    ("queue", "list", "--role", "builder", "--json"),
    ("queue", "list", "--role", "nosuch"),
    ("queue", "list", "extra"),
    ("queue", "list", "-h"),
    ("--queue", "SPRINT_QUEUE.json", "queue", "list"),
    ("--queue", "missing.json", "queue", "list"),
    ("--queue", ".", "queue", "list"),
    ("--root", "SPRINT_QUEUE.json", "queue", "list"),
    ("--root", ".", "queue", "set-status", "B1", "blocked"),
    ("--config", "agentd.toml", "queue", "list", "--json"),
    ("--store", "mysql://x", "queue", "list"),
    ("-v", "queue", "list"),
    ("queue", "--root", ".", "list"),
    ("status",),
    ("status", "builder"),
    ("status", "--json"),
    ("status", "builder", "--json"),
    ("status", "nosuch"),
    ("status", "--every", "0.1"),
    ("status", "--json=1"),
    ("status", "-h"),
    ("--queue", "missing.json", "status"),
)


def _project(root: Path, queue: dict[str, object] | str) -> Path:
    root.mkdir(parents=True)
    (root / "agentd.toml").write_text(CONFIG, encoding="utf-8")
    text = queue if isinstance(queue, str) else json.dumps(queue, indent=2) + "\n"
    (root / "SPRINT_QUEUE.json").write_text(text, encoding="utf-8")
    return root


def _run(argv: tuple[str, ...], cwd: Path, *, click_only: bool) -> tuple[int, str, str, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    env["NO_COLOR"] = "1"
    if click_only:
        command = [sys.executable, "-c", "from agentd.cli.root import main; main()", *argv]
    else:
        command = [sys.executable, "-m", "agentd", *argv]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    queue = cwd / "SPRINT_QUEUE.json"
    return done.returncode, done.stdout, done.stderr, queue.read_bytes() if queue.exists() else b""


def _both(tmp_path: Path, argv: tuple[str, ...], queue: dict[str, object] | str) -> None:
    """Both paths in turn, each in a fresh copy of the project at the same path (paths in messages alike)."""
    root = tmp_path / "proj"
    fast = _run(argv, _project(root, queue), click_only=False)
    shutil.rmtree(root)
    slow = _run(argv, _project(root, queue), click_only=True)
    if "status" in argv and "--json" in argv and fast[0] == slow[0] and fast[1] and slow[1]:
        fast, slow = _untimed(fast), _untimed(slow)
    assert fast == slow, argv


def _untimed(result: tuple[int, str, str, bytes]) -> tuple[int, str, str, bytes]:
    data = json.loads(result[1])
    data.pop("generated_at")
    return result[0], json.dumps(data), result[2], result[3]


@pytest.mark.slow
@pytest.mark.parametrize("argv", CASES, ids=lambda argv: " ".join(argv).replace("\x1b", "ESC"))
def test_the_fast_path_answers_as_click_does(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """The same argv through `python -m agentd` and through the click group alone gives the same exit code, stdout,
    stderr and queue file bytes."""
    _both(tmp_path, argv, small_queue())


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ("queue", "list"),
        ("queue", "list", "--json"),
        ("queue", "add", "N1", "--title", "t"),
        ("queue", "set-status", "B1", "blocked"),
        ("status",),
        ("status", "--json"),
    ],
    ids=" ".join,
)
def test_the_fast_path_answers_as_click_on_a_bad_queue(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """A quarantined task, then a queue that does not parse: the same warning, error line and exit code both ways."""
    doc = small_queue()
    doc["tasks"].append({"id": "Q1", "title": 5, "status": "ready"})  # type: ignore[attr-defined]
    _both(tmp_path / "quarantined", argv, doc)
    _both(tmp_path / "broken", argv, '{"tasks": [\n')


@pytest.mark.slow
def test_the_fast_path_answers_as_click_outside_a_project(tmp_path: Path) -> None:
    """In a folder with neither agentd.toml nor a queue, both say so the same way (exit 6), creating nothing."""
    for path in ("fast", "click"):
        (tmp_path / path).mkdir()
    argv = ("queue", "set-status", "B1", "done")
    fast = _run(argv, tmp_path / "fast", click_only=False)
    slow = _run(argv, tmp_path / "click", click_only=True)
    assert fast == slow
    assert fast[0] == 6
    assert list((tmp_path / "fast").iterdir()) == []


# -- a role's daemon: `agentd --role ROLE ...` and `agentd run --role ROLE ...` in their plain forms skip click -------

DAEMON_CASES: tuple[tuple[str, ...], ...] = (
    ("--role", "builder", "--once"),
    ("--role=builder", "--drain", "--concurrency", "2", "--instance", "b2"),
    ("-v", "--role", "builder", "--drain", "--interval", "0.5"),
    ("--verbose", "-v", "--role", "builder", "--once"),
    ("-vv", "--role", "builder", "--once"),
    ("--root", ".", "run", "--role", "builder", "--once"),
    ("-v", "run", "--role", "builder", "--drain", "--log-format", "json"),
    ("run", "--role", "builder", "--once", "--log-file", "daemon.log"),
    ("--role", "nosuch", "--once"),
    ("--role", "", "--once"),
    ("--role", "builder", "--once", "--drain"),
    ("--drain",),
    ("--role", "builder", "--concurrency", "0", "--once"),
    ("--role", "builder", "--concurrency", "x", "--once"),
    ("--role", "builder", "--interval", "0", "--once"),
    ("--role", "builder", "--interval", "-1", "--once"),
    ("--role", "builder", "--interval", "nope", "--once"),
    ("--role", "builder", "--once", "extra"),
    ("--role", "builder", "--once", "--help"),
    ("--role", "builder", "run", "--once"),
    ("--role", "builder", "--background", "--once"),
    ("--role", "builder", "--once=1"),
    ("run", "--once"),
    ("run", "--role", "builder", "--once", "--log-format", "xml"),
    ("run", "--role", "builder", "--once", "--log-file", "."),
    ("run", "--role", "builder", "--once", "-v"),
    ("--queue", "missing.json", "--role", "builder", "--once"),
    ("--root", "SPRINT_QUEUE.json", "--role", "builder", "--once"),
    ("--config", "agentd.toml", "--role", "builder", "--once"),
    ("--store", "mysql://x", "--role", "builder", "--once"),
)
# What differs between two runs of the same daemon: times, process ids, durations and the log's timestamps.
VARYING = (
    (r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:[+-]\d\d:?\d\d|Z)?", "TIME"),
    (r"\b(pid|PID|zygote)( |\": ?)\d+", r"\1\2PID"),
    (r"\[\d+\]", "[PID]"),
    (r"\d+\.\d+ s\b", "N s"),
    (r'"(duration_s|elapsed_s|cpu_s)": [\d.]+', r'"\1": N'),
)


# watchdog's inotify thread, stopped while an event is on its way, may log this at a daemon's exit (either way).
STOP_RACE = "InotifyEmitter.queue_events() called when the thread is inactive"


def _steady(text: str) -> str:
    import re

    for pattern, replacement in VARYING:
        text = re.sub(pattern, replacement, text)
    return "".join(line for line in text.splitlines(keepends=True) if STOP_RACE not in line)


def _tasks(queue: bytes) -> object:
    """The tasks' ids, statuses, attempts and outcomes (their times and the runs' durations differ between runs)."""
    try:
        doc = json.loads(queue)
    except ValueError:
        return queue
    keys = ("id", "status", "attempts", "lease", "agent", "status_note")
    return [({k: t.get(k) for k in keys}, (t.get("last_run") or {}).get("outcome")) for t in doc["tasks"]]


@pytest.mark.slow
@pytest.mark.parametrize("argv", DAEMON_CASES, ids=" ".join)
def test_a_daemon_started_by_the_fast_path_does_what_click_starts(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """A daemon's argv through `python -m agentd` and through the click group alone: the same exit code, stdout,
    stderr (times and process ids aside), tasks run and log file."""
    root = tmp_path / "proj"
    results = []
    for click_only in (False, True):
        if root.exists():
            shutil.rmtree(root)
        code, out, err, queue = _run(argv, _project(root, small_queue()), click_only=click_only)
        log = root / "daemon.log"
        results.append((code, out, _steady(err), _tasks(queue), _steady(log.read_text()) if log.exists() else None))
    assert results[0] == results[1], argv


# A process that leaves a thread (not a daemon thread) to finish after the daemon's run and an atexit handler that
# writes to stdout (left in its buffer), then runs `agentd` as `python -m agentd` does (agentd.__main__.main).
LEFT_TO_EXIT = """
import atexit, sys, threading

def after_the_run():  # the main thread counts as stopped once the interpreter's exit has begun
    threading.main_thread().join()
    with open("thread-done", "w") as out:
        out.write("done")

def at_exit():
    import os
    with open("atexit-done", "w") as out:
        out.write("after the thread" if os.path.exists("thread-done") else "before the thread")
    sys.stdout.write("left in the buffer")

threading.Thread(target=after_the_run).start()
atexit.register(at_exit)
sys.argv[0] = "agentd"
from agentd.__main__ import main
main()
"""


def _python(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python ARGV`` in *root*, without agentd's variables or unbuffered output (what a daemon's exit flushes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_") and k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("queue", ["empty", "one task"])
def test_a_daemons_process_ends_with_what_an_exit_does(tmp_path: Path, queue: str) -> None:
    """A daemon's process ends without the interpreter's teardown (agentd.cli.fast._leave) once its run is over, but
    with everything of an exit that is seen, in the interpreter's order: the threads that are not daemon threads
    waited for, then the atexit handlers run, stdout flushed, and the daemon's exit code."""
    tasks = [] if queue == "empty" else [{"id": "B1", "title": "Build", "status": "ready"}]
    root = _project(tmp_path / "proj", {"tasks": tasks})
    done = _python(root, "-c", LEFT_TO_EXIT, "--role", "builder", "--drain")
    assert done.returncode == 0, done.stderr
    assert "builder daemon stopped (exit 0)" in done.stderr
    assert done.stdout == "left in the buffer"
    assert (root / "thread-done").read_text() == "done"
    assert (root / "atexit-done").read_text() == "after the thread"
    assert not (root / ".agentd" / "run" / "builder.pid").exists()


def test_a_drain_under_a_profiler_ends_as_the_interpreter_ends_it(tmp_path: Path) -> None:
    """Under `python -m cProfile -o FILE -m agentd` (scripts/bench_peers.py's profile) the daemon's process ends with
    the interpreter's exit, not before the profiler writes FILE."""
    root = _project(tmp_path / "proj", {"tasks": [{"id": "B1", "title": "Build", "status": "ready"}]})
    out = tmp_path / "daemon.prof"
    done = _python(root, "-m", "cProfile", "-o", str(out), "-m", "agentd", "--role", "builder", "--drain")
    assert done.returncode == 0, done.stderr
    import pstats

    assert any(name == "_run_daemon" for _file, _line, name in pstats.Stats(str(out)).stats)  # type: ignore[attr-defined]


def test_a_failed_drain_ends_its_process_with_its_exit_code(tmp_path: Path) -> None:
    """The exit code of a drain whose task failed (1) is the process's, as it was with the interpreter's exit."""
    failing = CONFIG.replace('["true"]', '["false"]') + "max_attempts = 1\n"
    root = _project(tmp_path / "proj", {"tasks": [{"id": "B1", "title": "Build", "status": "ready"}]})
    (root / "agentd.toml").write_text(failing, encoding="utf-8")
    code, _out, err, _queue = _run(("--role", "builder", "--drain"), root, click_only=False)
    assert code == 1, err
    assert "builder daemon stopped (exit 1)" in err


# -- the config cache (agentd.configcache): the hot commands skip tomllib, and never trust a stale or foreign cache --

PARKING = CONFIG + '[roles.parker]\nclaims = "parkd"\nworking = "parkw"\non_success = "done"\n'


def _fast(root: Path, *argv: str) -> tuple[int, str, str]:
    code, out, err, _ = _run(argv, root, click_only=False)
    return code, out, err


@pytest.mark.slow
def test_a_same_size_edit_at_the_same_mtime_is_not_missed(tmp_path: Path) -> None:
    """agentd.toml rewritten in place to the same size with its mtime put back: the next hot command reads the new
    text (a status only the new text knows is accepted, the one it dropped refused)."""
    root = _project(tmp_path / "proj", small_queue())
    config = root / "agentd.toml"
    config.write_text(PARKING, encoding="utf-8")
    assert _fast(root, "queue", "list")[0] == 0  # writes the cache
    cache = root / ".agentd" / "cache" / "agentd.toml.json"
    assert cache.is_file()
    before = os.stat(config)
    with open(config, "r+b") as handle:  # in place: the same inode
        handle.write(PARKING.replace("parkd", "parkx").encode())
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(config)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    code, out, err = _fast(root, "queue", "set-status", "B1", "parkx")
    assert (code, out) == (0, "B1: ready -> parkx\n"), err
    code, _, err = _fast(root, "queue", "set-status", "B1", "parkd")
    assert code == 2 and "status 'parkd': no role claims" in err, err


@pytest.mark.slow
def test_an_edited_config_is_read_again(tmp_path: Path) -> None:
    """agentd.toml edited after the cache was written (a role added): the next hot command knows the new role."""
    root = _project(tmp_path / "proj", small_queue())
    assert _fast(root, "queue", "list")[0] == 0
    assert _fast(root, "queue", "set-status", "B1", "parkd")[0] == 2
    (root / "agentd.toml").write_text(PARKING, encoding="utf-8")
    assert _fast(root, "queue", "set-status", "B1", "parkd")[:2] == (0, "B1: ready -> parkd\n")


def _entry(raw: str, data: dict[str, object], tag: str | None = None) -> bytes:
    from agentd import configcache

    return json.dumps([configcache.TAG if tag is None else tag, raw, data]).encode()


PLANTED = {
    "roles": {"builder": {"command": ["true"]}, "parker": {"claims": "parkx", "working": "w", "on_success": "d"}}
}


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x00\xff garbage \x80",
        b'["agentd',  # cut short by a crash
        b"{}",
        b"null",
        _entry(PARKING, PLANTED, tag="agentd 0.0.1 python 30b07f0"),  # another agentd or Python
        _entry(PARKING.replace("parkd", "parkz"), PLANTED),  # other bytes than the file's
        _entry(PARKING + " ", PLANTED),
        json.dumps(["x", PARKING, PLANTED]).encode(),
        json.dumps([None, PARKING, []]).encode(),
    ],
)
def test_a_cache_that_does_not_match_is_never_trusted(tmp_path: Path, blob: bytes) -> None:
    """A cache file that is empty, garbage, cut short, of another version or of other bytes than agentd.toml holds
    now is ignored: the file itself is parsed."""
    from agentd import config as config_mod

    root = _project(tmp_path / "proj", small_queue())
    (root / "agentd.toml").write_text(PARKING, encoding="utf-8")
    cache = root / ".agentd" / "cache" / "agentd.toml.json"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(blob)
    loaded = config_mod.load(root=root, environ={}, cache=True)
    assert loaded.workflow.roles["parker"].claims == ("parkd",)
    assert json.loads(cache.read_bytes())[2]["roles"]["parker"]["claims"] == "parkd"  # put right


def test_a_matching_cache_is_used_and_tomllib_is_not(tmp_path: Path) -> None:
    """A cache of this version holding agentd.toml's exact bytes is used as the parsed file (the control for the test
    above: a planted cache with other data shows through), by the hot commands only."""
    from agentd import config as config_mod

    root = _project(tmp_path / "proj", small_queue())
    (root / "agentd.toml").write_text(PARKING, encoding="utf-8")
    cache = root / ".agentd" / "cache" / "agentd.toml.json"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(_entry(PARKING, PLANTED))
    assert config_mod.load(root=root, environ={}, cache=True).workflow.roles["parker"].claims == ("parkx",)
    assert config_mod.load(root=root, environ={}).workflow.roles["parker"].claims == ("parkd",)  # (no cache asked)


@pytest.mark.slow
def test_no_cache_where_the_state_folder_is_elsewhere(tmp_path: Path) -> None:
    """A project whose agentd.toml moves its state folder gets no .agentd folder from a hot command."""
    root = _project(tmp_path / "proj", small_queue())
    (root / "agentd.toml").write_text('state_dir = "var"\n' + CONFIG, encoding="utf-8")
    assert _fast(root, "queue", "list")[0] == 0
    assert sorted(p.name for p in root.iterdir()) == ["SPRINT_QUEUE.json", "agentd.toml"]
