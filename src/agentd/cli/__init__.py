"""The ``agentd`` command line: the click group and its error boundary in :mod:`agentd.cli.root`, the hot commands'
click-free path in :mod:`agentd.cli.fast`.

This package's own import is light (no click): :mod:`agentd.cli.fast`, :mod:`agentd.cli.app` and
:mod:`agentd.cli.queue_ops` are imported by calls that never load click. ``agentd.cli.cli``, ``agentd.cli.main`` and
``agentd.cli.COMMANDS`` are :mod:`agentd.cli.root`'s, imported on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("cli", "main", "COMMANDS", "EPILOG"):
        from agentd.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
