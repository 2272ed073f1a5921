"""The file store's transactions over a Draft: tasks added, removed and changed in one transaction rewrite only what
changed, byte for byte, also after a removal moves the tasks that follow."""

from __future__ import annotations

from pathlib import Path

from agentd import config as config_mod
from agentd.store import open_store
from agentd.store.base import Store, Txn

QUEUE = """{
  "wip_limits": {"builder": 1},
  "tasks": [
    {"id": "A", "status": "ready", "note":   "odd  spacing kept"},
    {"id": "B", "status": "ready", "subtasks": [{"id": "B1", "status": "ready"}, {"id": "B2", "status": "ready"}]},
    {"id": "C", "status": "ready"},
    {"id": "D", "status": "ready", "dependencies": ["C"]}
  ]
}
"""


def store_at(root: Path) -> Store:
    """The file store of a project whose queue is ``QUEUE``."""
    (root / "SPRINT_QUEUE.json").write_text(QUEUE)
    return open_store(config_mod.load(root=root, environ={}))


def test_a_removal_then_a_change_after_it_touches_only_those_lines(tmp_path: Path) -> None:
    """Removing A and then changing D (now one place earlier) rewrites exactly those two things."""
    store = store_at(tmp_path)

    def change(txn: Txn) -> None:
        assert txn.remove("A") is not None
        raw = txn.task("D")
        assert raw is not None
        raw["status"] = "done"
        assert txn.task("A") is None

    store.transaction(change)
    text = (tmp_path / "SPRINT_QUEUE.json").read_text()
    expected = QUEUE.replace('    {"id": "A", "status": "ready", "note":   "odd  spacing kept"},\n', "").replace(
        '{"id": "D", "status": "ready"', '{"id": "D", "status": "done"'
    )
    assert text == expected


def test_nested_removal_and_additions_keep_the_rest_byte_for_byte(tmp_path: Path) -> None:
    """Removing a subtask, adding one under its parent and one at the end leave every other byte as it was."""
    store = store_at(tmp_path)

    def change(txn: Txn) -> list[str]:
        txn.remove("B1")
        txn.add({"id": "B3", "status": "ready"}, parent="B")
        txn.add({"id": "E", "status": "ready"})
        c = txn.task("C")
        assert c is not None
        c["status"] = "blocked"
        return txn.ids()

    assert store.transaction(change) == ["A", "B", "B2", "B3", "C", "D", "E"]
    text = (tmp_path / "SPRINT_QUEUE.json").read_text()
    assert text.startswith(QUEUE.split("\n")[0] + "\n" + QUEUE.split("\n")[1] + "\n" + QUEUE.split("\n")[2] + "\n")
    assert '{"id": "A", "status": "ready", "note":   "odd  spacing kept"}' in text
    assert '{"id": "D", "status": "ready", "dependencies": ["C"]}' in text
    tasks = [t.id for t in store.read().tasks]
    assert tasks == ["A", "B", "B2", "B3", "C", "D", "E"]
    assert store.read().task("C") == {"id": "C", "status": "blocked"}


def test_a_task_removed_and_added_again_in_one_transaction_is_the_new_one(tmp_path: Path) -> None:
    """Remove C and add a new C: the queue has the new one, at the end, and D still depends on it."""
    store = store_at(tmp_path)

    def change(txn: Txn) -> None:
        txn.remove("C")
        txn.add({"id": "C", "status": "done"})
        again = txn.task("C")
        assert again == {"id": "C", "status": "done"}

    store.transaction(change)
    snapshot = store.read()
    assert [t.id for t in snapshot.tasks] == ["A", "B", "B1", "B2", "D", "C"] and not snapshot.errors
    assert snapshot.task("C") == {"id": "C", "status": "done"}
