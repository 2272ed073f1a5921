"""What every command shares: the project's config and store, built once and only when needed."""

from __future__ import annotations

import os

from agentd.errors import NoProject

TYPE_CHECKING = False
if TYPE_CHECKING:  # imported when first used: `agentd --version` and `--help` need neither
    from pathlib import Path

    from agentd.config import Config
    from agentd.store.base import Store


class App:
    """Global options, resolved lazily (so `--help` never reads a file).

    A plain class, not a dataclass: building one at import costs a CLI call about a millisecond.
    """

    def __init__(
        self,
        root: str | None = None,
        queue: str | None = None,
        config_path: str | None = None,
        verbose: int = 0,
        store_kind: str | None = None,  # --store
        *,
        cache_config: bool = False,  # agentd.toml through agentd.configcache (the hot commands)
    ) -> None:
        self.root = root
        self.queue = queue
        self.config_path = config_path
        self.verbose = verbose
        self.store_kind = store_kind
        self.cache_config = cache_config
        self._config: Config | None = None

    def __repr__(self) -> str:
        return (
            f"App(root={self.root!r}, queue={self.queue!r}, config_path={self.config_path!r}, "
            f"verbose={self.verbose!r}, store_kind={self.store_kind!r})"
        )

    @property
    def config(self) -> Config:
        """The project's Config (agentd.toml, environment and options); NoProject (exit 6) where there is neither an
        agentd.toml nor a queue, so a command run in the wrong folder says so instead of creating files there (a
        database store named by --store or AGENTD_STORE is a project of its own)."""
        config = self.settings()
        if config.config_file is None and config.store == "file" and not os.path.exists(config.queue_file):
            raise NoProject(config.root_folder)
        return config

    def settings(self) -> Config:
        """The Config, whether or not a project is there (for commands given a file of their own)."""
        if self._config is None:
            from agentd import config as config_mod

            self._config = config_mod.load(
                root=self.root or None,
                config_path=self.config_path or None,
                queue=self.queue or None,
                store=self.store_kind,
                cache=self.cache_config,
            )
        return self._config

    def store(self, path: Path | None = None) -> Store:
        """The project's store (see :func:`agentd.store.open_store`), or one over the queue file ``path``, which
        needs no project around it."""
        from agentd.store import open_store

        cfg = self.config if path is None else self.settings()
        return open_store(cfg, queue_path=path)
