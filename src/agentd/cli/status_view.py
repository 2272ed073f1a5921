"""How `agentd status` reads as text: its sections (for rich and plain output alike), without click or rich.

Shared by the click command (:mod:`agentd.cli.background`) and the click-free path (:mod:`agentd.cli.fast`).
"""

from __future__ import annotations

from agentd.cli.queue_ops import plain_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _state(row: dict[str, Any]) -> str:
    if row["running"] and row.get("not_responding_s") is not None:
        return f"not responding for {row['not_responding_s']:.0f} s"
    if row["running"]:
        return "running"
    if row.get("pid_file_error"):
        return f"unknown (PID file: {row['pid_file_error']})"
    return f"stopped (stale PID file: {row['stale_pid_file']})" if row["stale_pid_file"] else "stopped"


def _running_line(t: dict[str, Any]) -> str:
    """One running task: id, title, attempt (when the queue says), runtime, heartbeat age, token."""
    attempt = "" if t["attempt"] is None else f" · attempt {t['attempt']}"
    branch = f" · branch {t['branch']}" if t.get("branch") else ""
    return (
        f"{t['id']} {t['title'] or ''}{attempt} · {_age(t['runtime_s'])} · "
        f"beat {_age(t['heartbeat_age_s'])} ago · token {t['token']}{branch}"
    )


def sections(data: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The dashboard as (title, headers, rows) sections, for rich or plain rendering."""
    # Daemons of other hosts (a shared store): each row says where it runs, when it started and when it last beat.
    hosts = any(r.get("host") not in (None, data.get("host")) for r in data["roles"])
    roles = []
    for r in data["roles"]:
        tasks = "\n".join(_running_line(t) for t in r["tasks"])
        wip = f"{'?' if r['wip'] is None else r['wip']}/{'?' if r['wip_limit'] is None else r['wip_limit']}"
        upcoming = f"{r['next']['id']} {r['next']['title'] or ''}".strip() if r["next"] else ""
        name = r["role"] + (f".{r['instance']}" if r["instance"] else "")
        if hosts:
            started = f"{_age(r['uptime_s'])} ago" if r.get("uptime_s") is not None else ""
            beat = f"{_age(r['beat_age_s'])} ago" if r.get("beat_age_s") is not None else ""
            roles.append([name, r.get("host") or "", _state(r), r["pid"], started, beat, wip, tasks, upcoming])
        else:
            roles.append([name, _state(r), r["pid"], _age(r["uptime_s"]), wip, tasks, upcoming])
    if hosts:
        headers = ["role", "host", "state", "pid", "started", "last beat", "wip", "running", "next"]
    else:
        headers = ["role", "state", "pid", "uptime", "wip", "running", "next"]
    sections = [("daemons", headers, roles)]
    sections.append(("tasks per status", ["status", "tasks"], [[k, v] for k, v in data["statuses"].items()]))
    if data["backing_off"]:
        rows = [[b["id"], b["status"], b["until"], b["attempts"]] for b in data["backing_off"]]
        sections.append(("backing off", ["id", "status", "until", "attempts"], rows))
    if data["failed"]:
        rows = [[f["id"], f["status"], f["attempts"], f["reason"]] for f in data["failed"]]
        sections.append(("failed", ["id", "status", "attempts", "reason"], rows))
    if data.get("web"):
        web = data["web"]
        rows = [[web["url"] or "?", web["pid"], _age(web["uptime_s"]), web["log"]]]
        sections.append(("dashboard (agentd web)", ["address", "pid", "uptime", "log"], rows))
    if data.get("automation"):
        auto = data["automation"]
        active = f"pid {auto['active_pid']} on {auto['active_host']}" if auto["active_pid"] else "none"
        state = "running" if auto["pid"] else "stopped"
        rows = [[state, auto["pid"], _age(auto["uptime_s"]), active, auto["log"]]]
        sections.append(("automation (agentd automation status)", ["state", "pid", "uptime", "active", "log"], rows))
    if data.get("paused"):
        rows = [[p["role"], p["until"] or "until resumed", p["reason"], p["by"]] for p in data["paused"]]
        sections.append(("paused (claiming nothing)", ["role", "until", "reason", "by"], rows))
    if data.get("waiting"):
        rows = [[w["id"], w["role"], w["since"], w["question"]] for w in data["waiting"]]
        sections.append(("waiting for an answer", ["id", "role", "since", "question"], rows))
    if data.get("spend_today"):
        rows = [
            [role, f"{s['cost_usd']:.2f}", "" if s["budget_usd"] is None else f"{s['budget_usd']:.2f}"]
            for role, s in data["spend_today"].items()
        ]
        sections.append(("spend today (USD)", ["role", "spent", "budget"], rows))
    if data["quarantined"]:
        rows = [[q["id"], q["problem"]] for q in data["quarantined"]]
        sections.append(("quarantined (nothing touches them until fixed)", ["id", "problem"], rows))
    return sections


def plain_lines(data: dict[str, Any]) -> list[str]:
    """The dashboard as plain text lines (not a terminal): each section's title, its aligned table, a blank line."""
    lines = [f"queue: {data['queue_error']}"] if data["queue_error"] else []
    for title, headers, rows in sections(data):
        lines.append(f"{title}:")
        flat = [["; ".join(str(c).splitlines()) if c is not None else "" for c in row] for row in rows]
        lines += plain_table(headers, flat)
        lines.append("")
    return lines
