"""XEP-0191 blocking: raw sockets, slixmpp and aioxmpp."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from conftest import run
from helpers.clients import Slix, aioxmpp_client
from helpers.peer import Peer, Pred, befriend, error_condition, is_message, is_presence
from helpers.procs import XmppdServer
from helpers.raw import C

MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_last": {}, "mod_blocking": {}}
NS = "urn:xmpp:blocking"
USERS = ["romeo", "tybalt", "mercutio", "benvolio", "capulet", "montague", "paris", "nurse"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("blocking"), modules=MODULES)
    pairs = tmp_path_factory.mktemp("blocking-users") / "users.txt"
    pairs.write_text("".join(f"{u} secret\n" for u in USERS))
    srv.ctl("register_bulk", str(pairs), "localhost")
    srv.start()
    yield srv
    srv.stop()


def items(payload: str, *jids: str) -> str:
    return f"<{payload} xmlns='{NS}'>" + "".join(f"<item jid='{j}'/>" for j in jids) + \
        f"</{payload}>"


def is_block_push(what: str) -> Pred:
    return lambda el: el.tag == C + "iq" and el.get("type") == "set" and \
        el.find(f"{{{NS}}}{what}") is not None


async def blocklist(p: Peer) -> list[str]:
    res = await p.iq(f"<blocklist xmlns='{NS}'/>")
    return [i.get("jid", "") for i in res.iter(f"{{{NS}}}item")]


def chat(to: str, body: str) -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>"


def test_blocking_both_ways(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await Peer(server.c2s, "romeo", resource="phone").login()
        tybalt = await Peer(server.c2s, "tybalt").login()
        await befriend(romeo, tybalt)
        laptop = await Peer(server.c2s, "romeo", resource="laptop").login()
        await tybalt.expect(is_presence(laptop.jid))
        assert await blocklist(romeo) == []
        # Romeo blocks Tybalt: both Romeo's resources get the push
        await romeo.iq(items("block", "tybalt@localhost"), "set")
        for p in (romeo, laptop):
            push = await p.expect(is_block_push("block"))
            assert [i.get("jid") for i in push.iter(f"{{{NS}}}item")] == ["tybalt@localhost"]
        # each side sees the other go offline
        await tybalt.expect(is_presence("romeo@localhost/phone", "unavailable"))
        await tybalt.expect(is_presence("romeo@localhost/laptop", "unavailable"))
        await romeo.expect(is_presence(tybalt.jid, "unavailable"))
        assert await blocklist(laptop) == ["tybalt@localhost"]
        # Tybalt's message is refused, and never reaches Romeo
        await tybalt.send(chat("romeo@localhost", "draw!"))
        err = await tybalt.expect(is_message("romeo@localhost"))
        assert err.get("type") == "error" and error_condition(err) == "service-unavailable"
        await romeo.nothing(is_message("tybalt@localhost"), 0.5)
        # Romeo's message to Tybalt is refused with the blocking error
        await romeo.send(chat("tybalt@localhost", "I love thee better than thou canst devise"))
        err = await romeo.expect(is_message("tybalt@localhost"))
        assert error_condition(err) == "not-acceptable"
        assert err.find(f"{C}error/{{urn:xmpp:blocking:errors}}blocked") is not None
        await tybalt.nothing(is_message("romeo@localhost"), 0.5)
        # no presence either way, no last activity, no subscription requests
        await romeo.send("<presence><show>away</show></presence>")
        await tybalt.send("<presence><show>dnd</show></presence>")
        await laptop.expect(is_presence(romeo.jid))   # his own resources still see it
        await tybalt.nothing(is_presence("romeo@localhost"), 0.5)
        await romeo.nothing(is_presence("tybalt@localhost"), 0.5)
        err = await tybalt.iq("<query xmlns='jabber:iq:last'/>", to="romeo@localhost", ok=False)
        assert error_condition(err) == "service-unavailable"
        # ... and after Romeo logs in again, the block still holds
        await laptop.close()
        await romeo.close()
        romeo = await Peer(server.c2s, "romeo", resource="phone").login()
        await romeo.nothing(is_presence("tybalt@localhost"), 0.5)
        await tybalt.nothing(is_presence("romeo@localhost"), 0.1)
        # unblock: presence flows again at once, and messages
        await romeo.iq(items("unblock", "tybalt@localhost"), "set")
        await romeo.expect(is_block_push("unblock"))
        pres = await tybalt.expect(is_presence(romeo.jid))
        assert pres.get("type") is None
        pres = await romeo.expect(is_presence(tybalt.jid))
        assert pres.findtext(C + "show") == "dnd"
        await tybalt.send(chat("romeo@localhost", "peace"))
        msg = await romeo.expect(is_message("tybalt@localhost"))
        assert msg.findtext(C + "body") == "peace"
        assert await blocklist(romeo) == []
        await romeo.close()
        await tybalt.close()
    run(main())


def test_full_jid_and_domain_matching_and_unblock_all(server: XmppdServer) -> None:
    async def main() -> None:
        ben = await Peer(server.c2s, "benvolio").login()
        sword = await Peer(server.c2s, "mercutio", resource="sword").login()
        wit = await Peer(server.c2s, "mercutio", resource="wit").login()
        await ben.iq(items("block", "mercutio@localhost/sword"), "set")
        await sword.send(chat("benvolio@localhost", "a plague"))
        await wit.send(chat("benvolio@localhost", "o' both your houses"))
        msg = await ben.expect(is_message("mercutio@localhost"))
        assert msg.get("from") == "mercutio@localhost/wit"
        await ben.nothing(is_message("mercutio@localhost/sword"), 0.5)
        # a whole domain
        await ben.iq(items("block", "localhost"), "set")
        await wit.send(chat("benvolio@localhost", "ask for me tomorrow"))
        await ben.nothing(is_message("mercutio@localhost"), 0.5)
        assert sorted(await blocklist(ben)) == ["localhost", "mercutio@localhost/sword"]
        # unblock everything: an empty unblock
        await ben.iq(f"<unblock xmlns='{NS}'/>", "set")
        push = await ben.expect(is_block_push("unblock"))
        assert len(list(push.iter(f"{{{NS}}}item"))) == 0
        assert await blocklist(ben) == []
        await sword.send(chat("benvolio@localhost", "back"))
        await ben.expect(is_message("mercutio@localhost/sword"))
        for p in (ben, sword, wit):
            await p.close()
    run(main())


@pytest.mark.parametrize("payload,condition", [
    (f"<block xmlns='{NS}'/>", "bad-request"),
    (items("block", "@@nope"), "jid-malformed"),
    (items("unblock", "@@nope"), "jid-malformed"),
])
def test_bad_block_requests(server: XmppdServer, payload: str, condition: str) -> None:
    async def main() -> None:
        p = await Peer(server.c2s, "nurse").login()
        err = await p.iq(payload, "set", ok=False)
        assert error_condition(err) == condition, ET.tostring(err)
        assert await blocklist(p) == []
        await p.close()
    run(main())


def test_slixmpp_and_aioxmpp_block_each_other(server: XmppdServer) -> None:
    import aioxmpp
    import aioxmpp.blocking

    async def main() -> None:
        capulet = await Slix("capulet@localhost/s", "secret",
                             plugins=("xep_0030", "xep_0191")).login(server.c2s)
        got: asyncio.Queue[str] = asyncio.Queue()
        capulet.add_event_handler("blocked", lambda iq: got.put_nowait("blocked"))
        await capulet.plugin["xep_0191"].block(["montague@localhost"])
        assert await asyncio.wait_for(got.get(), 10) == "blocked"
        blocked = await capulet.plugin["xep_0191"].get_blocked_jids()
        assert {str(j) for j in blocked} == {"montague@localhost"}
        client = aioxmpp_client("montague@localhost/a", "secret", server.c2s)
        blocking = client.summon(aioxmpp.blocking.BlockingClient)
        async with client.connected() as stream:
            assert blocking.blocklist == frozenset()   # fetched at login
            await blocking.block_jids([aioxmpp.JID.fromstr("capulet@localhost")])
            for _ in range(50):
                if blocking.blocklist and aioxmpp.JID.fromstr("capulet@localhost") in \
                        blocking.blocklist:
                    break
                await asyncio.sleep(0.1)
            assert aioxmpp.JID.fromstr("capulet@localhost") in blocking.blocklist
            # Capulet's message is refused either way
            capulet.send_message(mto="montague@localhost", mbody="hence", mtype="chat")
            msg = await asyncio.wait_for(capulet.messages.get(), 10)
            assert msg["type"] == "error"
            assert msg["error"]["condition"] in ("not-acceptable", "service-unavailable")
            await blocking.unblock_all()
            del stream
        await capulet.plugin["xep_0191"].unblock(["montague@localhost"])
        assert await capulet.plugin["xep_0191"].get_blocked_jids() == set()
        await capulet.logout()
    run(main())


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_block_list_survives_restart(make_server, db: str) -> None:  # type: ignore[no-untyped-def]
    srv: XmppdServer = make_server(db=db, modules=MODULES)
    for u in ("paris", "romeo"):
        srv.register(u, "secret")
    srv.start()

    async def block() -> None:
        paris = await Peer(srv.c2s, "paris").login()
        await paris.iq(items("block", "romeo@localhost", "localhost/x"), "set")
        await paris.iq(items("unblock", "localhost/x"), "set")
        await paris.close()
    run(block())
    srv.stop()
    srv.start()

    async def check() -> None:
        paris = await Peer(srv.c2s, "paris").login()
        romeo = await Peer(srv.c2s, "romeo").login()
        assert await blocklist(paris) == ["romeo@localhost"]
        await romeo.send(chat("paris@localhost", "I pray thee"))
        err = await romeo.expect(is_message("paris@localhost"))
        assert error_condition(err) == "service-unavailable"
        await paris.close()
        await romeo.close()
    run(check())
