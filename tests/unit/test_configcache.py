"""agentd.toml kept parsed for the hot commands: a hit is data that passed the config schema as it is now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentd import config, configcache, schema
from agentd.errors import ConfigInvalid

TOML = '[roles.builder]\ncommand = ["true"]\n'


def _project(tmp_path: Path) -> Path:
    (tmp_path / "agentd.toml").write_text(TOML, encoding="utf-8")
    return tmp_path


def _entry(root: Path) -> list[Any]:
    return json.loads(Path(configcache.location(str(root.resolve() / "agentd.toml"))).read_text(encoding="utf-8"))


def test_the_cache_names_the_schema_its_data_passed(tmp_path: Path) -> None:
    """A hot command's first load keeps the data with the config schema file's stamp; the next finds it."""
    root = _project(tmp_path)
    first = config.load(root=root, environ={}, cache=True)
    entry = _entry(root)
    assert entry[3] == configcache.schema_stamp() != ""
    raw = (root / "agentd.toml").read_bytes()
    assert configcache.get(str(root.resolve() / "agentd.toml"), raw) == (entry[2], True)
    assert config.load(root=root, environ={}, cache=True) == first


def test_a_cache_hit_is_not_checked_against_the_schema_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second hot load of an unchanged agentd.toml validates nothing (its data passed when it was kept); a load
    without the cache validates as always."""
    root = _project(tmp_path)
    config.load(root=root, environ={}, cache=True)
    checked: list[str] = []
    real = schema.first_error

    def spy(instance: Any, name: Any) -> tuple[str, str] | None:
        checked.append(name)
        return real(instance, name)

    monkeypatch.setattr(schema, "first_error", spy)
    config.load(root=root, environ={}, cache=True)
    assert "config" not in checked
    config.load(root=root, environ={})
    assert checked.count("config") == 1


@pytest.mark.parametrize("stale", ["another schema", "an older cache"])
def test_a_cache_not_made_under_this_schema_is_checked_again(tmp_path: Path, stale: str) -> None:
    """The data of a cache kept under another version of the config schema (or by an agentd that kept no stamp) is
    validated as a parsed file is: data that does not pass is refused with its JSON path, data that does is kept
    again with this schema's stamp."""
    root = _project(tmp_path)
    want = config.load(root=root, environ={}, cache=True)
    cache = Path(configcache.location(str(root.resolve() / "agentd.toml")))
    entry = _entry(root)
    entry = [*entry[:3], "1:1"] if stale == "another schema" else entry[:3]
    cache.write_text(json.dumps(entry), encoding="utf-8")
    assert config.load(root=root, environ={}, cache=True) == want
    assert _entry(root)[3] == configcache.schema_stamp()
    entry[2]["lock_timeout"] = "not a number"  # (what the schema refuses)
    cache.write_text(json.dumps(entry), encoding="utf-8")
    with pytest.raises(ConfigInvalid, match=r"\$\.lock_timeout"):
        config.load(root=root, environ={}, cache=True)
