"""Roster (RFC 6121 section 2) with raw sockets: get, set, remove, pushes, versioning, limits."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from conftest import run
from helpers.peer import ROSTER, Peer, error_condition, is_push
from helpers.procs import XmppdServer

MODULES = {"mod_disco": {}, "mod_roster": {"versioning": True, "max_roster_size": 4}}
USERS = ("romeo", "juliet", "nurse", "tybalt", "benvolio", "friar")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("roster"), modules=MODULES)
    for u in USERS:
        srv.register(u, "secret")
    srv.start()
    yield srv
    srv.stop()


def item_xml(jid: str, name: str = "", groups: tuple[str, ...] = (), sub: str = "") -> str:
    attrs = f" jid='{jid}'" + (f" name='{name}'" if name else "") + \
        (f" subscription='{sub}'" if sub else "")
    inner = "".join(f"<group>{g}</group>" for g in groups)
    return f"<query xmlns='jabber:iq:roster'><item{attrs}>{inner}</item></query>"


def test_set_get_push_and_remove(server: XmppdServer) -> None:
    async def main() -> None:
        a = await Peer(server.c2s, "romeo", resource="phone").login()
        b = await Peer(server.c2s, "romeo", resource="laptop").login()
        quiet = await Peer(server.c2s, "romeo", resource="watch").login(roster=False)
        await a.iq(item_xml("nurse@localhost", "Nurse", ("Servants", "Capulets")), "set")
        for p in (a, b):   # pushed to every interested resource, the sender included
            push = await p.expect(is_push("nurse@localhost"))
            item = push.find(f"{ROSTER}query/{ROSTER}item")
            assert item is not None and item.get("name") == "Nurse"
            assert item.get("subscription") == "none"
            assert sorted(g.text or "" for g in item) == ["Capulets", "Servants"]
        await quiet.nothing(is_push())   # never asked for the roster
        roster = await b.roster()
        assert list(roster) == ["nurse@localhost"]
        # rename, regroup
        await b.iq(item_xml("nurse@localhost", "Angelica", ("Servants",)), "set")
        push = await a.expect(is_push("nurse@localhost"))
        item = push.find(f"{ROSTER}query/{ROSTER}item")
        assert item is not None and item.get("name") == "Angelica" and len(item) == 1
        await b.expect(is_push("nurse@localhost"))
        # remove
        await a.iq(item_xml("nurse@localhost", sub="remove"), "set")
        for p in (a, b):
            push = await p.expect(is_push("nurse@localhost"))
            item = push.find(f"{ROSTER}query/{ROSTER}item")
            assert item is not None and item.get("subscription") == "remove"
        assert await a.roster() == {}
        err = await a.iq(item_xml("nurse@localhost", sub="remove"), "set", ok=False)
        assert error_condition(err) == "item-not-found"
        for p in (a, b, quiet):
            await p.close()
    run(main())


@pytest.mark.parametrize("payload,condition", [
    ("<query xmlns='jabber:iq:roster'><item jid='a@localhost'/><item jid='b@localhost'/></query>",
     "bad-request"),
    ("<query xmlns='jabber:iq:roster'/>", "bad-request"),
    (item_xml("a@localhost", groups=("x", "x")), "bad-request"),
    ("<query xmlns='jabber:iq:roster'><item jid='a@localhost'><group/></item></query>",
     "not-acceptable"),
    (item_xml("a@localhost", name="n" * 1100), "not-acceptable"),
    (item_xml("a@localhost/resource"), "bad-request"),
    (item_xml("@@bad"), "bad-request"),
], ids=["two-items", "no-item", "duplicate-group", "empty-group", "long-name", "full-jid",
        "bad-jid"])
def test_bad_roster_sets_are_refused(server: XmppdServer, payload: str, condition: str) -> None:
    async def main() -> None:
        p = await Peer(server.c2s, "tybalt").login(presence=False)
        err = await p.iq(payload, "set", ok=False)
        assert error_condition(err) == condition, ET.tostring(err)
        assert await p.roster() == {}    # nothing was stored
        await p.close()
    run(main())


def test_roster_size_limit(server: XmppdServer) -> None:
    async def main() -> None:
        p = await Peer(server.c2s, "benvolio").login(presence=False)
        for i in range(4):
            await p.iq(item_xml(f"friend{i}@localhost"), "set")
        err = await p.iq(item_xml("friend4@localhost"), "set", ok=False)
        assert error_condition(err) == "not-allowed"
        text = err.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}text")
        assert text is not None and "full" in (text.text or "")
        # updating an existing item is still fine
        await p.iq(item_xml("friend0@localhost", "Zero"), "set")
        # and so is a subscription request to a contact already in the roster
        await p.send("<presence type='subscribe' to='friend1@localhost'/>")
        await p.expect(is_push("friend1@localhost"))
        # a request to a new contact is refused
        await p.send("<presence type='subscribe' to='friend9@localhost'/>")
        err = await p.expect(lambda el: el.get("type") == "error" and el.tag.endswith("presence"))
        assert error_condition(err) == "not-allowed"
        assert len(await p.roster()) == 4
        await p.close()
    run(main())


def test_versioning(server: XmppdServer) -> None:
    async def main() -> None:
        p = await Peer(server.c2s, "friar").login(presence=False, roster=False)
        assert p.features is not None
        assert p.features.find("{urn:xmpp:features:rosterver}ver") is not None
        assert p.features.find("{urn:xmpp:features:pre-approval}sub") is not None
        res = await p.iq("<query xmlns='jabber:iq:roster' ver=''/>")
        q = res.find(f"{ROSTER}query")
        assert q is not None and q.get("ver") == "0" and len(q) == 0
        for name in ("a", "b", "c"):
            await p.iq(item_xml(f"{name}@localhost"), "set")
        await p.iq(item_xml("a@localhost", sub="remove"), "set")
        res = await p.iq("<query xmlns='jabber:iq:roster' ver=''/>")
        q = res.find(f"{ROSTER}query")
        assert q is not None
        ver = q.get("ver")
        assert ver == "4" and sorted(i.get("jid", "") for i in q) == ["b@localhost", "c@localhost"]
        p.inbox.clear()
        # up to date: an empty result, nothing else
        res = await p.iq(f"<query xmlns='jabber:iq:roster' ver='{ver}'/>")
        assert len(res) == 0
        await p.nothing(is_push(), 0.5)
        # two versions behind: an empty result, then pushes of what changed since
        res = await p.iq("<query xmlns='jabber:iq:roster' ver='2'/>")
        assert len(res) == 0
        seen = {}
        for _ in range(2):
            push = await p.expect(is_push())
            q = push.find(f"{ROSTER}query")
            assert q is not None
            item = q[0]
            seen[item.get("jid")] = (item.get("subscription"), q.get("ver"))
        assert seen == {"c@localhost": ("none", "3"), "a@localhost": ("remove", "4")}
        # a version from the future or garbage: the whole roster
        for bad in ("99", "abc"):
            res = await p.iq(f"<query xmlns='jabber:iq:roster' ver='{bad}'/>")
            q = res.find(f"{ROSTER}query")
            assert q is not None and q.get("ver") == "4" and len(q) == 2
        await p.close()
    run(main())


def test_roster_of_someone_else_is_not_served(server: XmppdServer) -> None:
    async def main() -> None:
        p = await Peer(server.c2s, "juliet").login(presence=False)
        err = await p.iq("<query xmlns='jabber:iq:roster'/>", to="romeo@localhost", ok=False)
        assert error_condition(err) == "service-unavailable"
        await p.close()
    run(main())


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_roster_survives_restart(make_server, db: str) -> None:  # type: ignore[no-untyped-def]
    srv: XmppdServer = make_server(db=db, modules=MODULES)
    srv.register("romeo", "secret")
    srv.start()

    async def first() -> None:
        p = await Peer(srv.c2s, "romeo").login(presence=False)
        await p.iq(item_xml("juliet@localhost", "Juliet", ("Lovers",)), "set")
        await p.iq(item_xml("mercutio@localhost", "Mercutio"), "set")
        await p.iq(item_xml("mercutio@localhost", sub="remove"), "set")
        await p.close()
    run(first())
    srv.stop()
    srv.start()

    async def second() -> None:
        p = await Peer(srv.c2s, "romeo").login(presence=False, roster=False)
        res = await p.iq("<query xmlns='jabber:iq:roster' ver=''/>")
        q = res.find(f"{ROSTER}query")
        assert q is not None and q.get("ver") == "3"
        items = {i.get("jid"): i for i in q}
        assert list(items) == ["juliet@localhost"]
        j = items["juliet@localhost"]
        assert j.get("name") == "Juliet" and [g.text for g in j] == ["Lovers"]
        await p.close()
    run(second())
