"""agentd.toml: defaults from the schema, overrides, precedence, and what `agentd init` writes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agentd import config, schema
from agentd.cli.init_cmd import config_text
from agentd.errors import ConfigInvalid, RoleNotFound


def test_no_file_means_the_five_role_pipeline(tmp_path: Path) -> None:
    """Without agentd.toml the default workflow is planner/builder/tester/refiner/integrator."""
    cfg = config.load(root=tmp_path, environ={})
    assert list(cfg.roles) == ["planner", "builder", "tester", "refiner", "integrator"]
    b = cfg.role("builder")
    assert (b.claims, b.working, b.on_success, b.on_failure) == (("ready",), "in_progress", "awaiting_test", "blocked")
    assert cfg.queue_path == tmp_path.resolve() / "SPRINT_QUEUE.json"
    assert cfg.workflow.done_statuses == {"done", "completed"}


def test_role_defaults_match_the_schema() -> None:
    """Every tunable's default in the code is the one the schema documents."""
    tun = schema.load("config")["$defs"]["tunables"]["properties"]
    role = config.load(root=Path("/"), environ={}).role("tester")
    for name in config.TUNABLES:
        assert getattr(role, name) == tun[name]["default"], name
    assert role.backoff.initial == tun["backoff"]["properties"]["initial"]["default"]


def test_init_template_parses_to_the_defaults(tmp_path: Path) -> None:
    """The commented agentd.toml that init writes is valid and means exactly the defaults."""
    (tmp_path / "agentd.toml").write_text(config_text())
    assert tomllib.loads(config_text())
    written = config.load(root=tmp_path, environ={})
    bare = config.load(root=tmp_path / "nowhere", environ={})
    assert written.workflow == bare.workflow
    assert written.log == bare.log


def test_role_overrides_defaults_and_outcomes(tmp_path: Path) -> None:
    """A role inherits [defaults] and overrides what it sets; outcomes keys become ints."""
    (tmp_path / "agentd.toml").write_text(
        """
[defaults]
interval = 5
backoff = { initial = 1 }
[roles.tester]
claims = ["awaiting_test", "retest"]
working = "testing"
on_success = "ready_for_integrator"
outcomes = { 3 = "needs_adapt" }
interval = 2
command = ["pytest", "-q"]
"""
    )
    cfg = config.load(root=tmp_path, environ={})
    tester = cfg.role("tester")
    assert tester.interval == 2 and tester.backoff.initial == 1 and tester.backoff.factor == 2
    assert tester.outcomes == {3: "needs_adapt"} and tester.claims == ("awaiting_test", "retest")
    assert tester.command == ("pytest", "-q")
    assert list(cfg.roles) == ["planner", "builder", "tester", "refiner", "integrator"]
    with pytest.raises(RoleNotFound):
        cfg.role("reviewer")


def test_a_default_role_table_inherits_and_the_others_stay(tmp_path: Path) -> None:
    """[roles.builder] with only a command keeps the builder's statuses and the four other default roles."""
    (tmp_path / "agentd.toml").write_text('[roles.builder]\ncommand = ["make", "build"]\nwip = 2\n')
    cfg = config.load(root=tmp_path, environ={})
    bare = config.load(root=tmp_path / "nowhere", environ={})
    assert list(cfg.roles) == list(bare.roles)
    builder = cfg.role("builder")
    assert (builder.claims, builder.working, builder.on_success) == (("ready",), "in_progress", "awaiting_test")
    assert builder.command == ("make", "build") and builder.wip == 2
    assert cfg.role("tester") == bare.role("tester")
    assert cfg.sources["roles.builder.command"] == "agentd.toml [roles.builder]"
    assert cfg.sources["roles.builder.claims"] == "default"


def test_roles_replace_defaults_keeps_only_the_tables_given(tmp_path: Path) -> None:
    """roles_replace_defaults = true: only the roles written, and each must say claims, working and on_success."""
    (tmp_path / "agentd.toml").write_text(
        'roles_replace_defaults = true\n[roles.builder]\nclaims = "todo"\nworking = "doing"\non_success = "done"\n'
    )
    cfg = config.load(root=tmp_path, environ={})
    assert list(cfg.roles) == ["builder"] and cfg.role("builder").claims == ("todo",)
    (tmp_path / "agentd.toml").write_text('roles_replace_defaults = true\n[roles.builder]\ncommand = ["x"]\n')
    with pytest.raises(ConfigInvalid) as info:
        config.load(root=tmp_path, environ={})
    assert str(info.value).endswith(
        "agentd.toml: $.roles.builder: 'claims' is a required property (roles_replace_defaults is set)"
    )


def test_a_new_role_must_name_its_statuses(tmp_path: Path) -> None:
    """A role that is not a default one needs claims, working and on_success; the error names its path."""
    (tmp_path / "agentd.toml").write_text('[roles.reviewer]\nclaims = "review"\ncommand = ["x"]\n')
    with pytest.raises(ConfigInvalid) as info:
        config.load(root=tmp_path, environ={})
    assert "agentd.toml: $.roles.reviewer: 'working' is a required property" in str(info.value)
    (tmp_path / "agentd.toml").write_text(
        '[roles.reviewer]\nclaims = "review"\nworking = "reviewing"\non_success = "done"\n'
    )
    assert list(config.load(root=tmp_path, environ={}).roles)[-1] == "reviewer"


def test_queue_path_precedence(tmp_path: Path) -> None:
    """--queue beats AGENTD_QUEUE beats agentd.toml beats the default."""
    (tmp_path / "agentd.toml").write_text('queue = "from-toml.json"\n')
    assert config.load(root=tmp_path, environ={}).queue_path.name == "from-toml.json"
    env = {"AGENTD_QUEUE": "from-env.json"}
    assert config.load(root=tmp_path, environ=env).queue_path.name == "from-env.json"
    assert config.load(root=tmp_path, environ=env, queue=Path("cli.json")).queue_path.name == "cli.json"


def test_root_is_found_upwards(tmp_path: Path) -> None:
    """The nearest folder upwards holding agentd.toml is the project root."""
    (tmp_path / "agentd.toml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert config.find_root(deep) == tmp_path.resolve()


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    """A typo is an error naming the file and the key's path."""
    (tmp_path / "agentd.toml").write_text("[defaults]\nintervall = 3\n")
    with pytest.raises(ConfigInvalid) as info:
        config.load(root=tmp_path, environ={})
    assert "agentd.toml: $.defaults:" in str(info.value) and "intervall" in str(info.value)


def test_unblock_can_be_turned_off(tmp_path: Path) -> None:
    """unblock = false disables the rule."""
    (tmp_path / "agentd.toml").write_text("unblock = false\n")
    assert config.load(root=tmp_path, environ={}).workflow.unblock is None


def test_a_role_succeeding_into_its_own_claims_is_refused_unless_it_means_it(tmp_path: Path) -> None:
    """on_success among its claims is a hot loop: refused at load, naming the key; allow_loop = true allows it."""
    (tmp_path / "agentd.toml").write_text('[roles.builder]\nclaims = ["ready", "again"]\non_success = "again"\n')
    with pytest.raises(ConfigInvalid) as info:
        config.load(root=tmp_path, environ={})
    assert "agentd.toml: $.roles.builder.on_success: 'again' is a status this role claims" in str(info.value)
    assert "allow_loop = true" in str(info.value)
    (tmp_path / "agentd.toml").write_text(
        '[defaults]\nmax_repeats = 4\n[roles.builder]\nclaims = ["ready", "again"]\non_success = "again"\n'
        "allow_loop = true\n"
    )
    builder = config.load(root=tmp_path, environ={}).role("builder")
    assert builder.allow_loop and builder.max_repeats == 4


def test_the_fence_margin_is_derived_from_the_lease_ttl(tmp_path: Path) -> None:
    """Unset, fence_margin is 20 % of lease_ttl, at least 2 s, at most half of it; set, it is taken as it is."""
    (tmp_path / "agentd.toml").write_text(
        "[defaults]\nlease_ttl = 100\nheartbeat = 5\n[roles.tester]\nlease_ttl = 5\nheartbeat = 1\n"
        "[roles.planner]\nlease_ttl = 1\nheartbeat = 0.2\n[roles.refiner]\nfence_margin = 30\n"
    )
    cfg = config.load(root=tmp_path, environ={})
    margins = {name: (cfg.role(name).margin, cfg.role(name).fence_after) for name in ("builder", "tester", "planner")}
    assert margins == {"builder": (20.0, 80.0), "tester": (2.0, 3.0), "planner": (0.5, 0.5)}
    assert cfg.role("refiner").fence_after == 70.0
    assert cfg.sources["roles.refiner.fence_margin"] == "agentd.toml [roles.refiner]"
    assert config.load(root=tmp_path / "nowhere", environ={}).role("builder").fence_after == 5400 - 1080


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[defaults]\nlease_ttl = 10\nfence_margin = 10\n",
            "agentd.toml: $.defaults.fence_margin: fence_margin 10 s must be under lease_ttl 10 s (role 'planner')",
        ),
        (
            "[roles.builder]\nlease_ttl = 10\nheartbeat = 1\nfence_margin = 12\n",
            "agentd.toml: $.roles.builder.fence_margin: fence_margin 12 s must be under lease_ttl 10 s",
        ),
        (
            "[defaults]\nlease_ttl = 10\nheartbeat = 8\n",
            "agentd.toml: $.defaults.heartbeat: heartbeat 8 s must be under lease_ttl - fence_margin = 8 s",
        ),
        ("[roles.tester]\nlease_ttl = 60\n", "agentd.toml: $.roles.tester.lease_ttl: heartbeat 60 s must be under"),
    ],
)
def test_a_fence_with_no_room_is_refused_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    """A margin not under the ttl, or a heartbeat not under lease_ttl - margin (every run would be fenced), is an
    error naming the file and the key."""
    (tmp_path / "agentd.toml").write_text(toml)
    with pytest.raises(ConfigInvalid) as info:
        config.load(root=tmp_path, environ={})
    assert message in str(info.value)
