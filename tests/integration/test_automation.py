"""`agentd automation` as real processes: takeover, file rules, event rules, emit, command and webhook hooks."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agentd.automation.hooks import verify
from agentd.store.file.pidfile import probe
from tests.conftest import run_agentd
from tests.helpers.daemons import assert_survives_sighup_storm, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.slow
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"], "max_attempts": 1}


def project(root: Path, automation: str, builder: dict[str, Any] | None = None) -> Path:
    """A one-role project whose agentd.toml ends with the automation tables given."""
    write_config(root, {"builder": builder or BUILDER})
    with open(root / "agentd.toml", "a") as handle:
        handle.write(automation)
    write_queue(root, [], {"builder": 1})
    return root


def journal(root: Path) -> list[dict[str, Any]]:
    path = root / ".agentd" / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            out.append(event)
    return out


def named(root: Path, name: str) -> list[dict[str, Any]]:
    return [event for event in journal(root) if event["event"] == name]


class Automation:
    """`agentd automation` processes of one project, stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full = {**os.environ, **(env or {})}
        full.pop("AGENTD_ROOT", None)
        log = open(self.root / f"automation-{len(self.procs)}.out", "wb")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentd", "-v", "automation"], cwd=self.root, env=full, stdout=log, stderr=log
        )
        self.procs.append(proc)
        return proc

    def active_pid(self) -> int | None:
        seen = probe(self.root / ".agentd" / "run" / "automation" / "active.pid")
        return seen.info.pid if seen.running and seen.info else None

    def start_active(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = self.start(env)
        wait_for(lambda: any(e["pid"] == proc.pid for e in named(self.root, "automation-active")), 60, "active")
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def automation(tmp_path: Path) -> Iterator[Automation]:
    """Automation processes for a project in tmp_path, stopped afterwards."""
    runner = Automation(tmp_path)
    yield runner
    runner.stop()


def test_a_takeover_after_a_sigkill_mid_firing_adds_each_firing_once(automation: Automation) -> None:
    """Two processes: the active one is SIGKILLed after a firing's tasks are in the queue but before it recorded
    them; the standby takes over, finds those ids in the queue, and every scheduled time has exactly one task."""
    root = project(
        automation.root,
        '\n[[schedule]]\nname = "tick"\nevery = "3s"\ncatch_up = "all"\nmisfire_grace = "10s"\nskip_if_open = false\n'
        'task = { title = "Tick {at}" }\n',
    )
    first = automation.start_active({"AGENTD_CRASH_AT": "automation.after-fire@2:kill"})
    second = automation.start()
    assert first.wait(timeout=60) == -signal.SIGKILL  # killed at its second firing, mid-way
    wait_for(lambda: any(e["pid"] == second.pid for e in named(root, "automation-active")), 30, "the takeover")
    wait_for(lambda: any(e["pid"] == second.pid for e in named(root, "schedule-fired")), 30, "a firing by the second")
    fired = [e["task"] for e in named(root, "schedule-fired")]
    assert len(fired) == len(set(fired)), fired  # no scheduled time was added twice
    ids = sorted(task_id for task_id in tasks_by_id(root) if task_id.startswith("tick-"))
    by_first = {e["task"] for e in named(root, "schedule-fired") if e["pid"] == first.pid}
    by_second = {e["task"] for e in named(root, "schedule-fired") if e["pid"] == second.pid}
    # Added by the first just before its kill: never recorded, never re-added. One firing, which may add more than one
    # scheduled time when the process fell behind (catch_up = "all"), all of them between the two processes' own.
    lost = set(ids) - set(fired)
    assert lost and max(by_first) < min(lost) and max(lost) < min(by_second), (ids, fired)
    stamps = [datetime.strptime(i[5:].ljust(15, "0"), "%Y%m%dT%H%M%S").timestamp() for i in ids]
    assert all(b - a == 3 for a, b in itertools.pairwise(stamps)), ids  # every 3 s, none missed or doubled


def test_a_burst_of_writes_adds_one_task_after_the_debounce_and_ignored_paths_none(automation: Automation) -> None:
    """Twenty writes in a burst under src/ give one task naming them all; an ignored path and a path outside the
    rule's globs are not among its changes."""
    root = project(
        automation.root,
        '\n[[rules]]\nname = "tests"\non = "file"\npaths = ["src/**"]\nignore = ["**/*.log"]\ndebounce = "2s"\n'
        'task = { title = "Run the tests for {changed}" }\n',
    )
    (root / "src").mkdir()
    (root / "docs").mkdir()
    automation.start_active()
    (root / "src" / "debug.log").write_text("ignored\n")
    (root / "docs" / "x.py").write_text("outside\n")
    for n in range(20):
        (root / "src" / f"m{n}.py").write_text(f"x = {n}\n")
    found = wait_for(lambda: named(root, "rule-fired"), 60, "the rule to fire")
    task = tasks_by_id(root)[found[0]["task"]]
    assert sorted(task["triggered"]["changed"]) == sorted(f"src/m{n}.py" for n in range(20))
    assert task["title"].startswith("Run the tests for src/m0.py, ")
    assert len([t for t in tasks_by_id(root) if t.startswith("tests-")]) == 1


def test_an_event_rule_adds_a_task_when_a_task_fails(automation: Automation) -> None:
    """A builder run that fails journals finished/failure; the rule on it adds a task naming the failed task."""
    root = project(
        automation.root,
        '\n[[rules]]\nname = "triage"\non = "event"\ntopic = "finished"\nfilter = { outcome = "failure" }\n'
        'task = { title = "Look at {event.task}", status = "blocked" }\n',
        builder={**BUILDER, "command": ["false"]},
    )
    write_queue(root, [{"id": "B1", "title": "fails", "status": "ready", "dependencies": []}], {"builder": 1})
    automation.start_active()
    out = run_agentd("run", "--role", "builder", "--once", cwd=root, timeout=120)
    assert out.returncode in (0, 1), out.stderr
    fired = wait_for(lambda: named(root, "rule-fired"), 60, "the rule on the failure")
    assert tasks_by_id(root)[fired[0]["task"]]["title"] == "Look at B1"


def test_emit_runs_a_command_hook_with_the_event_on_stdin_and_in_the_environment(automation: Automation) -> None:
    """agentd emit appends a custom event; a command hook gets it as JSON on stdin and AGENTD_EVENT_* variables,
    and its delivery is journaled; a rule on the topic fills {event.FIELD}."""
    root = project(
        automation.root,
        '\n[[rules]]\nname = "after-deploy"\non = "event"\ntopic = "deployed"\n'
        'task = { title = "Smoke test {event.version}" }\n'
        '\n[[hooks]]\nname = "log"\non = ["deployed"]\n'
        'command = ["sh", "-c", "cat > hook.json && printf %s \\"$AGENTD_EVENT_VERSION\\" > hook.env"]\n',
    )
    automation.start_active()
    out = run_agentd("emit", "deployed", "--data", '{"version": "1.4.2"}', cwd=root)
    assert out.returncode == 0, out.stderr
    delivered = wait_for(lambda: named(root, "hook-delivered"), 60, "the hook delivery")
    assert delivered[0]["hook"] == "log"
    assert json.loads((root / "hook.json").read_text())["version"] == "1.4.2"
    assert (root / "hook.env").read_text() == "1.4.2"
    fired = wait_for(lambda: named(root, "rule-fired"), 60, "the rule on the custom event")
    assert tasks_by_id(root)[fired[0]["task"]]["title"] == "Smoke test 1.4.2"


def test_emit_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    """A topic that is one of agentd's own events, a bad name or --data that is not an object: exit 2, one line."""
    root = project(tmp_path, '\n[[hooks]]\non = ["*"]\ncommand = ["true"]\n')
    for args in (["finished"], ["a:b"], ["x", "--data", "[1]"], ["x", "--data", "{"], ["x", "--data", '{"time": 1}']):
        out = run_agentd("emit", *args, cwd=root)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 or "Error" in out.stderr, out.stderr
    assert not (root / ".agentd" / "events.jsonl").exists()


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each POST; answers with the server's ``status`` (None: never answers in time)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((dict(self.headers), body))  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        if status is None:
            self.server.release.wait(60)  # type: ignore[attr-defined]
            return
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[http.server.ThreadingHTTPServer]:
    """A local HTTP server the test runs (status 200 unless the test changes it)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.seen = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    thread.join(timeout=30)


def test_a_webhook_gets_the_event_signed_and_the_secret_is_never_written(
    automation: Automation, endpoint: http.server.ThreadingHTTPServer
) -> None:
    """The event is POSTed with an HMAC signature made with the secret from the environment; the secret is in no
    log and no journal line."""
    secret = "hunter2-" + hashlib.sha256(str(automation.root).encode()).hexdigest()[:12]
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/agentd"
    root = project(
        automation.root,
        f'\n[[hooks]]\nname = "ci"\non = ["deployed"]\nwebhook = "{url}"\nsecret = "${{HOOK_SECRET}}"\n',
    )
    automation.start_active({"HOOK_SECRET": secret})
    assert run_agentd("emit", "deployed", "--data", '{"version": "2"}', cwd=root).returncode == 0
    wait_for(lambda: named(root, "hook-delivered"), 60, "the webhook delivery")
    headers, body = endpoint.seen[0]  # type: ignore[attr-defined]
    assert json.loads(body)["version"] == "2"
    assert verify(body, secret, headers["X-Agentd-Signature"])
    assert headers["X-Agentd-Event"] == "deployed"
    automation.stop()
    for path in [root / ".agentd" / "events.jsonl", *root.glob("automation-*.out")]:
        assert secret not in path.read_text(), path


def hook_status(root: Path) -> dict[str, Any]:
    """The first hook's line of `agentd automation status --json`."""
    hooks: list[dict[str, Any]] = json.loads(run_agentd("automation", "status", "--json", cwd=root).stdout)["hooks"]
    return hooks[0]


def test_a_failing_endpoint_is_retried_then_recorded_and_a_hanging_one_delays_no_task(
    automation: Automation, endpoint: http.server.ThreadingHTTPServer
) -> None:
    """A 500 is retried (retries + 1 attempts) and ends in hook-failed; while another hook hangs on an endpoint that
    never answers, the rule on the same event still adds its task."""
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/"
    endpoint.status = 500  # type: ignore[attr-defined]
    root = project(
        automation.root,
        f'\n[[hooks]]\nname = "flaky"\non = ["deployed"]\nwebhook = "{url}"\nretries = 2\nbackoff = 0.05\n'
        '\n[[rules]]\nname = "after"\non = "event"\ntopic = "deployed"\ncoalesce = false\n'
        'task = { title = "after {event.version}" }\n',
    )
    automation.start_active()
    assert run_agentd("emit", "deployed", "--data", '{"version": "3"}', cwd=root).returncode == 0
    failed = wait_for(lambda: named(root, "hook-failed"), 60, "the failure record")
    assert failed[0]["attempts"] == 3
    assert "500" in failed[0]["error"]
    assert len(endpoint.seen) == 3  # type: ignore[attr-defined]
    # (the memory file that `automation status` reads is saved at the process's next pass, after the journal line)
    wait_for(lambda: hook_status(root)["last_ok"] is False, 60, "the failure in `automation status`")
    endpoint.status = None  # type: ignore[attr-defined]  # from now on it never answers
    assert run_agentd("emit", "deployed", "--data", '{"version": "4"}', cwd=root).returncode == 0
    wait_for(lambda: len(endpoint.seen) == 4, 60, "the hanging delivery to start")  # type: ignore[attr-defined]
    wait_for(lambda: "after 4" in [t["title"] for t in tasks_by_id(root).values()], 60, "the rule's task")


def test_disable_and_enable_switch_a_rule_persistently_and_show_in_status(automation: Automation) -> None:
    """A disabled rule adds nothing for an event the process handles (its hook on the same event is delivered);
    enabled again, it fires; status shows the switch."""
    root = project(
        automation.root,
        '\n[[rules]]\nname = "after"\non = "event"\ntopic = "deployed"\ntask = { title = "after {event.version}" }\n'
        '\n[[hooks]]\nname = "mark"\non = ["deployed"]\ncommand = ["true"]\n',
    )
    assert run_agentd("automation", "disable", "after", cwd=root).returncode == 0
    status = json.loads(run_agentd("automation", "status", "--json", cwd=root).stdout)
    assert [r["enabled"] for r in status["rules"]] == [False]
    assert run_agentd("automation", "disable", "nope", cwd=root).returncode == 6
    automation.start_active()
    assert run_agentd("emit", "deployed", "--data", '{"version": "1"}', cwd=root).returncode == 0
    wait_for(lambda: named(root, "hook-delivered"), 60, "the hook on the first event")
    assert run_agentd("automation", "enable", "after", cwd=root).returncode == 0
    assert run_agentd("emit", "deployed", "--data", '{"version": "2"}', cwd=root).returncode == 0
    wait_for(lambda: len(named(root, "hook-delivered")) == 2, 60, "the hook on the second event")
    wait_for(lambda: named(root, "rule-fired"), 60, "the rule, enabled again")
    titles = [t["title"] for t in tasks_by_id(root).values()]
    assert "after 2" in titles and "after 1" not in titles
    status = json.loads(run_agentd("automation", "status", "--json", cwd=root).stdout)
    assert status["rules"][0]["enabled"] is True and status["active"] is not None


def test_start_starts_automation_when_configured_status_shows_it_and_stop_ends_it(tmp_path: Path) -> None:
    """`agentd start` with [[rules]] configured starts the automation process in the background ("started" once it
    is up and active); `agentd status` names it; `agentd stop` stops it and its active lock is free again."""
    root = project(tmp_path, '\n[[hooks]]\nname = "h"\non = ["deployed"]\ncommand = ["true"]\n')
    try:
        out = run_agentd("start", cwd=root, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "automation started (pid " in out.stdout, out.stdout
        status = json.loads(run_agentd("status", "--json", cwd=root).stdout)
        auto = status["automation"]
        assert auto["pid"] is not None and auto["active_pid"] == auto["pid"]
        assert run_agentd("automation", "status", cwd=root).returncode == 0
        again = run_agentd("start", cwd=root, timeout=120)
        assert "automation is already running" in again.stdout, again.stdout
    finally:
        stopped = run_agentd("stop", cwd=root, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert "automation stopped" in stopped.stdout, stopped.stdout
    assert not probe(root / ".agentd" / "run" / "automation" / "active.pid").running
    assert run_agentd("automation", "status", cwd=root).returncode == 3


def test_sighup_rereads_the_config_and_a_bad_one_is_kept_out(automation: Automation) -> None:
    """SIGHUP with a broken agentd.toml keeps the old configuration (reported in the log); fixed and signalled
    again, a newly added rule works."""
    root = project(automation.root, '\n[[hooks]]\nname = "h"\non = ["deployed"]\ncommand = ["true"]\n')
    proc = automation.start_active()
    text = (root / "agentd.toml").read_text()
    (root / "agentd.toml").write_text(text + "\n[[rules]]\nname = 'x'\non = 'nope'\ntask = { title = 't' }\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the old configuration" in (root / "automation-0.out").read_text(), 60, "the refusal")
    assert proc.poll() is None
    (root / "agentd.toml").write_text(
        text + '\n[[rules]]\nname = "new"\non = "event"\ntopic = "deployed"\ntask = { title = "new rule" }\n'
    )
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(named(root, "automation-active")) == 2, 60, "the engine restarted on the new config")
    assert run_agentd("emit", "deployed", cwd=root).returncode == 0
    wait_for(lambda: named(root, "rule-fired"), 60, "the new rule")


def test_bad_files_around_it_are_reported_once_and_automation_carries_on(automation: Automation) -> None:
    """A state.json that is a folder, a memory file that is not JSON and junk lines in the journal: the process
    reports the problem once (automation-failed) and still delivers hooks."""
    root = project(automation.root, '\n[[hooks]]\nname = "h"\non = ["deployed"]\ncommand = ["true"]\n')
    (root / ".agentd" / "state.json").mkdir(parents=True)
    (root / ".agentd" / "automation").mkdir()
    (root / ".agentd" / "automation" / "memory.json").write_bytes(b"\xff{not json")
    (root / ".agentd" / "events.jsonl").write_bytes(b'not json\n{"event": 1}\n\xff\xfe\n')
    proc = automation.start_active()
    assert run_agentd("emit", "deployed", cwd=root).returncode == 0
    wait_for(lambda: named(root, "hook-delivered"), 60, "the hook, despite the bad files")
    assert len(named(root, "automation-failed")) == 1
    assert "state.json" in named(root, "automation-failed")[0]["message"]
    assert proc.poll() is None


def test_a_notify_hook_sends_through_apprise(automation: Automation, endpoint: http.server.ThreadingHTTPServer) -> None:
    """A notify URL (apprise's json:// to the local server) gets a message naming the event and its task; the URL,
    which carries credentials, is never logged."""
    port = endpoint.server_address[1]
    root = project(
        automation.root,
        '\n[[hooks]]\nname = "chat"\non = ["deployed"]\nnotify = ["${CHAT_URL}"]\n',
    )
    url = f"json://user:pa55word-x@127.0.0.1:{port}/notify"
    automation.start_active({"CHAT_URL": url})
    assert run_agentd("emit", "deployed", "--message", "v5 is out", cwd=root).returncode == 0
    wait_for(lambda: named(root, "hook-delivered"), 60, "the notification")
    _, body = endpoint.seen[0]  # type: ignore[attr-defined]
    sent = json.loads(body)
    assert sent["title"] == "agentd: deployed" and sent["message"] == "v5 is out"
    automation.stop()
    for path in [root / ".agentd" / "events.jsonl", *root.glob("automation-*.out")]:
        assert "pa55word-x" not in path.read_text(errors="replace"), path


def test_a_signal_in_the_middle_of_a_wake_up_never_hangs_the_automation_process(tmp_path: Path) -> None:
    """As the daemon's (tests/integration/test_daemon.py): the automation process's signal handler sets its wake-up,
    and a signal may come while the main thread clears or sets it; with a threading.Event that waited for ever."""
    project(tmp_path, "")
    setup = (
        "from agentd import config as config_mod\n"
        "from agentd.automation.process import AutomationProcess\n"
        "from agentd.core.clock import SystemClock\n"
        "proc = AutomationProcess(lambda: config_mod.load(root=sys.argv[1], environ={}), SystemClock())\n"
        "signal.signal(signal.SIGHUP, proc._signal)  # (as run() does)\n"
    )
    assert_survives_sighup_storm(setup, "proc.wake", tmp_path)
