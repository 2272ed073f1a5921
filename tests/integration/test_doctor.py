"""`agentd doctor`: finds each seeded problem in a damaged project, `--fix` repairs only the safe ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.report import doctor
from agentd.store.file.leases import Held, LeaseDir, new_record
from agentd.store.file.pidfile import PidFile
from tests.conftest import run_agentd
from tests.helpers.daemons import task, tasks_by_id, write_config, write_queue

CMD = ["true"]
ROLES: dict[str, dict[str, Any]] = {
    "builder": {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "wip": 2, "command": CMD},
    "tester": {"claims": "awaiting_test", "working": "testing", "on_success": "done", "wip": 1, "command": CMD},
}
NO_COMMAND = {"reviewer": {"claims": "review", "working": "reviewing", "on_success": "done"}}
# A daemon that took its PID file and died without releasing it (os._exit: no clean-up, the kernel drops the lock).
DEAD_DAEMON = (
    "import os, sys\n"
    "from datetime import UTC, datetime\n"
    "from pathlib import Path\n"
    "from agentd.store.file.pidfile import PidFile\n"
    "PidFile(Path(sys.argv[1]), 'builder').acquire(started=datetime.now(UTC), interval=60.0, log=None)\n"
    "os._exit(0)\n"
)
MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
40 27 0:50 /export /srv/team\\040share rw,relatime shared:7 master:2 - nfs4 fs1:/export rw,vers=4.2
41 40 0:51 / /srv/team\\040share/local rw,relatime - ext4 /dev/vdb rw
"""
PROC_MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
//nas/agents /mnt/agents cifs rw,vers=3.0 0 0
user@host:/home /home/me/remote fuse.sshfs rw,nosuid 0 0
"""


def lease(folder: LeaseDir, task_id: str, token: int, role: str) -> Held:
    """A real lease, created and locked by this process."""
    record = new_record(task_id, token, role, now=datetime.now(UTC), ttl=3600, heartbeat=60, attempt=1)
    held = folder.acquire(record)
    assert held is not None
    return held


def doctor_json(root: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run `agentd [args] doctor --json` as a real process: (exit code, findings, stderr)."""
    result = run_agentd(*args, "doctor", "--json", cwd=root)
    return result.returncode, json.loads(result.stdout), result.stderr


def codes(findings: list[dict[str, Any]]) -> set[str]:
    return {finding["code"] for finding in findings}


def subjects(findings: list[dict[str, Any]], code: str) -> set[str]:
    return {Path(finding["subject"]).name for finding in findings if finding["code"] == code}


@pytest.fixture
def damaged(tmp_path: Path) -> Iterator[Path]:
    """A project with one of each problem; T1 and T2 hold live leases and tester.pid a live daemon's lock."""
    root = tmp_path
    write_config(root, {**ROLES, **NO_COMMAND})
    tasks = [
        task("B1", "in_progress"),  # stuck: working status, no lease file
        task("B2"),  # unparsable lease file, lock free
        task("B3", "in_progress"),  # its holder died: lease file left, lock free
        task("T1", "testing"),
        task("T2", "testing"),  # two in testing, tester's WIP limit is 1
        task("P1", "parked"),  # no role claims 'parked'
        task("D1", "done"),
    ]
    write_queue(root, tasks, {"tester": 1})
    folder = LeaseDir(root / ".leases", root)
    held = [lease(folder, "T1", 1, "tester"), lease(folder, "T2", 2, "tester")]
    orphan = lease(folder, "GONE", 3, "builder")  # of a task since removed from the queue
    dead = lease(folder, "B3", 4, "builder")
    for gone in (orphan, dead):
        os.close(gone.fd)  # its holder dies: the lock goes, the file stays
    (root / ".leases" / "B2.json").write_text("{not json")
    (root / ".leases" / "notes.txt").write_text("mine\n")
    (root / ".leases" / ".tokens").write_text("3\n")
    run = root / ".agentd" / "run"
    run.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", DEAD_DAEMON, str(run / "builder.pid")], check=True, timeout=60)
    live = PidFile(run / "tester.pid", "tester")
    live.acquire(started=datetime.now(UTC), interval=60.0, log=None)
    try:
        yield root
    finally:
        live.release()
        for item in held:
            item.release()
        folder.close()


def test_doctor_finds_each_seeded_problem(damaged: Path) -> None:
    """Every seeded problem is reported with its code and subject, live leases and daemons are not, exit 1."""
    code, findings, _ = doctor_json(damaged)
    assert code == 1
    assert {
        "stuck-task",
        "stale-lease",
        "unparsable-lease",
        "orphaned-lease",
        "stray-lease-entry",
        "wip-over-limit",
        "dead-pid-file",
        "role-no-command",
        "never-picked-up",
    } <= codes(findings)
    assert subjects(findings, "stuck-task") == {"B1"}
    assert subjects(findings, "unparsable-lease") == {"B2"}
    assert subjects(findings, "orphaned-lease") == {"GONE"}
    assert subjects(findings, "stray-lease-entry") == {"notes.txt"}
    assert subjects(findings, "wip-over-limit") == {"tester"}
    assert subjects(findings, "dead-pid-file") == {"builder.pid"}
    assert subjects(findings, "daemon-running") == {"tester.pid"}
    assert subjects(findings, "role-no-command") == {"reviewer"}
    assert subjects(findings, "never-picked-up") == {"parked"}
    assert subjects(findings, "stale-lease") == {"B3"}  # T1 and T2 are held and beating: live
    by_code = {finding["code"]: finding for finding in findings}
    assert by_code["stuck-task"]["fix"] == "agentd leases prune" and by_code["stuck-task"]["safe_fix"]
    assert by_code["dead-pid-file"]["safe_fix"] and not by_code["wip-over-limit"]["safe_fix"]
    assert "[roles.reviewer] command" in by_code["role-no-command"]["fix"]
    assert [f["severity"] for f in findings] == sorted((f["severity"] for f in findings), key=doctor.SEVERITIES.index)


def test_plain_output_groups_by_severity_with_fix_lines(damaged: Path) -> None:
    """Plain output: a heading per severity, one line per finding, an indented fix line, and exit 1."""
    result = run_agentd("doctor", cwd=damaged)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Errors (")
    stuck = next(i for i, line in enumerate(lines) if line.startswith("  [stuck-task] task B1"))
    assert lines[stuck + 1].strip().startswith("fix: agentd leases prune")
    assert any(line.startswith("Warnings (") for line in lines) and any(line.startswith("Info (") for line in lines)
    assert "agentd doctor --fix" in lines[-1]


def test_fix_repairs_the_safe_problems_and_leaves_the_rest(damaged: Path) -> None:
    """--fix requeues B1 and B3, removes the junk leases and the dead PID file, says so; unsafe findings remain."""
    result = run_agentd("doctor", "--fix", cwd=damaged)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "cleared B1: in 'in_progress' with no lease file" in out and "(requeued)" in out
    assert (
        "cleared B3: lock released" in out
        and "cleared B2:" in out
        and "cleared GONE: its task no longer exists (lease file removed)" in out
    )
    assert "removed .agentd/run/builder.pid" in out
    tasks = tasks_by_id(damaged)
    assert tasks["B1"]["status"] == "ready" and tasks["B3"]["status"] == "ready" and tasks["T1"]["status"] == "testing"
    leases = damaged / ".leases"
    assert not any((leases / f"{name}.json").exists() for name in ("B2", "B3", "GONE"))
    assert (leases / "T1.json").exists() and (leases / "T2.json").exists() and (leases / "notes.txt").exists()
    assert not (damaged / ".agentd" / "run" / "builder.pid").exists()
    assert (damaged / ".agentd" / "run" / "tester.pid").exists()  # its lock is held: never removed
    code, findings, _ = doctor_json(damaged)
    assert code == 1
    assert {"stuck-task", "stale-lease", "unparsable-lease", "orphaned-lease", "dead-pid-file"}.isdisjoint(
        codes(findings)
    )
    assert {"wip-over-limit", "role-no-command", "never-picked-up", "stray-lease-entry"} <= codes(findings)


def test_fix_with_json_reports_on_stderr_and_lists_what_remains(damaged: Path) -> None:
    """With --json, what --fix did goes to stderr and stdout is the list of remaining findings."""
    result = run_agentd("doctor", "--fix", "--json", cwd=damaged)
    assert result.returncode == 1
    assert "cleared B1" in result.stderr
    assert "stuck-task" not in codes(json.loads(result.stdout))


def test_unknown_dependency_and_cycle_in_a_second_queue(damaged: Path) -> None:
    """A second queue, checked on its own with --queue: unknown dependency and cycle, one line each, exit 1."""
    other = damaged / "other.json"
    other.write_text(
        json.dumps(
            {"tasks": [task("X", dependencies=["NOPE"]), task("A", dependencies=["B"]), task("B", dependencies=["A"])]}
        )
    )
    code, findings, err = doctor_json(damaged, "--queue", str(other))
    assert code == 1, err
    assert {"unknown-dep", "cycle"} <= codes(findings)
    unknown = next(f for f in findings if f["code"] == "unknown-dep")
    assert "'NOPE'" in unknown["message"] and "\n" not in unknown["message"]
    assert "queue-valid" not in codes(findings)


def test_conflict_markers_in_a_third_queue(damaged: Path) -> None:
    """Conflict markers are an error finding naming the line, and the exit code is 1, not 4."""
    third = damaged / "third.json"
    third.write_text('{\n  "tasks": [\n<<<<<<< HEAD\n    {"id": "A", "status": "ready"}\n=======\n  ]\n}\n')
    code, findings, err = doctor_json(damaged, "--queue", str(third))
    assert code == 1, err
    marker = next(f for f in findings if f["code"] == "conflict-marker")
    assert marker["severity"] == "error" and "line 3" in marker["message"]
    assert "queue validate" in marker["fix"]
    assert {"stuck-task", "orphaned-lease", "wip-over-limit"}.isdisjoint(codes(findings))  # no queue, no judgement


def test_healthy_project_exits_zero(tmp_path: Path) -> None:
    """A project with nothing wrong: only information, exit 0, in plain text and JSON."""
    table = Path("/proc/self/mountinfo")
    if table.exists() and doctor.network_findings(
        {"tmp": str(tmp_path.resolve())}, doctor.parse_mount_table(table.read_text())
    ):
        pytest.skip("the temporary folder is on a network filesystem here")
    write_config(tmp_path, ROLES)
    write_queue(tmp_path, [task("A"), task("B", "blocked", dependencies=["A"]), task("C", "done")], {"builder": 2})
    result = run_agentd("doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout
    code, findings, _ = doctor_json(tmp_path)
    assert code == 0 and {f["severity"] for f in findings} == {"info"}
    assert not (tmp_path / ".leases").exists()  # doctor only looks


def test_mount_table_parser_reads_both_formats() -> None:
    """mountinfo and /proc/mounts lines both parse, escaped spaces included; the longest mount point wins."""
    mounts = doctor.parse_mount_table(MOUNTINFO)
    assert doctor.Mount("/srv/team share", "nfs4", "fs1:/export") in mounts
    assert doctor.mount_of("/srv/team share/proj/.leases", mounts) == doctor.Mount(
        "/srv/team share", "nfs4", "fs1:/export"
    )
    assert doctor.mount_of("/srv/team share/local/proj", mounts) == doctor.Mount(
        "/srv/team share/local", "ext4", "/dev/vdb"
    )
    assert doctor.mount_of("/srv/teamwork", mounts) == doctor.Mount("/", "ext4", "/dev/vda")
    plain = doctor.parse_mount_table(PROC_MOUNTS)
    assert [(m.point, m.fstype) for m in plain] == [
        ("/", "ext4"),
        ("/mnt/agents", "cifs"),
        ("/home/me/remote", "fuse.sshfs"),
    ]
    assert all(m.network for m in plain[1:]) and not plain[0].network


def test_network_filesystem_is_a_warning(tmp_path: Path) -> None:
    """A queue and lease folder on an NFS mount (from a fixture table) give one network-fs warning naming both."""
    write_config(tmp_path, ROLES)
    write_queue(tmp_path, [task("A")])
    table = f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:40 / {tmp_path.resolve()} rw - nfs4 server:/proj rw\n"
    findings = doctor.diagnose(config_mod.load(root=tmp_path, environ={}), datetime.now(UTC), mount_table=table)
    network = [f for f in findings if f.code == "network-fs"]
    assert len(network) == 1 and network[0].severity == "warning"
    assert "the queue and the lease folder" in network[0].message and "nfs4" in network[0].message
    healthy = doctor.diagnose(config_mod.load(root=tmp_path, environ={}), datetime.now(UTC), mount_table=PROC_MOUNTS)
    assert "network-fs" not in {f.code for f in healthy}


def test_large_log_folder_is_a_warning(tmp_path: Path) -> None:
    """Logs over the limit give a logs-large warning pointing at the [log] settings."""
    write_config(tmp_path, ROLES)
    write_queue(tmp_path, [task("A")])
    logs = tmp_path / ".agentd" / "logs" / "tasks" / "A"
    logs.mkdir(parents=True)
    (logs / "1.log").write_bytes(b"x" * 4096)
    config = config_mod.load(root=tmp_path, environ={})
    findings = doctor.diagnose(config, datetime.now(UTC), mount_table="", log_limit=1024)
    large = next(f for f in findings if f.code == "logs-large")
    assert "keep_task_logs" in large.fix and not large.safe_fix
    assert "logs-large" not in {f.code for f in doctor.diagnose(config, datetime.now(UTC), mount_table="")}


def test_a_quarantined_task_does_not_stop_the_fix_of_a_stuck_one(tmp_path: Path) -> None:
    """A task with an unknown dependency is quarantined (reported, left alone); the stuck task is still fixed."""
    write_config(tmp_path, ROLES)
    path = write_queue(tmp_path, [task("B1", "in_progress"), task("X", "in_progress", dependencies=["NOPE"])])
    bad = json.dumps(json.loads(path.read_text())["tasks"][1])
    config = config_mod.load(root=tmp_path, environ={})
    findings = doctor.diagnose(config, datetime.now(UTC), mount_table="")
    stuck = [f for f in findings if f.code == "stuck-task"]
    assert [f.subject for f in stuck] == ["B1"] and stuck[0].safe_fix
    [problem] = [f for f in findings if f.code == "unknown-dep"]
    assert problem.subject == "X" and "task X is quarantined" in problem.message
    doctor.fix(config, findings, datetime.now(UTC))
    tasks = json.loads(path.read_text())["tasks"]
    assert tasks[0]["status"] == "ready" and json.dumps(tasks[1]) == bad


def test_pid_file_removal_refuses_a_held_lock(tmp_path: Path) -> None:
    """remove_dead_pid_file leaves a PID file whose lock is held and removes it once the lock is free."""
    path = tmp_path / "run" / "builder.pid"
    owner = PidFile(path, "builder")
    owner.acquire(started=datetime.now(UTC), interval=60.0, log=None)
    assert "is running" in doctor.remove_dead_pid_file(path) and path.exists()
    os.close(owner.fd)  # the daemon dies without cleaning up
    owner.fd = -1
    assert doctor.remove_dead_pid_file(path).startswith("removed") and not path.exists()


def test_invalid_config_is_a_finding(tmp_path: Path) -> None:
    """An agentd.toml that does not validate is reported as a finding with exit 1, not raised as exit 4."""
    (tmp_path / "agentd.toml").write_text("queue = 5\n")
    code, findings, err = doctor_json(tmp_path)
    assert code == 1, err
    assert [f["code"] for f in findings] == ["config-invalid"] and "$.queue" in findings[0]["message"]


@pytest.mark.parametrize(
    ("title", "bom"), [("task D0000", ""), ("task D0000", "\ufeff"), ("done \u2192 \U0001f389 \u2705", "")]
)
def test_a_big_queue_of_finished_tasks_is_named_with_the_archive_as_its_fix(
    tmp_path: Path, title: str, bom: str
) -> None:
    """A queue file over a megabyte holding a thousand finished tasks or more, ASCII or not, with a byte-order mark
    or not: a `queue-large` finding, information only (doctor still exits 0), with its size and counts, and `agentd
    queue archive` as the fix; once archived, none."""
    write_config(tmp_path, ROLES)
    finished = [task(f"D{n:04d}", "done", notes="n" * 1100) for n in range(1000)]
    finished[0]["title"] = title
    open_one = task("A", subtasks=[task(f"A.{n}", "done") for n in range(3)])  # (done subtasks of an open task: kept)
    doc = {"wip_limits": {}, "tasks": [*finished, open_one]}
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(bom + json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")  # (a BOM: ASCII)
    assert queue.stat().st_size > doctor.QUEUE_LARGE_BYTES
    code, findings, _ = doctor_json(tmp_path)
    large = [finding for finding in findings if finding["code"] == "queue-large"]
    assert len(large) == 1 and large[0]["severity"] == "info", findings
    assert "1,000 of its 1,001 tasks finished" in large[0]["message"]
    assert large[0]["fix"].startswith("agentd queue archive")
    if {finding["severity"] for finding in findings} == {"info"}:  # (no network filesystem here: nothing else found)
        assert code == 0
    assert run_agentd("queue", "archive", cwd=tmp_path).returncode == 0
    _, findings, _ = doctor_json(tmp_path)
    assert "queue-large" not in codes(findings)


def test_the_queue_size_finding_needs_both_a_big_file_and_many_finished_tasks() -> None:
    big, many = doctor.QUEUE_LARGE_BYTES, doctor.QUEUE_LARGE_FINISHED
    assert doctor.queue_size_finding("q", big - 1, many, many) is None
    assert doctor.queue_size_finding("q", big, many - 1, many) is None
    found = doctor.queue_size_finding("q", big, many, many + 5)
    assert found is not None and found.code == "queue-large" and found.subject == "q"
    assert "1.0 MB, 1,000 of its 1,005 tasks finished" in found.message
