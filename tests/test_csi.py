"""XEP-0352 client state indication: what waits while a client is inactive."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.peer import Peer, befriend, is_message, is_presence
from helpers.procs import XmppdServer
from helpers.raw import C

MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_client_state": {}}
INACTIVE = "<inactive xmlns='urn:xmpp:csi:0'/>"
ACTIVE = "<active xmlns='urn:xmpp:csi:0'/>"
USERS = ["romeo", "juliet", "mercutio", "nurse", "paris", "friar", "john", "tybalt",
         "benvolio"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("csi"), modules=MODULES)
    for u in USERS:
        srv.register(u, "secret")
    srv.start()
    yield srv
    srv.stop()


def show(el: ET.Element) -> str:
    return el.findtext(C + "show") or ""


async def drain(p: Peer, quiet: float = 0.7) -> list[ET.Element]:
    """Everything that arrives until the stream has been quiet for ``quiet`` seconds."""
    got = list(p.inbox)
    p.inbox.clear()
    while True:
        try:
            got.append(await p.client.recv(quiet))
        except TimeoutError:
            return got


def test_inactive_client_gets_presence_and_chat_states_later(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await Peer(server.c2s, "romeo").login()
        juliet = await Peer(server.c2s, "juliet").login()
        merc = await Peer(server.c2s, "mercutio").login()
        assert juliet.features is not None
        assert juliet.features.find("{urn:xmpp:csi:0}csi") is not None
        await befriend(romeo, juliet)
        await befriend(merc, juliet)
        await juliet.send(INACTIVE)
        for s in ("away", "xa", "dnd"):
            await romeo.send(f"<presence><show>{s}</show></presence>")
        await merc.send("<presence><show>chat</show></presence>")
        for state in ("composing", "paused"):
            await romeo.send(f"<message to='juliet@localhost' type='chat'>"
                             f"<{state} xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await juliet.nothing(lambda el: el.tag in (C + "presence", C + "message"), 0.7)
        # what she asks for herself is answered at once
        assert await juliet.roster()
        # an urgent stanza: the held ones first (newest of each only), then the message
        await romeo.send("<message to='juliet@localhost' type='chat'><body>O, speak again"
                         "</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        got = await drain(juliet)
        kinds = [(e.tag.split("}")[1], e.get("from"), show(e) or e.findtext(C + "body") or
                  [c.tag.split("}")[1] for c in e][0]) for e in got]
        # (Mercutio's stream and Romeo's race: the order among senders is free)
        assert sorted(kinds[:3]) == [("message", romeo.jid, "paused"),
                                     ("presence", merc.jid, "chat"),
                                     ("presence", romeo.jid, "dnd")]
        assert kinds[3:] == [("message", romeo.jid, "O, speak again")]
        # still inactive: held again, and delivered when she becomes active
        await romeo.send("<presence><show>away</show></presence>")
        await romeo.send("<presence/>")
        await juliet.nothing(is_presence(romeo.jid), 0.5)
        await juliet.send(ACTIVE)
        got = await drain(juliet)
        assert [(e.get("from"), show(e)) for e in got] == [(romeo.jid, "")]
        # active: everything flows at once
        await romeo.send("<presence><show>chat</show></presence>")
        pres = await juliet.expect(is_presence(romeo.jid), timeout=2)
        assert show(pres) == "chat"
        for p in (romeo, juliet, merc):
            await p.close()
    run(main())


def test_under_overload_presence_is_shed_and_messages_still_arrive(server: XmppdServer) -> None:
    """At the forced top load level (xmppd/overload.py): presence for an inactive client
    stays held, chat states and read markers sent alone are dropped, a message with a body
    and its receipt go through at once; the held presence arrives when the client is
    active, and at normal load chat states flow again."""
    async def main() -> None:
        tybalt = await Peer(server.c2s, "tybalt").login()
        benvolio = await Peer(server.c2s, "benvolio").login()
        await befriend(tybalt, benvolio)
        await benvolio.send(INACTIVE)
        assert "shedding presence-inactive, chat-states, last-seen, markers" in \
            server.ctl("set_load", "4").stdout
        try:
            await tybalt.send("<presence><show>away</show></presence>")
            await tybalt.send("<message to='benvolio@localhost' type='chat'>"
                              "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
                              "</message>")
            await tybalt.send("<message to='benvolio@localhost' type='chat'><displayed "
                              "xmlns='urn:xmpp:chat-markers:0' id='m0'/></message>")
            await tybalt.send("<message to='benvolio@localhost' type='chat' id='m1'>"
                              "<body>Peace? I hate the word</body>"
                              "<request xmlns='urn:xmpp:receipts'/></message>")
            got = await drain(benvolio)
            assert [(e.tag, e.findtext(C + "body")) for e in got] == \
                [(C + "message", "Peace? I hate the word")]
            await benvolio.send(f"<message to='{tybalt.jid}'><received "
                                "xmlns='urn:xmpp:receipts' id='m1'/></message>")
            receipt = await tybalt.expect(is_message(benvolio.jid), timeout=2)
            assert receipt.find("{urn:xmpp:receipts}received") is not None
        finally:
            server.ctl("set_load", "auto")
        await benvolio.send(ACTIVE)
        got = await drain(benvolio)
        assert [(e.tag, e.get("from"), show(e)) for e in got] == \
            [(C + "presence", tybalt.jid, "away")]
        await tybalt.send("<message to='benvolio@localhost' type='chat'>"
                          "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        state = await benvolio.expect(is_message(tybalt.jid), timeout=2)
        assert state.find("{http://jabber.org/protocol/chatstates}composing") is not None
        await tybalt.close()
        await benvolio.close()
    run(main())


def test_subscription_requests_and_receipts_are_not_held(server: XmppdServer) -> None:
    async def main() -> None:
        nurse = await Peer(server.c2s, "nurse").login()
        paris = await Peer(server.c2s, "paris").login()
        await nurse.send(INACTIVE)
        await paris.send("<presence type='subscribe' to='nurse@localhost'/>")
        await nurse.expect(is_presence("paris@localhost", "subscribe"), timeout=2)
        await paris.send("<message to='nurse@localhost/r'><received xmlns='urn:xmpp:receipts' "
                         "id='m1'/></message>")
        await nurse.expect(is_message("paris@localhost"), timeout=2)
        await nurse.close()
        await paris.close()
    run(main())


def test_slixmpp_client_state(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await Peer(server.c2s, "friar").login()
        juliet = await Peer(server.c2s, "john").login()
        await befriend(romeo, juliet)
        await juliet.close()
        slix = Slix("john@localhost/slix", "secret", plugins=("xep_0030", "xep_0352"))
        seen: asyncio.Queue[str] = asyncio.Queue()
        for event in ("presence_available", "presence_away", "presence_xa"):
            slix.add_event_handler(event, lambda p: seen.put_nowait(p["show"]) if
                                   str(p["from"]) == romeo.jid else None)
        await slix.login(server.c2s)
        assert await asyncio.wait_for(seen.get(), 10) == ""   # the probe's answer
        slix.plugin["xep_0352"].send_inactive()
        await asyncio.sleep(0.3)
        await romeo.send("<presence><show>away</show></presence>")
        await romeo.send("<presence><show>xa</show></presence>")
        await asyncio.sleep(0.7)
        assert seen.empty()
        slix.plugin["xep_0352"].send_active()
        assert await asyncio.wait_for(seen.get(), 10) == "xa"
        await asyncio.sleep(0.3)
        assert seen.empty()   # only the newest one
        await slix.logout()
        await romeo.close()
    run(main())
