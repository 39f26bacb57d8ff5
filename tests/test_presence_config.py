"""Configuration of the presence modules: options, errors naming their path, dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xmppd.config import ConfigError, load_config, parse_config
from xmppd.server import check_modules

DATA = Path(__file__).parent / "data"


def plan(modules: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    c = parse_config({"hosts": ["localhost"], "modules": modules}, base_dir=Path("/tmp"))
    p, warnings = check_modules(c)
    return {name: opts for name, (_, opts) in p["localhost"].items()}, warnings


def test_defaults_and_dependencies() -> None:
    mods, warnings = plan({"mod_last": {}, "mod_blocking": {}})
    assert warnings == []
    assert mods["mod_roster"] == {"versioning": False, "max_roster_size": 1000}
    assert mods["mod_last"] == {"online_threshold": 60.0, "flush_interval": 10.0,
                                "idle_on_inactive": True}


def test_options_are_parsed() -> None:
    mods, _ = plan({"mod_roster": {"versioning": True, "max_roster_size": "infinity"},
                    "mod_last": {"online_threshold": "5 minutes"},
                    "mod_client_state": {"queue_pep": False, "queue_limit": 10}})
    assert mods["mod_roster"]["max_roster_size"] == float("inf")
    assert mods["mod_last"]["online_threshold"] == 300.0
    assert mods["mod_client_state"]["queue_pep"] is False


@pytest.mark.parametrize("modules,path", [
    ({"mod_roster": {"max_roster_size": 0}}, "modules.mod_roster.max_roster_size"),
    ({"mod_roster": {"versioning": "yes"}}, "modules.mod_roster.versioning"),
    ({"mod_last": {"online_threshold": "soon"}}, "modules.mod_last.online_threshold"),
    ({"mod_client_state": {"queue_limit": 0}}, "modules.mod_client_state.queue_limit"),
])
def test_bad_values_name_their_path(modules: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as e:
        plan(modules)
    assert str(e.value).startswith(path + ": expected")


def test_stock_ejabberd_presence_modules_load_without_warnings() -> None:
    c = load_config(DATA / "ejabberd.yml")
    p, warnings = check_modules(c)
    for name in ("mod_roster", "mod_last", "mod_blocking", "mod_client_state"):
        assert name in p["localhost"]
        assert not [w for w in warnings if w.startswith(f"modules.{name}")]
    assert p["localhost"]["mod_roster"][1]["versioning"] is True
