"""External service discovery (XEP-0215, mod_stun_disco): a client learns the STUN and
TURN servers for calls, and the TURN credentials xmppd makes open an allocation on a
real coturn (Debian's, started here with use-auth-secret, on loopback)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run
from helpers.procs import XmppdServer, free_port, wait_port
from helpers.raw import STANZA_ERR, C, RawClient

from xmppd.config import ConfigError, parse_config
from xmppd.server import check_modules

NS = "urn:xmpp:extdisco:2"
SECRET = "a-secret-shared-with-coturn"


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    exe = shutil.which("turnserver")
    # a real TURN server is part of the test: never skipped (tests/services/install.sh)
    assert exe is not None, "coturn is not installed: run make services"
    port = free_port()
    log = tmp_path_factory.mktemp("turn") / "turn.log"
    proc = subprocess.Popen(
        [exe, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", "--use-auth-secret", f"--static-auth-secret={SECRET}",
         "--realm=localhost", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
         "--simple-log", f"--log-file={log}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=proc)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, turn: int) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("extdisco"), config={
        "acl": {"callers": {"user": ["alice@localhost"]}},
        "access_rules": {"calls": {"allow": "callers"}},
    }, modules={"mod_disco": {}, "mod_stun_disco": {
        "access": "calls", "secret": SECRET, "credentials_lifetime": "1 hour",
        "services": [
            {"host": "127.0.0.1", "port": turn, "type": "stun", "transport": "udp"},
            {"host": "127.0.0.1", "port": turn, "type": "turn", "transport": "udp"},
        ]}})
    srv.register("alice", "pw-alice")
    srv.register("bob", "pw-bob")
    srv.start()
    yield srv
    srv.stop()


async def ask(c: RawClient, payload: str, iq_id: str) -> ET.Element:
    await c.send(f"<iq type='get' id='{iq_id}' to='localhost'>{payload}</iq>")
    return await c.recv_until(lambda e: e.get("id") == iq_id, timeout=10)


def allocate(port: int, username: str, password: str) -> int:
    """A TURN allocation (and a packet through it) with coturn's own client."""
    return subprocess.run(
        ["turnutils_uclient", "-u", username, "-w", password, "-p", str(port), "-e",
         "127.0.0.1", "-n", "1", "-m", "1", "-y", "127.0.0.1"],
        capture_output=True, timeout=60).returncode


def test_services_and_turn_credentials_work_at_coturn(server: XmppdServer, turn: int) -> None:
    async def main() -> Any:
        alice = RawClient(server.c2s_tls, tls=True)
        await alice.login("alice", "pw-alice")
        info = await ask(alice, "<query xmlns='http://jabber.org/protocol/disco#info'/>", "i")
        assert NS in [f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")]
        res = await ask(alice, f"<services xmlns='{NS}'/>", "s")
        services = res.findall(f"{{{NS}}}services/{{{NS}}}service")
        assert [(s.get("type"), s.get("transport")) for s in services] == [
            ("stun", "udp"), ("turn", "udp")]
        stun, turn_svc = services
        assert stun.get("username") is None and stun.get("port") == str(turn)
        assert turn_svc.get("restricted") == "1" and turn_svc.get("expires", "").endswith("Z")
        assert turn_svc.get("username", "").endswith(":alice@localhost")
        only = await ask(alice, f"<services xmlns='{NS}' type='stun'/>", "t")
        assert [s.get("type") for s in only.iter(f"{{{NS}}}service")] == ["stun"]
        creds = await ask(alice, f"<credentials xmlns='{NS}'><service host='127.0.0.1' "
                                 f"type='turn'/></credentials>", "c")
        got = creds.find(f"{{{NS}}}credentials/{{{NS}}}service")
        assert got is not None and got.get("password")
        missing = await ask(alice, f"<credentials xmlns='{NS}'><service host='turn.example' "
                                   f"type='turn'/></credentials>", "m")
        assert missing.get("type") == "error"
        assert missing.find(f"{C}error/{{{STANZA_ERR}}}item-not-found") is not None
        # bob is not in the access rule
        bob = RawClient(server.c2s_tls, tls=True)
        await bob.login("bob", "pw-bob")
        refused = await ask(bob, f"<services xmlns='{NS}'/>", "b")
        assert refused.find(f"{C}error/{{{STANZA_ERR}}}forbidden") is not None
        await alice.close()
        await bob.close()
        return turn_svc.get("username"), turn_svc.get("password"), got.get("password")
    username, password, again = run(main())
    assert allocate(turn, username, password) == 0
    assert allocate(turn, username, again) == 0
    assert allocate(turn, username, "not-" + password) != 0


def test_config_errors_name_the_path(tmp_path: Path) -> None:
    def plan(opts: dict[str, Any]) -> None:
        check_modules(parse_config({"hosts": ["localhost"], "modules": {"mod_stun_disco": opts}},
                                   base_dir=tmp_path))
    with pytest.raises(ConfigError) as e:
        plan({"services": [{"host": "turn.example", "type": "turn"}]})
    assert "modules.mod_stun_disco.secret" in str(e.value)
    with pytest.raises(ConfigError) as e:
        plan({"services": [{"host": "turn.example", "type": "ftp"}]})
    assert "modules.mod_stun_disco.services[0].type" in str(e.value)
    with pytest.raises(ConfigError) as e:
        plan({"services": [{"host": "turn.example", "type": "stun", "colour": "blue"}]})
    assert "modules.mod_stun_disco.services[0].colour" in str(e.value)
    plan({"services": [{"host": "stun.example", "type": "stun"}]})  # no secret needed
