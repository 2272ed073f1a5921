"""A task as `agentd queue list --json` prints it: one definition for the CLI (both its paths) and the web API."""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from agentd.core.model import Task
    from agentd.core.validate import Finding


def task_json(task: Task, quarantined: Mapping[str, Finding]) -> dict[str, Any]:
    """One task of `agentd queue list --json` (and of the web's ``GET /api/tasks``)."""
    return {
        "id": task.id,
        "status": task.status,
        "title": task.title,
        "type": task.type,
        "priority": task.priority,
        "agent": task.agent,
        "dependencies": list(task.dependencies),
        "attempts": task.attempts,
        "parent": task.parent,
        "path": task.path,
        "quarantined": quarantined[task.id].text if task.id in quarantined else None,
    }
