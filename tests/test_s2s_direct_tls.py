"""Server-to-server Direct TLS (XEP-0368): an ``ejabberd_s2s_in`` listener with
``tls: true``, outgoing streams to ``s2s_hosts`` with ``tls: true`` or to targets of
``_xmpps-server._tcp`` SRV records; between two xmppd processes, and with a real Prosody
both ways (Prosody finds xmppd's Direct TLS port by SRV), all on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conftest import run
from helpers.clients import Slix
from helpers.dns import DNSServer
from helpers.federation import federated_pair, s2s_connections
from helpers.procs import XmppdServer, free_port
from helpers.prosody import ProsodyServer
from helpers.raw import C, RawClient

from xmppd.s2s.resolver import Resolver, Target

MakeServer = Callable[..., XmppdServer]


def direct_listener(srv: XmppdServer) -> int:
    port = free_port()
    srv.config["listen"].append({"port": port, "ip": "127.0.0.1", "module": "ejabberd_s2s_in",
                                 "tls": True})
    return port


async def login(srv: XmppdServer, user: str, host: str) -> RawClient:
    c = RawClient(srv.c2s_tls, tls=True, host=host)
    await c.login(user, "pw", "r")
    return c


def test_two_xmppd_servers_over_direct_tls(make_server: MakeServer) -> None:
    a, b = federated_pair(make_server)
    ports = {srv: direct_listener(srv) for srv in (a, b)}
    a.config["s2s_hosts"] = {"b.test": {"host": "127.0.0.1", "port": ports[b], "tls": True}}
    b.config["s2s_hosts"] = {"a.test": {"host": "127.0.0.1", "port": ports[a], "tls": True}}
    for srv in (a, b):
        srv.write_config()
    a.register("alice", "pw", host="a.test")
    b.register("bob", "pw", host="b.test")
    a.start()
    b.start()

    async def main() -> None:
        alice = await login(a, "alice", "a.test")
        bob = await login(b, "bob", "b.test")
        await alice.send("<message to='bob@b.test/r' type='chat'><body>over direct TLS</body>"
                         "</message>")
        m = await bob.recv_until(lambda e: e.tag == f"{C}message", 20)
        assert m.findtext(f"{C}body") == "over direct TLS"
        await bob.send("<message to='alice@a.test/r' type='chat'><body>and back</body></message>")
        m = await alice.recv_until(lambda e: e.tag == f"{C}message", 20)
        assert m.findtext(f"{C}body") == "and back"
        await alice.close()
        await bob.close()
    run(main())
    lines = s2s_connections(a)
    assert any(line.startswith("out a.test b.test tls dialback") and "(direct TLS)" in line
               for line in lines), lines
    assert any(line.startswith("in a.test b.test tls dialback") and "(direct TLS)" in line
               for line in lines), lines


def test_srv_records_of_both_kinds_merge() -> None:
    """_xmpps-server before _xmpp-server at the same priority; priorities first."""
    dns = DNSServer().start()
    try:
        dns.add("_xmpps-server._tcp.x.test", "SRV", "10 5 5270 tls.x.test.")
        dns.add("_xmpp-server._tcp.x.test", "SRV", "10 5 5269 plain.x.test.",
                "5 5 5269 first.x.test.")
        dns.add("_xmpps-server._tcp.y.test", "SRV", "0 5 5270 only.y.test.")
        resolver = Resolver({}, 5269, 5.0, nameservers=[("127.0.0.1", dns.port)])

        async def main() -> None:
            assert await resolver.targets("x.test") == [
                Target("first.x.test", 5269), Target("tls.x.test", 5270, True),
                Target("plain.x.test", 5269)]
            assert await resolver.targets("y.test") == [Target("only.y.test", 5270, True)]
        run(main())
    finally:
        dns.stop()


def test_prosody_over_direct_tls_both_ways(make_server: MakeServer) -> None:
    dns = DNSServer().start()
    prosody = ProsodyServer("p.test", dns.port, direct_tls=True)
    try:
        srv = make_server(hosts=("a.test",), modules={"mod_ping": {}, "mod_disco": {}})
        port = direct_listener(srv)
        assert prosody.s2s_tls is not None
        srv.config["s2s_hosts"] = {"p.test": {"host": "127.0.0.1", "port": prosody.s2s_tls,
                                              "tls": True}}
        srv.write_config()
        # Prosody finds only xmppd's Direct TLS port
        dns.add("_xmpps-server._tcp.a.test", "SRV", f"0 5 {port} xmppd.a.test.")
        dns.add("xmppd.a.test", "A", "127.0.0.1")
        srv.register("alice", "pw", host="a.test")
        prosody.register("paul", "pw")
        prosody.start()
        srv.start()

        async def main() -> None:
            alice = await login(srv, "alice", "a.test")
            paul = Slix("paul@p.test/slix", "pw")
            await paul.login(prosody.c2s)
            await alice.send("<message to='paul@p.test' type='chat'><body>to prosody</body>"
                             "</message>")
            m = await asyncio.wait_for(paul.messages.get(), 30)
            assert m["body"] == "to prosody"
            paul.send_message(mto="alice@a.test/r", mbody="from prosody", mtype="chat")
            m2 = await alice.recv_until(lambda e: e.tag == f"{C}message", 30)
            assert m2.findtext(f"{C}body") == "from prosody"
            await paul.logout()
            await alice.close()
        run(main(), 120)
        lines = s2s_connections(srv)
        assert any(line.startswith("out a.test p.test tls") and "(direct TLS)" in line
                   for line in lines), lines
        assert any(line.startswith("in a.test p.test tls") and "(direct TLS)" in line
                   for line in lines), lines
    finally:
        prosody.stop()
        dns.stop()
