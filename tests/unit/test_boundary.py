"""The storage boundary holds: outside ``agentd.store``, no module imports the file store (``agentd.store.file``)
except the few listed here, each with its reason (docs/concepts/storage.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "agentd"
FILE_STORE = "agentd.store.file"

_PID = "the PID files of the host's background processes (web, automation, units), which the Store does not register"
_TAIL = "reads the journal's bytes from an offset across rotations; the Store has no cursor over events yet"
# module (dotted, under agentd) -> why it may import the file store directly
EXCEPTIONS: dict[str, str] = {
    "agentd.schema": "validates the pieces the file store's incremental reader hands it (their type only)",
    "agentd.service.background": f"owns {_PID}, and tails role logs with the journal's follow",
    "agentd.service.probes": f"looks at {_PID} for `agentd status` (what background re-exports)",
    "agentd.cli.background": "names a daemon from its PID file's name (pidfile.role_of) when the file is unreadable",
    "agentd.cli.web_cmd": f"holds the web process's PID file: {_PID}",
    "agentd.automation.process": f"holds the automation process's PID file ({_PID}) and writes its journal",
    "agentd.automation.engine": f"{_TAIL}; its memory file has one writer, the active automation process",
    "agentd.cli.automation_cmd": f"shows the automation memory file and the automation process's PID files ({_PID})",
    "agentd.report.status": f"probes the automation process's active lock: {_PID}",
    "agentd.report.usage": f"the budgets' tally {_TAIL}",
    "agentd.web.metrics": f"folds the journal per rotated file, cached by file identity: {_TAIL}",
    "agentd.web.streams": f"the live events stream {_TAIL}",
    "agentd.workspaces.manager": "the worktrees' own lock (sidelock), not a store file",
    "agentd.workspaces.step": "runs inside a task's supervisor with no config loaded: appends to the journal directly",
    "agentd.report.doctor": "checks the file store's own files: the lease folder's shape, lease files left alone",
    "agentd.cli.daemon_cmds": "names a lease file in `leases list`'s message",
    "agentd.cli.foreground": "the PID file's AlreadyRunning, and why a stale one was replaced (stale_reason)",
}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports from agentd.store.file (at the top or inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == FILE_STORE or node.module.startswith(FILE_STORE + "."):
                found.add(node.module)
            elif node.module == "agentd.store" and any(alias.name == "file" for alias in node.names):
                found.add(FILE_STORE)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == FILE_STORE or a.name.startswith(FILE_STORE + ".")}
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def offenders() -> dict[str, set[str]]:
    """Modules outside agentd.store that import the file store, and what they import."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        name = _module(path)
        if name == "agentd.store" or name.startswith("agentd.store."):
            continue
        imported = _imports(path)
        if imported:
            found[name] = imported
    return found


def test_nothing_outside_the_store_imports_the_file_store_but_the_listed_exceptions() -> None:
    """Every import of agentd.store.file outside agentd.store is one of EXCEPTIONS (open_store is the way in)."""
    unexpected = {name: sorted(what) for name, what in offenders().items() if name not in EXCEPTIONS}
    assert unexpected == {}, f"go through agentd.store (open_store, Store, Txn) instead: {unexpected}"


def test_every_exception_is_still_needed_and_has_a_reason() -> None:
    """An exception whose module no longer imports the file store is removed from the list (it must stay short)."""
    found = offenders()
    assert [name for name in EXCEPTIONS if name not in found] == []
    assert all(reason.strip() for reason in EXCEPTIONS.values())


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    """The check is not fooled by a lazy import (most of the CLI imports inside its commands)."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from agentd.store.file.queuefile import QueueStore\n    return QueueStore\n")
    assert _imports(module) == {"agentd.store.file.queuefile"}
    module.write_text("from agentd.store import file\nimport agentd.store.file.leases\n")
    assert _imports(module) == {"agentd.store.file", "agentd.store.file.leases"}
