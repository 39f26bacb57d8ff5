"""Contacts and presence with off-the-shelf clients (slixmpp, aioxmpp), on SQLite and PostgreSQL.

Two users subscribe to each other and see each other come and go; a third user
who is not subscribed learns nothing; a subscription request to a user who is
offline arrives at their next login.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run
from helpers.clients import Slix, aioxmpp_client
from helpers.procs import PostgresServer, XmppdServer

MODULES = {"mod_disco": {}, "mod_ping": {}, "mod_roster": {"versioning": True},
           "mod_last": {}, "mod_blocking": {}, "mod_client_state": {}}
USERS = ("romeo", "juliet", "nurse", "mercutio", "benvolio", "paris", "capulet")


@pytest.fixture(scope="module", params=["sqlite", "pgsql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    pg: PostgresServer | None = request.getfixturevalue("postgres") \
        if request.param == "pgsql" else None
    srv = XmppdServer(tmp_path_factory.mktemp(f"presence-{request.param}"), db=request.param,
                      pg=pg, modules=MODULES)
    for user in USERS:
        srv.register(user, "pass-" + user)
    srv.start()
    yield srv
    srv.stop()


class Watcher:
    """Collects (event, from) pairs a slixmpp client sees about other people."""

    def __init__(self, client: Slix) -> None:
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.client = client
        for event in ("got_online", "got_offline", "presence_subscribe", "presence_subscribed",
                      "changed_status"):
            client.add_event_handler(event, self._handler(event))

    def _handler(self, event: str) -> Any:
        def h(pres: Any) -> None:
            frm = str(pres["from"])
            if frm.split("/")[0] != self.client.boundjid.bare:
                self.events.put_nowait((event, frm))
        return h

    async def wait(self, event: str, frm: str, timeout: float = 10) -> None:
        """Wait until ``event`` from ``frm`` (a bare JID matches any resource)."""
        async def find() -> None:
            while True:
                ev, f = await self.events.get()
                if ev == event and (f == frm or f.split("/")[0] == frm):
                    return
        await asyncio.wait_for(find(), timeout)

    def seen_from(self, bare: str) -> list[tuple[str, str]]:
        out = []
        while not self.events.empty():
            ev, f = self.events.get_nowait()
            if f.split("/")[0] == bare:
                out.append((ev, f))
        return out


def test_slixmpp_contacts_see_each_other_come_and_go(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = Slix("romeo@localhost/balcony", "pass-romeo")
        juliet = Slix("juliet@localhost/garden", "pass-juliet")
        nurse = Slix("nurse@localhost/kitchen", "pass-nurse")
        watch_r, watch_j, watch_n = Watcher(romeo), Watcher(juliet), Watcher(nurse)
        for c in (romeo, juliet, nurse):
            await c.login(server.c2s)
            await c.get_roster()
        # slixmpp approves and asks back by itself (auto_authorize, auto_subscribe)
        romeo.send_presence_subscription(pto="juliet@localhost")
        await watch_r.wait("got_online", "juliet@localhost/garden")
        await watch_j.wait("got_online", "romeo@localhost/balcony")
        for _ in range(50):
            if romeo.client_roster["juliet@localhost"]["subscription"] == "both" and \
                    juliet.client_roster["romeo@localhost"]["subscription"] == "both":
                break
            await asyncio.sleep(0.1)
        assert romeo.client_roster["juliet@localhost"]["subscription"] == "both"
        assert juliet.client_roster["romeo@localhost"]["subscription"] == "both"
        # status changes are seen
        juliet.send_presence(pshow="away", pstatus="at mass")
        await watch_r.wait("changed_status", "juliet@localhost/garden")
        # Juliet goes and comes back
        await juliet.logout()
        await watch_r.wait("got_offline", "juliet@localhost/garden")
        juliet = Slix("juliet@localhost/chapel", "pass-juliet")
        watch_j = Watcher(juliet)
        await juliet.login(server.c2s)
        await watch_r.wait("got_online", "juliet@localhost/chapel")
        await watch_j.wait("got_online", "romeo@localhost/balcony")   # the probe's answer
        # the Nurse, not subscribed, learned nothing about either of them
        romeo.send_presence(pshow="xa")
        await watch_j.wait("changed_status", "romeo@localhost/balcony")
        await asyncio.sleep(0.5)
        assert watch_n.seen_from("romeo@localhost") == []
        assert watch_n.seen_from("juliet@localhost") == []
        for c in (romeo, juliet, nurse):
            await c.logout()
    run(main())


def test_subscription_request_to_offline_user_arrives_at_login(server: XmppdServer) -> None:
    async def main() -> None:
        paris = Slix("paris@localhost/church", "pass-paris")
        await paris.login(server.c2s)
        await paris.get_roster()
        paris.send_presence(pto="capulet@localhost", ptype="subscribe",
                            pstatus="your daughter's hand")
        for _ in range(50):
            if paris.client_roster["capulet@localhost"]["pending_out"]:
                break
            await asyncio.sleep(0.1)
        assert paris.client_roster["capulet@localhost"]["pending_out"]
        await paris.logout()
        capulet = Slix("capulet@localhost/hall", "pass-capulet")
        capulet.auto_authorize = None   # let the test see the request
        requests: asyncio.Queue[Any] = asyncio.Queue()
        capulet.add_event_handler("presence_subscribe", requests.put_nowait)
        await capulet.login(server.c2s)
        req = await asyncio.wait_for(requests.get(), 10)
        assert str(req["from"]) == "paris@localhost"
        assert req["status"] == "your daughter's hand"
        capulet.send_presence(pto="paris@localhost", ptype="subscribed")
        await asyncio.sleep(0.5)
        await capulet.logout()
        # Paris sees the answer at his next login
        paris = Slix("paris@localhost/church", "pass-paris")
        answers: asyncio.Queue[Any] = asyncio.Queue()
        paris.add_event_handler("presence_subscribed", answers.put_nowait)
        await paris.login(server.c2s)
        await paris.get_roster()
        assert paris.client_roster["capulet@localhost"]["subscription"] == "to"
        ans = await asyncio.wait_for(answers.get(), 10)
        assert str(ans["from"]) == "capulet@localhost"
        await paris.logout()
    run(main())


def test_aioxmpp_roster_and_presence(server: XmppdServer) -> None:
    import aioxmpp
    import aioxmpp.roster

    async def main() -> None:
        ben = Slix("benvolio@localhost/street", "pass-benvolio")   # approves by itself
        await ben.login(server.c2s)
        merc = aioxmpp_client("mercutio@localhost/aio", "pass-mercutio", server.c2s)
        roster = merc.summon(aioxmpp.RosterClient)
        presence = merc.summon(aioxmpp.PresenceClient)
        available: asyncio.Queue[str] = asyncio.Queue()
        unavailable: asyncio.Queue[str] = asyncio.Queue()
        subscribed: asyncio.Queue[str] = asyncio.Queue()
        me = aioxmpp.JID.fromstr("mercutio@localhost")
        presence.on_available.connect(
            lambda jid, st: None if jid.bare() == me else available.put_nowait(str(jid)))
        presence.on_unavailable.connect(
            lambda jid, st: None if jid.bare() == me else unavailable.put_nowait(str(jid)))
        roster.on_subscribed.connect(lambda st: subscribed.put_nowait(str(st.from_)))
        roster.on_subscribe.connect(lambda st: roster.approve(st.from_))
        ben_jid = aioxmpp.JID.fromstr("benvolio@localhost")
        async with merc.connected():
            await roster.set_entry(ben_jid, name="Benvolio", add_to_groups={"Montagues"})
            roster.subscribe(ben_jid)
            assert await asyncio.wait_for(subscribed.get(), 10) == "benvolio@localhost"
            assert await asyncio.wait_for(available.get(), 10) == "benvolio@localhost/street"
            for _ in range(50):
                item = roster.items.get(ben_jid)
                if item is not None and item.subscription == "both":
                    break
                await asyncio.sleep(0.1)
            item = roster.items[ben_jid]
            assert item.subscription == "both" and item.name == "Benvolio"
            assert item.groups == {"Montagues"}
            await ben.logout()
            assert await asyncio.wait_for(unavailable.get(), 10) == "benvolio@localhost/street"
        # reconnect: the versioned roster comes back, Benvolio is known
        merc2 = aioxmpp_client("mercutio@localhost/aio2", "pass-mercutio", server.c2s)
        roster2 = merc2.summon(aioxmpp.RosterClient)
        async with merc2.connected():
            for _ in range(50):
                if ben_jid in roster2.items:
                    break
                await asyncio.sleep(0.1)
            assert roster2.items[ben_jid].subscription == "both"
    run(main())
