"""ejabberd-style configuration: stock files start, bad values name their path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run
from helpers.procs import XmppdServer, free_port, wait_port
from helpers.raw import RawClient

from xmppd.acl import AccessControl
from xmppd.config import ConfigError, load_config, parse_config
from xmppd.jid import JID
from xmppd.server import check_modules

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


def cfg(**kw: Any) -> Any:
    return parse_config({"hosts": ["localhost"], **kw}, base_dir=Path("/tmp"))


def test_embedded_default_config_is_valid() -> None:
    c = load_config(ROOT / "config" / "xmppd.yml")
    assert c.hosts == ("localhost",)
    assert sorted(lc.port for lc in c.listen) == [5222, 5223, 5269, 5280, 5443]
    assert c.warnings == ()
    _, warnings = check_modules(c)
    assert warnings == []


def test_stock_ejabberd_config_parses_with_warnings() -> None:
    c = load_config(DATA / "ejabberd.yml")
    _, module_warnings = check_modules(c)
    text = "\n".join(list(c.warnings) + module_warnings)
    assert "modules.mod_mqtt: module not available" in text
    assert "modules.mod_shared_roster" not in text  # (xmppd has it)
    # what xmppd does without a module of that name is said so, not called missing
    assert "modules.mod_s2s_dialback: built into xmppd (server dialback" in text
    assert "modules.mod_caps: built into xmppd" in text
    assert "modules.mod_mam: left out of xmppd on purpose (chat is temporary" in text
    assert "modules.mod_admin_extra: built into xmppd (xmppd ctl has" in text
    assert "listen[5]" not in text   # ejabberd_stun: xmppd's STUN/TURN listener
    assert "listen[6].module: listener module 'mod_mqtt' is not supported" in text
    assert [lc.port for lc in c.listen] == [5222, 5223, 5269, 5443, 5280, 3478]
    assert c.listen[5].stun["use_turn"] is True


def _stock_with_free_ports(tmp: Path) -> tuple[Path, int, int]:
    data = yaml.safe_load((DATA / "ejabberd.yml").read_text())
    port = free_port()
    ports = {5222: port, 5223: free_port(), 5269: free_port(), 5443: free_port(), 5280: free_port(),
             3478: free_port(), 1883: free_port()}
    for entry in data["listen"]:
        entry["port"] = ports[entry["port"]]
        entry["ip"] = "127.0.0.1"
    data["data_dir"] = str(tmp / "data")
    # the stock certificate path, moved where no installed ejabberd can have left one
    data["certfiles"] = [str(tmp / "etc/ejabberd/ejabberd.pem")]
    path = tmp / "ejabberd.yml"
    path.write_text(yaml.safe_dump(data))
    return path, port, ports[3478]


def test_stock_ejabberd_config_starts_a_server(tmp_path: Path) -> None:
    path, port, stun = _stock_with_free_ports(tmp_path)
    subprocess.run([sys.executable, "-m", "xmppd", "ctl", "-c", str(path), "register", "admin",
                    "localhost", "pw"], check=True, capture_output=True)
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "xmppd", "run", "-c", str(path)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=proc)

        async def main() -> None:
            c = RawClient(port)
            assert await c.login("admin", "pw") == "admin@localhost/raw"
            await c.close()
        run(main())
    finally:
        proc.terminate()
        proc.wait(10)
    text = (tmp_path / "log").read_text()
    assert "certfiles[0]: cannot use " in text and "etc/ejabberd/ejabberd.pem" in text
    assert "modules.mod_mqtt: module not available in xmppd, ignored" in text
    assert f"listening on 127.0.0.1 port {stun} (ejabberd_stun)" in text   # with TURN
    # mod_pubsub is there (PEP), without the pubsub service's access rule
    assert "modules.mod_pubsub.access_createnode: option not supported by xmppd" in text


@pytest.mark.parametrize("data,path,expected", [
    ({"listen": [{"port": "abc", "module": "ejabberd_c2s"}]}, "listen[0].port", "integer"),
    ({"listen": [{"port": 70000, "module": "ejabberd_c2s"}]}, "listen[0].port", "1 to 65535"),
    ({"listen": [{"module": "ejabberd_c2s"}]}, "listen[0].port", "port"),
    ({"listen": [{"port": 5222, "module": "ejabberd_c2s", "tls": "yes"}]}, "listen[0].tls",
     "true or false"),
    ({"listen": [{"port": 5222, "module": "ejabberd_c2s", "ip": "not-an-ip"}]}, "listen[0].ip",
     "IP address"),
    ({"loglevel": "loud"}, "loglevel", "one of"),
    ({"hosts": []}, "hosts", "at least one host"),
    ({"hosts": ["bad host!"]}, "hosts[0]", "domain"),
    ({"sql_type": "mysql"}, "sql_type", "sqlite or pgsql"),
    ({"shaper": {"normal": {"rate": -5}}}, "shaper.normal.rate", "integer"),
    ({"acl": {"admin": {"ip": "999.1.1.1/8"}}}, "acl.admin.ip", "IP network"),
    ({"acl": {"admin": {"colour": "blue"}}}, "acl.admin.colour", "one of"),
    ({"access_rules": {"c2s": {"maybe": "all"}}}, "access_rules.c2s.maybe", "allow or deny"),
    ({"sql_pool_size": 0}, "sql_pool_size", "1 to 1000"),
    ({"host_config": {"localhost": {"loglevel": 3}}}, "host_config.localhost.loglevel", "one of"),
])
def test_invalid_values_name_their_path(data: dict[str, Any], path: str, expected: str) -> None:
    data = {"hosts": ["localhost"], **data}
    with pytest.raises(ConfigError) as ei:
        parse_config(data)
    assert str(ei.value).startswith(path + ":")
    assert expected in str(ei.value)


def test_invalid_module_option_names_its_path() -> None:
    c = cfg(modules={"mod_ping": {"send_pings": "sometimes"}})
    with pytest.raises(ConfigError) as ei:
        check_modules(c)
    assert str(ei.value).startswith("modules.mod_ping.send_pings:")


def test_unknown_options_warn() -> None:
    c = cfg(colour="blue", listen=[{"port": 5222, "module": "ejabberd_c2s", "fancy": 1}],
            modules={"mod_ping": {"frequency": 3}, "mod_unicorn": {}})
    _, mw = check_modules(c)
    assert "colour: unknown option, ignored" in c.warnings
    assert "listen[0].fancy: unknown option, ignored" in c.warnings
    assert "modules.mod_ping.frequency: option not supported by xmppd, ignored" in mw
    assert "modules.mod_unicorn: module not available in xmppd, ignored" in mw


def test_macros_and_host_substitution() -> None:
    c = cfg(define_macro={"C2S_PORT": 5999, "VERSION_OPTS": {"show_os": False}},
            listen=[{"port": "C2S_PORT", "module": "ejabberd_c2s"}],
            modules={"mod_version": "VERSION_OPTS", "mod_disco": {"extra_domains": ["x.@HOST@"]}})
    assert c.listen[0].port == 5999
    mods = c.modules_for("localhost")
    assert mods["mod_version"] == {"show_os": False}
    assert mods["mod_disco"]["extra_domains"] == ["x.localhost"]


def test_host_config_overrides() -> None:
    c = parse_config({"hosts": ["a.example", "b.example"], "modules": {"mod_ping": {}},
                      "host_config": {"b.example": {"modules": {"mod_time": {}}}}})
    assert "mod_time" not in c.modules_for("a.example")
    assert "mod_time" in c.modules_for("b.example")


def test_yaml_errors_and_duplicates(tmp_path: Path) -> None:
    p = tmp_path / "x.yml"
    p.write_text("hosts: [localhost\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert "valid YAML" in str(ei.value)
    p.write_text("hosts: [a]\nhosts: [b]\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert "duplicate key" in str(ei.value)


def test_access_rules_and_shaper_rules() -> None:
    c = cfg(acl={"admin": {"user": ["boss@localhost"]}, "lan": {"ip": "10.0.0.0/8"},
                 "local": {"user_regexp": ""}},
            access_rules={"c2s": {"deny": "blocked", "allow": "all"},
                          "register": [{"allow": "lan"}, "deny"]},
            shaper_rules={"max_user_offline_messages": {5000: "admin", 100: "all"},
                          "max_user_sessions": 10})
    ac = AccessControl(c.acl, c.access_rules, c.shaper_rules, c.hosts)
    boss, joe, stranger = JID.parse("boss@localhost"), JID.parse("joe@localhost"), JID.parse("x@else")
    assert ac.access("c2s", joe)
    assert ac.access("register", None, "10.1.2.3")
    assert not ac.access("register", None, "192.168.1.1")
    assert ac.shaper_value("max_user_offline_messages", boss) == 5000
    assert ac.shaper_value("max_user_offline_messages", joe) == 100
    assert ac.shaper_value("max_user_sessions", joe) == 10
    assert ac.acl_match("local", joe) and not ac.acl_match("local", stranger)


def test_check_command(tmp_path: Path) -> None:
    p = tmp_path / "bad.yml"
    p.write_text("hosts: [localhost]\nlisten:\n  - port: 99999\n    module: ejabberd_c2s\n")
    res = subprocess.run([sys.executable, "-m", "xmppd", "check", "-c", str(p)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "listen[0].port: expected an integer from 1 to 65535, got 99999" in res.stderr
    res = subprocess.run([sys.executable, "-m", "xmppd", "run", "-c", str(p)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "listen[0].port" in res.stderr


def test_port_in_use_is_a_clear_error(make_server: Any) -> None:
    srv: XmppdServer = make_server()
    srv.start()
    other: XmppdServer = make_server()
    other.config["listen"][0]["port"] = srv.c2s
    other.write_config()
    res = subprocess.run(other.cmd("run", "--config", str(other.config_path)),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "listen[0].port" in res.stderr + res.stdout


def test_muc_occupantid_is_built_in_and_can_be_turned_off() -> None:
    c = cfg(modules={"mod_muc": {"occupant_id": False}, "mod_muc_occupantid": {}})
    plan, warnings = check_modules(c)
    assert any(w.startswith("modules.mod_muc_occupantid: built into xmppd (mod_muc adds "
                            "occupant ids") for w in warnings)
    assert plan["localhost"]["mod_muc"][1]["occupant_id"] is False
    with pytest.raises(ConfigError) as e:
        check_modules(cfg(modules={"mod_muc": {"occupant_id": "sometimes"}}))
    assert "modules.mod_muc.occupant_id" in str(e.value)
