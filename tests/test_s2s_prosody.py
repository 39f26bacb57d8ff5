"""Federation with a real Prosody (Debian package), all on loopback.

Prosody finds xmppd (a.test) through an SRV record served by the test's own
DNS server; xmppd finds Prosody (p.test) through ``s2s_hosts``. Both sides
use STARTTLS with self-signed certificates, so dialback authenticates.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Iterator

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.dns import DNSServer
from helpers.federation import s2s_connections
from helpers.procs import XmppdServer
from helpers.prosody import ProsodyServer
from helpers.raw import C, RawClient


@pytest.fixture
def prosody_pair(make_server: Callable[..., XmppdServer]
                 ) -> Iterator[tuple[XmppdServer, ProsodyServer]]:
    dns = DNSServer().start()
    prosody = ProsodyServer("p.test", dns.port)
    try:
        srv = make_server(hosts=("a.test",), config={
            "s2s_hosts": {"p.test": {"host": "127.0.0.1", "port": prosody.s2s}}},
            modules={"mod_ping": {}, "mod_disco": {}})
        dns.add("_xmpp-server._tcp.a.test", "SRV", f"0 5 {srv.s2s} xmppd.a.test.")
        dns.add("xmppd.a.test", "A", "127.0.0.1")
        srv.register("alice", "pw", host="a.test")
        prosody.register("paul", "pw")
        prosody.start()
        srv.start()
        yield srv, prosody
    finally:
        prosody.stop()
        dns.stop()


def test_messages_and_pings_with_prosody(prosody_pair: tuple[XmppdServer, ProsodyServer]
                                         ) -> None:
    srv, prosody = prosody_pair

    async def main() -> None:
        alice = RawClient(srv.c2s_tls, tls=True, host="a.test")
        await alice.login("alice", "pw", "laptop")
        paul = Slix("paul@p.test/slix", "pw")
        await paul.login(prosody.c2s)
        # xmppd -> Prosody
        await alice.send("<message to='paul@p.test' id='x1' type='chat'>"
                         "<body>hello from xmppd</body></message>")
        m = await asyncio.wait_for(paul.messages.get(), 30)
        assert m["body"] == "hello from xmppd"
        assert str(m["from"]) == "alice@a.test/laptop"
        # Prosody -> xmppd (Prosody finds a.test by SRV, dialback verifies back)
        paul.send_message(mto="alice@a.test/laptop", mbody="hello from prosody", mtype="chat")
        m2 = await alice.recv_until(lambda e: e.tag == f"{C}message", 30)
        assert m2.findtext(f"{C}body") == "hello from prosody"
        assert m2.get("from") == "paul@p.test/slix"
        # iq both ways: xmppd's user pings Prosody's server, Prosody's user pings xmppd
        await alice.send("<iq to='p.test' id='ping1' type='get'>"
                         "<ping xmlns='urn:xmpp:ping'/></iq>")
        r = await alice.recv_until(lambda e: e.get("id") == "ping1", 15)
        assert r.get("type") == "result" and r.get("from") == "p.test"
        rtt = await paul["xep_0199"].ping("a.test", timeout=15)
        assert rtt >= 0
        # an unknown user on Prosody: the error comes back through federation
        await alice.send("<message to='nobody@p.test' id='x2' type='chat'><body>?</body>"
                         "</message>")
        e = await alice.recv_until(lambda e: e.get("id") == "x2", 15)
        assert e.get("type") == "error"
        await paul.logout()
        await alice.close()

    run(main(), 120)
    lines = s2s_connections(srv)
    assert any(line.startswith("out a.test p.test tls dialback") for line in lines), lines
    assert any(line.startswith("in a.test p.test tls dialback") for line in lines), lines
