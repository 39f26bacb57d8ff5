"""Real client libraries (slixmpp, aioxmpp) log in and chat, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest
from conftest import run
from helpers.clients import Slix, aioxmpp_client
from helpers.procs import PostgresServer, XmppdServer


@pytest.fixture(scope="module", params=["sqlite", "pgsql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    pg: PostgresServer | None = request.getfixturevalue("postgres") if request.param == "pgsql" else None
    srv = XmppdServer(tmp_path_factory.mktemp(f"clients-{request.param}"), db=request.param, pg=pg)
    for user in ("romeo", "juliet", "nurse", "mercutio"):
        srv.register(user, "pass-" + user)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_slixmpp_chat(server: XmppdServer, direct_tls: bool) -> None:
    port = server.c2s_tls if direct_tls else server.c2s

    async def main() -> None:
        romeo = await Slix("romeo@localhost/balcony", "pass-romeo", direct_tls=direct_tls).login(port)
        juliet = await Slix("juliet@localhost/garden", "pass-juliet", direct_tls=direct_tls).login(port)
        romeo.send_message(mto="juliet@localhost", mbody="Wherefore art thou?", mtype="chat")
        msg = await asyncio.wait_for(juliet.messages.get(), 10)
        assert msg["body"] == "Wherefore art thou?"
        assert str(msg["from"]) == "romeo@localhost/balcony"
        juliet.send_message(mto="romeo@localhost/balcony", mbody="Here!", mtype="chat")
        msg = await asyncio.wait_for(romeo.messages.get(), 10)
        assert msg["body"] == "Here!"
        rtt = await romeo.plugin["xep_0199"].ping("localhost", timeout=10)
        assert rtt is not None
        info = await romeo.plugin["xep_0030"].get_info(jid="localhost", timeout=10)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        version = await romeo.plugin["xep_0092"].get_version("localhost", timeout=10)
        assert version["software_version"]["name"] == "xmppd"
        await romeo.logout()
        await juliet.logout()
    run(main())


def test_slixmpp_two_resources_of_one_user(server: XmppdServer) -> None:
    async def main() -> None:
        a = await Slix("nurse@localhost/one", "pass-nurse").login(server.c2s)
        b = await Slix("nurse@localhost/two", "pass-nurse").login(server.c2s)
        a.send_message(mto="nurse@localhost/two", mbody="to myself", mtype="chat")
        msg = await asyncio.wait_for(b.messages.get(), 10)
        assert msg["body"] == "to myself" and str(msg["from"]) == "nurse@localhost/one"
        await a.logout()
        await b.logout()
    run(main())


def test_slixmpp_wrong_password(server: XmppdServer) -> None:
    async def main() -> None:
        c = Slix("romeo@localhost/x", "wrong")
        c.connect("127.0.0.1", server.c2s)
        await asyncio.wait_for(c.failed.get(), 15)
        c.disconnect()
    run(main())


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_aioxmpp_chat(server: XmppdServer, direct_tls: bool) -> None:
    import aioxmpp
    port = server.c2s_tls if direct_tls else server.c2s

    async def main() -> None:
        received: asyncio.Queue[aioxmpp.Message] = asyncio.Queue()
        a = aioxmpp_client("mercutio@localhost/sword", "pass-mercutio", port, direct_tls=direct_tls)
        b = aioxmpp_client("romeo@localhost/aio", "pass-romeo", port, direct_tls=direct_tls)
        async with a.connected() as sa, b.connected():
            disp = b.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
            disp.register_callback(aioxmpp.MessageType.CHAT, None,
                                   lambda m: received.put_nowait(m))
            msg = aioxmpp.Message(to=aioxmpp.JID.fromstr("romeo@localhost/aio"),
                                  type_=aioxmpp.MessageType.CHAT)
            msg.body[None] = "A plague o' both your houses!"
            await sa.send(msg)
            got = await asyncio.wait_for(received.get(), 10)
            assert got.body.any() == "A plague o' both your houses!"
            assert str(got.from_) == "mercutio@localhost/sword"
            ping = aioxmpp.IQ(type_=aioxmpp.IQType.GET, to=aioxmpp.JID.fromstr("localhost"))
            ping.payload = aioxmpp.ping.xso.Ping()
            await a.send(ping)
            disco = a.summon(aioxmpp.DiscoClient)
            info = await disco.query_info(aioxmpp.JID.fromstr("localhost"))
            assert "urn:xmpp:ping" in info.features
    run(main())
