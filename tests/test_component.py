"""External components (XEP-0114, ``ejabberd_service``): a slixmpp ComponentXMPP
serves its domain to clients; raw sockets check the handshake and the stream errors;
in a cluster, clients of every node reach a component connected to one of them."""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run
from helpers.peer import Peer, is_message
from helpers.procs import RedisServer, XmppdServer, free_port
from slixmpp import ComponentXMPP

from xmppd.config import parse_config
from xmppd.confval import ConfigError

MakeServer = Callable[..., XmppdServer]
DOMAIN = "bridge.localhost"
SECRET = "s3cret"


def _listener(srv: XmppdServer) -> None:
    srv.component = free_port()
    srv.config["listen"].append({"port": srv.component, "ip": "127.0.0.1",
                                 "module": "ejabberd_service",
                                 "hosts": {DOMAIN: {"password": SECRET}}})
    srv.write_config()


def _server(make_server: MakeServer) -> XmppdServer:
    srv = make_server(modules={"mod_disco": {}})
    _listener(srv)
    srv.register("alice", "secret")
    return srv.start()


class Echo(ComponentXMPP):  # type: ignore[misc]
    def __init__(self, port: int) -> None:
        super().__init__(DOMAIN, SECRET, "127.0.0.1", port)
        self.ready = asyncio.Event()
        self.add_event_handler("session_start", lambda _e: self.ready.set())
        self.add_event_handler("message", self.echo)

    def echo(self, msg: Any) -> None:
        msg.reply("echo: %s" % msg["body"]).send()


def test_a_slixmpp_component_serves_its_domain(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        comp = Echo(srv.component)
        comp.connect()
        await asyncio.wait_for(comp.ready.wait(), 15)
        alice = await Peer(srv.c2s, "alice").login(presence=False, roster=False)
        await alice.send(f"<message to='bot@{DOMAIN}' type='chat' id='m1'><body>hi</body>"
                         "</message>")
        got = await alice.expect(is_message(f"bot@{DOMAIN}"))
        assert got.findtext("{jabber:client}body") == "echo: hi"
        comp.disconnect()
        await asyncio.sleep(0.5)
        # gone: the domain is nobody's now (tried as a remote server, which fails)
        await alice.send(f"<message to='bot@{DOMAIN}' type='chat' id='m2'><body>hi</body>"
                         "</message>")
        err = await alice.expect(lambda e: e.get("id") == "m2", timeout=15)
        assert err.get("type") == "error"
        await alice.close()
    run(main())


class Raw:
    """A raw component connection: what arrived so far is kept, header and all."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w, self.data = r, w, b""

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.data:
            chunk = await asyncio.wait_for(self.r.read(4096), 10)
            if not chunk:
                break
            self.data += chunk
        return self.data

    async def until_closed(self) -> bytes:
        while True:
            chunk = await asyncio.wait_for(self.r.read(4096), 10)
            if not chunk:
                return self.data
            self.data += chunk


async def raw(port: int, to: str) -> tuple[Raw, str]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"<stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>".encode())
    c = Raw(r, w)
    m = re.search(rb"id='([^']+)'", await c.read_until(b"id='"))
    await c.read_until(b">")
    return c, m.group(1).decode() if m else ""


def handshake(sid: str, secret: str) -> bytes:
    return b"<handshake>%s</handshake>" % hashlib.sha1((sid + secret).encode()).hexdigest().encode()


def test_handshake_and_stream_errors(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        c, sid = await raw(srv.component, "nowhere.localhost")
        assert b"host-unknown" in await c.until_closed()
        c, sid = await raw(srv.component, DOMAIN)
        c.w.write(handshake(sid, "wrong"))
        assert b"not-authorized" in await c.until_closed()
        c, sid = await raw(srv.component, DOMAIN)
        c.w.write(handshake(sid, SECRET))
        assert b"<handshake/>" in await c.read_until(b"<handshake/>")
        # one connection per domain
        c2, sid2 = await raw(srv.component, DOMAIN)
        c2.w.write(handshake(sid2, SECRET))
        assert b"conflict" in await c2.until_closed()
        # stanzas from elsewhere than the component's domain are refused
        c.w.write(b"<message from='alice@localhost' to='alice@localhost'><body>x</body></message>")
        assert b"invalid-from" in await c.until_closed()
    run(main())


@pytest.mark.parametrize("listener, path", [
    ({"hosts": {DOMAIN: {}}}, f"listen[0].hosts.{DOMAIN}"),
    ({"hosts": {DOMAIN: {"passwd": "x"}}}, f"listen[0].hosts.{DOMAIN}.passwd"),
    ({"password": "x"}, "listen[0].hosts"),
])
def test_component_listener_config_errors(listener: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"hosts": ["localhost"], "listen": [
            {"port": 5347, "module": "ejabberd_service", **listener}]})
    assert str(err.value).startswith(path)


def test_clients_of_every_cluster_node_reach_a_component(make_server: MakeServer,
                                                         redis_server: RedisServer,
                                                         tmp_path: Path) -> None:
    """The component connects to one node; a client of the other node chats with it,
    a second connection for the domain on the other node gets conflict, and when the
    component moves to the other node the first node's clients follow it."""
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "flushall"], check=True,
                   capture_output=True)
    nodes = []
    for i in range(2):
        srv = make_server(config={"sm_db_type": "redis", "redis_server": "127.0.0.1",
                                  "redis_port": redis_server.port, "node_name": f"node{i}@test",
                                  "sql_database": str(tmp_path / "shared.db")},
                          modules={"mod_disco": {}})
        _listener(srv)
        nodes.append(srv)
    nodes[0].register("alice", "secret")
    nodes[0].register("bob", "secret")
    for srv in nodes:
        srv.start()
    n0, n1 = nodes

    async def echo(peer: Peer, mid: str) -> str:
        await peer.send(f"<message to='bot@{DOMAIN}' type='chat' id='{mid}'><body>{mid}</body>"
                        "</message>")
        got = await peer.expect(lambda e: e.get("id") == mid or
                                e.findtext("{jabber:client}body") == "echo: " + mid, timeout=15)
        return got.get("type") or ""

    async def main() -> None:
        comp = Echo(n0.component)
        comp.connect()
        await asyncio.wait_for(comp.ready.wait(), 15)
        bob = await Peer(n1.c2s, "bob").login(presence=False, roster=False)
        alice = await Peer(n0.c2s, "alice").login(presence=False, roster=False)
        await asyncio.sleep(0.5)  # the other node hears of the component
        assert await echo(bob, "b1") == "chat"  # through node0, and back to node1
        assert await echo(alice, "a1") == "chat"
        # the domain is taken on the whole cluster
        c, sid = await raw(n1.component, DOMAIN)
        c.w.write(handshake(sid, SECRET))
        assert b"conflict" in await c.until_closed()
        # the component goes away: nobody serves the domain any more
        comp.disconnect()
        await asyncio.sleep(1)
        assert await echo(bob, "b2") == "error"
        # it comes back on the other node
        comp = Echo(n1.component)
        comp.connect()
        await asyncio.wait_for(comp.ready.wait(), 15)
        await asyncio.sleep(0.5)
        assert await echo(alice, "a2") == "chat"
        assert await echo(bob, "b3") == "chat"
        comp.disconnect()
        await alice.close()
        await bob.close()
    run(main())


def test_the_older_of_two_connections_on_two_nodes_wins() -> None:
    """Two nodes accepted the same domain at once: each hears of the other's (the cluster
    event), the newer connection is closed, and a third node routes to the older."""
    from types import SimpleNamespace

    from xmppd.cluster.components import ComponentDirectory
    from xmppd.hooks import HookBus

    told: list[tuple[str, str]] = []

    def node(name: str) -> Any:
        srv = SimpleNamespace(node=name, hosts={}, hooks=HookBus(),
                              router=SimpleNamespace(components={}, remote_components={}),
                              sessions=SimpleNamespace(backend=SimpleNamespace(
                                  nodes=lambda: ["n1", "n2", "n3"])))
        srv.cluster_event = lambda ev, arg: told.append((name, arg))
        srv.directory = ComponentDirectory(srv)  # type: ignore[arg-type]
        return srv

    n1, n2, n3 = node("n1"), node("n2"), node("n3")
    closed: list[str] = []
    n1.directory.up(DOMAIN, 100.0, lambda: closed.append("n1"))
    n2.directory.up(DOMAIN, 101.0, lambda: closed.append("n2"))
    for name, arg in list(told):  # every node hears the others
        for other in (n1, n2, n3):
            if other.node != name:
                other.hooks.fire_all("cluster/event/component", arg)
    assert closed == ["n2"]
    assert n1.router.remote_components == {}
    assert n2.router.remote_components == {DOMAIN: "n1"}
    assert n3.router.remote_components == {DOMAIN: "n1"}
    assert n2.directory.served(DOMAIN) and not n2.directory.local
    # n1's component goes: the others forget it
    n1.directory.down(DOMAIN)
    n3.hooks.fire_all("cluster/event/component", told[-1][1])
    assert n3.router.remote_components == {}
