"""Last seen: XEP-0012 last activity and XEP-0319 idle in presence."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.peer import Peer, befriend, error_condition, is_presence
from helpers.procs import XmppdServer

THRESHOLD = 2
MODULES = {"mod_disco": {}, "mod_ping": {}, "mod_roster": {}, "mod_client_state": {},
           "mod_last": {"online_threshold": THRESHOLD, "flush_interval": 1}}
LAST = "{jabber:iq:last}query"
IDLE = "{urn:xmpp:idle:1}idle"
USERS = ["romeo", "juliet", "nurse", "tybalt", "paris", "peter", "friar", "john", "anne", "watch",
         "balthasar", "abram"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("last"), modules=MODULES)
    pairs = tmp_path_factory.mktemp("last-users") / "users.txt"
    pairs.write_text("".join(f"{u} secret\n" for u in USERS))
    srv.ctl("register_bulk", str(pairs), "localhost")
    srv.start()
    yield srv
    srv.stop()


async def last(asker: Peer, whom: str, ok: bool = True) -> ET.Element:
    res = await asker.iq("<query xmlns='jabber:iq:last'/>", to=whom, ok=ok)
    return res


async def seconds(asker: Peer, whom: str) -> int:
    q = (await last(asker, whom)).find(LAST)
    assert q is not None
    return int(q.get("seconds", "-1"))


def idle_since(el: ET.Element) -> float:
    idle = el.find(IDLE)
    assert idle is not None, ET.tostring(el)
    return datetime.strptime(idle.get("since", ""), "%Y-%m-%dT%H:%M:%S%z").timestamp()


def test_what_counts_as_activity(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await Peer(server.c2s, "romeo").login()
        juliet = await Peer(server.c2s, "juliet").login()
        await befriend(romeo, juliet)
        assert await seconds(juliet, "romeo@localhost") == 0   # active just now
        # what the client does by itself is not activity
        await asyncio.sleep(THRESHOLD + 1)
        await romeo.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
        await romeo.roster()
        await romeo.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to="localhost")
        await romeo.send("<message to='juliet@localhost'><received xmlns='urn:xmpp:receipts' "
                         "id='x'/></message>")
        await romeo.send("<inactive xmlns='urn:xmpp:csi:0'/><active xmlns='urn:xmpp:csi:0'/>")
        await juliet.expect(lambda el: el.tag.endswith("message"))
        assert await seconds(juliet, "romeo@localhost") >= THRESHOLD + 1
        # a message is
        await romeo.send("<message to='juliet@localhost' type='chat'><body>hi</body></message>")
        await juliet.expect(lambda el: el.tag.endswith("message"))
        assert await seconds(juliet, "romeo@localhost") == 0
        await asyncio.sleep(THRESHOLD + 1)
        # and so is a chat marker, and a presence change
        await romeo.send("<message to='juliet@localhost' type='chat'>"
                         "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>")
        await juliet.expect(lambda el: el.tag.endswith("message"))
        assert await seconds(juliet, "romeo@localhost") == 0
        await asyncio.sleep(THRESHOLD + 1)
        assert await seconds(juliet, "romeo@localhost") >= THRESHOLD + 1
        await romeo.send("<presence><show>away</show></presence>")
        await juliet.expect(lambda el: is_presence(romeo.jid)(el) and
                            el.findtext("{jabber:client}show") == "away")
        assert await seconds(juliet, "romeo@localhost") == 0
        # a user may ask about themselves
        assert await seconds(romeo, "romeo@localhost") == 0
        await romeo.close()
        await juliet.close()
    run(main())


def test_activity_is_not_written_down_while_last_seen_is_shed(server: XmppdServer) -> None:
    """Load level 3 sheds last-seen updates (xmppd/overload.py): messages still arrive,
    but the sender's last activity stays where it was until the load is normal again."""
    async def main() -> None:
        balthasar = await Peer(server.c2s, "balthasar").login()
        abram = await Peer(server.c2s, "abram").login()
        await befriend(balthasar, abram)
        await asyncio.sleep(THRESHOLD + 1)
        assert "shedding presence-inactive, chat-states, last-seen (forced" in \
            server.ctl("set_load", "3").stdout
        try:
            await balthasar.send("<message to='abram@localhost' type='chat'><body>Do you bite "
                                 "your thumb at us, sir?</body></message>")
            await abram.expect(lambda el: el.tag.endswith("message"))
            assert await seconds(abram, "balthasar@localhost") >= THRESHOLD + 1
        finally:
            server.ctl("set_load", "auto")
        await balthasar.send("<message to='abram@localhost' type='chat'><body>I do bite my "
                             "thumb, sir</body></message>")
        await abram.expect(lambda el: el.tag.endswith("message"))
        assert await seconds(abram, "balthasar@localhost") == 0
        await balthasar.close()
        await abram.close()
    run(main())


def test_after_logout_and_privacy(server: XmppdServer) -> None:
    async def main() -> None:
        nurse = await Peer(server.c2s, "nurse").login()
        paris = await Peer(server.c2s, "paris").login()
        await befriend(nurse, paris)
        tybalt = await Peer(server.c2s, "tybalt").login()
        await nurse.send("<presence type='unavailable'><status>gone to find Romeo</status>"
                         "</presence>")
        pres = await paris.expect(is_presence(nurse.jid, "unavailable"))
        assert abs(idle_since(pres) - time.time()) < 60
        await nurse.close()
        await asyncio.sleep(2)
        res = await last(paris, "nurse@localhost")
        q = res.find(LAST)
        assert q is not None and int(q.get("seconds", "0")) >= 2
        assert q.text == "gone to find Romeo"
        # someone without a subscription learns nothing
        err = await last(tybalt, "nurse@localhost", ok=False)
        assert error_condition(err) == "forbidden"
        # nor about someone who does not exist
        err = await last(tybalt, "nobody@localhost", ok=False)
        assert error_condition(err) == "forbidden"
        await paris.close()
        await tybalt.close()
    run(main())


def test_server_uptime(server: XmppdServer) -> None:
    async def main() -> None:
        p = await Peer(server.c2s, "peter").login()
        assert await seconds(p, "localhost") >= 0
        await p.close()
    run(main())


def test_idle_on_csi_inactive_and_offline(server: XmppdServer) -> None:
    async def main() -> None:
        friar = await Peer(server.c2s, "friar").login()
        john = await Peer(server.c2s, "john").login()
        await befriend(friar, john)
        await friar.send("<presence><status>praying</status></presence>")
        pres = await john.expect(is_presence(friar.jid))
        assert pres.find(IDLE) is None
        since = time.time()
        await asyncio.sleep(1.2)
        # the client goes inactive: contacts see the same presence, idle since the last activity
        await friar.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        pres = await john.expect(is_presence(friar.jid))
        assert pres.findtext("{jabber:client}status") == "praying"
        assert idle_since(pres) <= since + 1
        # CSI is not activity: last activity keeps growing
        assert await seconds(john, "friar@localhost") >= 1
        await friar.send("<active xmlns='urn:xmpp:csi:0'/>")
        pres = await john.expect(is_presence(friar.jid))
        assert pres.find(IDLE) is None
        # the connection drops: the unavailable presence says since when
        friar.abort()
        pres = await john.expect(is_presence(friar.jid, "unavailable"), timeout=10)
        assert idle_since(pres) <= since + 1
        await john.close()
        # John comes back later: the server answers his probe with the last seen time
        john = await Peer(server.c2s, "john").login()
        pres = await john.expect(is_presence("friar@localhost", "unavailable"))
        assert pres.get("from") == "friar@localhost"
        assert idle_since(pres) <= since + 1
        await john.close()
    run(main())


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_last_activity_survives_restart(make_server, db: str) -> None:  # type: ignore[no-untyped-def]
    srv: XmppdServer = make_server(db=db, modules={**MODULES, "mod_last": {"flush_interval": 600}})
    for u in ("anne", "watch"):
        srv.register(u, "secret")
    srv.start()
    state: dict[str, float] = {}

    async def first() -> None:
        anne = await Peer(srv.c2s, "anne").login()
        watch = await Peer(srv.c2s, "watch").login()
        await befriend(anne, watch)
        state["t"] = time.time()
        await anne.send("<presence type='unavailable'><status>to Verona</status></presence>")
        await watch.expect(is_presence(anne.jid, "unavailable"))
        await anne.close()
        await watch.close()
    run(first())
    srv.stop()     # nothing was flushed yet (600 s): the shutdown writes it
    srv.start()

    async def second() -> None:
        watch = await Peer(srv.c2s, "watch").login()
        pres = await watch.expect(is_presence("anne@localhost", "unavailable"))
        assert pres.findtext("{jabber:client}status") == "to Verona"
        assert abs(idle_since(pres) - state["t"]) < 5
        q = (await last(watch, "anne@localhost")).find(LAST)
        assert q is not None and q.text == "to Verona"
        assert int(q.get("seconds", "-1")) >= int(time.time() - state["t"]) - 2
        await watch.close()
    run(second())


def test_slixmpp_last_activity(server: XmppdServer) -> None:
    async def main() -> None:
        # the friendship is made with raw peers; slixmpp then asks
        a = await Peer(server.c2s, "romeo", resource="raw").login()
        b = await Peer(server.c2s, "nurse", resource="raw").login()
        await befriend(a, b)
        await b.close()
        await a.close()
        romeo = await Slix("romeo@localhost/slix", "secret",
                           plugins=("xep_0030", "xep_0012")).login(server.c2s)
        res = await romeo.plugin["xep_0012"].get_last_activity("nurse@localhost", timeout=10)
        assert res["last_activity"]["seconds"] >= 0
        assert not res["last_activity"]["status"]   # the raw peer left without a status
        up = await romeo.plugin["xep_0012"].get_last_activity("localhost", timeout=10)
        assert up["last_activity"]["seconds"] >= 0
        await romeo.logout()
    run(main())
