"""SOCKS5 bytestreams proxy (XEP-0065, mod_proxy65): two slixmpp clients send a file
through it; raw sockets check the SOCKS5 handshake, the activation rules and the
errors."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run
from helpers.clients import Slix
from helpers.peer import Peer, error_condition
from helpers.procs import XmppdServer, free_port

from xmppd.config import parse_config
from xmppd.confval import ConfigError
from xmppd.server import check_modules

MakeServer = Callable[..., XmppdServer]
NS = "http://jabber.org/protocol/bytestreams"
PROXY = "proxy.localhost"
PLUGINS = ("xep_0030", "xep_0065")
FILE = os.urandom(300_000)


def _server(make_server: MakeServer, **opts: Any) -> XmppdServer:
    srv = make_server(modules={"mod_disco": {}, "mod_proxy65": {
        "ip": "127.0.0.1", "port": free_port(), "access": "local", **opts}})
    for u in ("alice", "bob"):
        srv.register(u, "secret")
    return srv.start()


def test_slixmpp_clients_send_a_file_through_the_proxy(make_server: MakeServer) -> None:
    srv = _server(make_server)
    port = srv.config["modules"]["mod_proxy65"]["port"]

    async def main() -> None:
        alice = await Slix("alice@localhost/a", "secret", plugins=PLUGINS).login(srv.c2s)
        bob = Slix("bob@localhost/b", "secret", plugins=PLUGINS)
        bob.plugin["xep_0065"].auto_accept = True  # (what a user's "accept" click does)
        await bob.login(srv.c2s)
        # discovery: the proxy is in the host's items, with its address
        proxies = await alice.plugin["xep_0065"].discover_proxies()
        assert {str(j): (h, int(p)) for j, (h, p) in proxies.items()} == {PROXY: ("127.0.0.1", port)}

        got = bytearray()
        done = asyncio.Event()

        def received(data: bytes) -> None:
            got.extend(data)
            if len(got) >= len(FILE):
                done.set()
        bob.add_event_handler("socks5_data", received)
        sock = await alice.plugin["xep_0065"].handshake("bob@localhost/b")
        assert sock is not None
        for i in range(0, len(FILE), 50_000):
            await sock.write(FILE[i:i + 50_000])
        await asyncio.wait_for(done.wait(), 20)
        assert bytes(got) == FILE
        await alice.logout()
        await bob.logout()
    run(main())


async def socks5(port: int, dst: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"\x05\x01\x00")
    assert await r.readexactly(2) == b"\x05\x00"
    w.write(b"\x05\x01\x00\x03" + bytes([len(dst)]) + dst.encode() + b"\x00\x00")
    assert await r.readexactly(5 + len(dst) + 2) == \
        b"\x05\x00\x00\x03" + bytes([len(dst)]) + dst.encode() + b"\x00\x00"
    return r, w


def activate(sid: str, target: str) -> str:
    return f"<query xmlns='{NS}' sid='{sid}'><activate>{target}</activate></query>"


def test_raw_handshake_activation_and_errors(make_server: MakeServer) -> None:
    srv = _server(make_server, max_connections=1)
    port = srv.config["modules"]["mod_proxy65"]["port"]

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice", resource="a").login(presence=False, roster=False)
        res = await alice.iq(f"<query xmlns='{NS}'/>", to=PROXY)
        host = res.find(f"{{{NS}}}query/{{{NS}}}streamhost")
        assert host is not None and host.attrib == {"jid": PROXY, "host": "127.0.0.1",
                                                    "port": str(port)}
        info = await alice.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=PROXY)
        ident = info.find(".//{http://jabber.org/protocol/disco#info}identity")
        assert ident is not None and (ident.get("category"), ident.get("type")) == (
            "proxy", "bytestreams")

        target = "bob@localhost/b"
        dst = hashlib.sha1(("s1" + alice.jid + target).encode()).hexdigest()
        # activation before both are there: item-not-found
        t_r, t_w = await socks5(port, dst)
        res = await alice.iq(activate("s1", target), type="set", to=PROXY, ok=False)
        assert error_condition(res) == "item-not-found"
        i_r, i_w = await socks5(port, dst)
        # a third connection for the same stream is refused
        r3, w3 = await socks5(port, dst)
        assert await r3.read() == b""
        await alice.iq(activate("s1", target), type="set", to=PROXY)
        i_w.write(b"ping")
        assert await t_r.readexactly(4) == b"ping"
        t_w.write(b"pong")
        assert await i_r.readexactly(4) == b"pong"

        # max_connections: 1 active stream per requester
        dst2 = hashlib.sha1(("s2" + alice.jid + target).encode()).hexdigest()
        a2, b2 = await socks5(port, dst2), await socks5(port, dst2)
        res = await alice.iq(activate("s2", target), type="set", to=PROXY, ok=False)
        assert error_condition(res) == "not-allowed"
        # the first stream ends when a side closes; then the second may go
        t_w.close()
        assert await i_r.read() == b""
        for _ in range(50):
            res = await alice.iq(activate("s2", target), type="set", to=PROXY, ok=False)
            if res.get("type") == "result":
                break
            await asyncio.sleep(0.05)
        assert res.get("type") == "result"
        a2[1].write(b"x")
        assert await b2[0].readexactly(1) == b"x"

        # not SOCKS5 without authentication: closed
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"\x05\x01\x02")  # username/password only
        assert await r.read() == b"\x05\xff"
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        assert await r.read() == b""
        # one address may keep 16 connections waiting (handshake, partner): no more
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(16)]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r.read(), 5) == b""
        for _, iw in idle:
            iw.close()
        await asyncio.sleep(0.3)
        await socks5(port, "a" * 40)   # room again
        # a bad activation request
        res = await alice.iq(f"<query xmlns='{NS}' sid='x'/>", type="set", to=PROXY, ok=False)
        assert error_condition(res) == "bad-request"
        await alice.close()
    run(main())


def test_access_and_config_errors(make_server: MakeServer, tmp_path: Path) -> None:
    srv = _server(make_server, access="none")

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice", resource="a").login(presence=False, roster=False)
        res = await alice.iq(f"<query xmlns='{NS}'/>", to=PROXY, ok=False)
        assert error_condition(res) == "forbidden"
        await alice.close()
    run(main())

    for opts, path in (({"port": 99999}, "modules.mod_proxy65.port"),
                       ({"max_connections": 0}, "modules.mod_proxy65.max_connections")):
        cfg = parse_config(yaml.safe_load(yaml.safe_dump(
            {"hosts": ["localhost"], "modules": {"mod_proxy65": opts}})))
        with pytest.raises(ConfigError) as err:
            check_modules(cfg)
        assert str(err.value).startswith(path)

