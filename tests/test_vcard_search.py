"""The vCard user directory (XEP-0055 Jabber Search, mod_vcard ``search: true`` as in
ejabberd): the service at vjud.HOST, its form, data-form and legacy searches with
ejabberd's matching rules, the index kept with every vCard and account, the migration
that indexes vCards stored before, and slixmpp's xep_0055 as a client."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, Optional

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.peer import Peer, error_condition
from helpers.procs import XmppdServer

MakeServer = Callable[..., XmppdServer]
VJUD = "vjud.localhost"
PEOPLE = "people.localhost"
SEARCH = "jabber:iq:search"
Q = "{%s}" % SEARCH
DATA = "{jabber:x:data}"
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
FORM_FIELDS = ["user", "fn", "first", "middle", "last", "nick", "bday", "ctry", "locality",
               "email", "orgname", "orgunit"]
RESULT_FIELDS = ["jid", "fn", "last", "first", "middle", "nick", "bday", "ctry", "locality",
                 "email", "orgname", "orgunit"]

ALICE = ("<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><N><FAMILY>Liddell</FAMILY>"
         "<GIVEN>Alice</GIVEN><MIDDLE>Pleasance</MIDDLE></N><NICKNAME>Ally</NICKNAME>"
         "<BDAY>1852-05-04</BDAY><ADR><HOME/><LOCALITY>Oxford</LOCALITY><CTRY>UK</CTRY></ADR>"
         "<EMAIL><INTERNET/><USERID>alice@wonder.land</USERID></EMAIL>"
         "<ORG><ORGNAME>Wonderland</ORGNAME><ORGUNIT>Tea Party</ORGUNIT></ORG></vCard>")


def card(given: str, family: str = "", nick: str = "", email: str = "") -> str:
    return (f"<vCard xmlns='vcard-temp'><FN>{given} {family}</FN><N><GIVEN>{given}</GIVEN>"
            f"<FAMILY>{family}</FAMILY></N><NICKNAME>{nick}</NICKNAME><EMAIL>{email}</EMAIL>"
            "</vCard>")


def form(**values: str) -> str:
    fields = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in values.items())
    return (f"<query xmlns='{SEARCH}'><x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{SEARCH}</value></field>{fields}"
            "</x></query>")


def legacy(**values: str) -> str:
    return f"<query xmlns='{SEARCH}'>" + "".join(
        f"<{k}>{v}</{k}>" for k, v in values.items()) + "</query>"


def items(res: ET.Element) -> list[dict[str, str]]:
    """The items of a result form, by field."""
    x = res.find(f"{Q}query/{DATA}x")
    assert x is not None and x.get("type") == "result", ET.tostring(res)
    out = []
    for it in x.findall(f"{DATA}item"):
        out.append({f.get("var", ""): f.findtext(f"{DATA}value") or ""
                    for f in it.findall(f"{DATA}field")})
    return out


async def find(p: Peer, to: str = VJUD, **values: str) -> list[str]:
    """The JIDs a data-form search finds."""
    return [it["jid"] for it in items(await p.iq(form(**values), "set", to=to))]


def disco_items(res: ET.Element) -> dict[str, Optional[str]]:
    return {i.get("jid", ""): i.get("name") for i in res.iter(f"{{{ITEMS}}}item")}


def _server(make_server: MakeServer, db: str = "sqlite", vcard: Optional[dict[str, Any]] = None,
            **kw: Any) -> XmppdServer:
    return make_server(db=db, modules={"mod_disco": {}, "mod_roster": {},
                                       "mod_vcard": vcard or {}}, **kw)


def test_off_by_default_then_on_finds_vcards_stored_before(make_server: MakeServer) -> None:
    """Off by default: no vjud. Turned on later, it finds the vCards stored meanwhile,
    also from a database whose vCards predate the index (the migration fills it)."""
    srv = _server(make_server)
    for u in ("alice", "bob"):
        srv.register(u, "secret")
    srv.start()

    async def off() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        bob = await Peer(srv.c2s, "bob").login()
        await alice.iq(ALICE, "set")
        await bob.iq(card("Bob", "Builder", "bobby"), "set")
        res = await alice.iq(f"<query xmlns='{ITEMS}'/>", to="localhost")
        assert VJUD not in disco_items(res)
        res = await alice.iq(f"<query xmlns='{SEARCH}'/>", to=VJUD, ok=False)
        assert res.get("type") == "error"
        await alice.close()
        await bob.close()

    run(off())
    srv.stop()
    # a database from before the index: the table and its migrations not there
    db = sqlite3.connect(srv.base / "data" / "xmppd.db")
    with db:
        db.execute("DROP TABLE vcard_search")
        db.execute("DELETE FROM schema_versions WHERE component = 'vcard_search'")
    db.close()
    srv.config["modules"]["mod_vcard"] = {
        "search": True, "name": "People", "vcard": {"fn": "The directory",
                                                  "url": "https://localhost/people"}}
    srv.write_config()
    srv.start()

    async def on() -> None:
        bob = await Peer(srv.c2s, "bob").login()
        res = await bob.iq(f"<query xmlns='{ITEMS}'/>", to="localhost")
        assert disco_items(res)[VJUD] == "People"
        assert await find(bob, last="liddell") == ["alice@localhost"]
        assert await find(bob, nick="BOBBY") == ["bob@localhost"]
        # the service's own vCard, from the option
        res = await bob.iq("<vCard xmlns='vcard-temp'/>", to=VJUD)
        assert res.findtext("{vcard-temp}vCard/{vcard-temp}FN") == "The directory"
        assert res.findtext("{vcard-temp}vCard/{vcard-temp}URL") == "https://localhost/people"
        await bob.close()

    run(on())
    assert "mod_vcard.search" not in srv.log  # no "option not supported" warning


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_search_as_ejabberd_matches(make_server: MakeServer, db: str) -> None:
    srv = _server(make_server, db, {"search": True, "matches": 2},
                  hosts=("localhost", "other.test"),
                  config={"host_config": {"other.test": {"modules": {
                      "mod_vcard": {"search": True, "search_all_hosts": False}}}}})
    users = ("alice", "alfred", "anna", "pat", "quinn", "zed")
    for u in users:
        srv.register(u, "secret")
    srv.register("zoe", "secret", "other.test")
    srv.start()

    async def main() -> None:
        p = {u: await Peer(srv.c2s, u).login(presence=False, roster=False) for u in users}
        await p["alice"].iq(ALICE, "set")
        await p["alfred"].iq(card("Alfred", "Hitchcock", "hitch", "alfred@film.example"), "set")
        await p["anna"].iq(card("Anna", "Karenina", "anya"), "set")
        await p["pat"].iq(card("Pat", "Percent", "a%b"), "set")
        await p["quinn"].iq(card("Quinn", "Under", "axb_"), "set")
        zoe = await Peer(srv.c2s, "zoe", host="other.test").login(presence=False, roster=False)
        await zoe.iq(card("Zoe", "Liddell", "zo"), "set")
        me = p["zed"]   # zed has no vCard: not in the directory

        # discovery
        res = await me.iq(f"<query xmlns='{ITEMS}'/>", to="localhost")
        assert disco_items(res)[VJUD] == "vCard User Search"
        res = await me.iq(f"<query xmlns='{INFO}'/>", to=VJUD)
        ident = res.find(f"{{{INFO}}}query/{{{INFO}}}identity")
        assert ident is not None and (ident.get("category"), ident.get("type"),
                                      ident.get("name")) == ("directory", "user",
                                                             "vCard User Search")
        feats = {f.get("var") for f in res.iter(f"{{{INFO}}}feature")}
        assert {SEARCH, "vcard-temp"} <= feats
        res = await me.iq(f"<query xmlns='{ITEMS}'/>", to=VJUD)
        assert disco_items(res) == {}
        res = await me.iq("<vCard xmlns='vcard-temp'/>", to=VJUD)
        assert res.findtext("{vcard-temp}vCard/{vcard-temp}FN") == "vCard User Search"

        # the search form: instructions, legacy fields, a data form
        res = await me.iq(f"<query xmlns='{SEARCH}'/>", to=VJUD)
        q = res.find(f"{Q}query")
        assert q is not None and q.findtext(f"{Q}instructions")
        assert all(q.find(f"{Q}{n}") is not None for n in ("first", "last", "nick", "email"))
        x = q.find(f"{DATA}x")
        assert x is not None and x.get("type") == "form"
        vars_ = [f.get("var") for f in x.findall(f"{DATA}field")]
        assert vars_ == ["FORM_TYPE"] + FORM_FIELDS
        assert x.findtext(f"{DATA}field[@var='FORM_TYPE']/{DATA}value") == SEARCH

        # a data-form result: reported fields, and every field of the entry
        res = await me.iq(form(last="Liddell"), "set", to=VJUD)
        x = res.find(f"{Q}query/{DATA}x")
        assert x is not None
        reported = x.find(f"{DATA}reported")
        assert reported is not None
        assert [f.get("var") for f in reported.findall(f"{DATA}field")] == RESULT_FIELDS
        assert items(res)[0] == {
            "jid": "alice@localhost", "fn": "Alice Liddell", "last": "Liddell",
            "first": "Alice", "middle": "Pleasance", "nick": "Ally", "bday": "1852-05-04",
            "ctry": "UK", "locality": "Oxford", "email": "alice@wonder.land",
            "orgname": "Wonderland", "orgunit": "Tea Party"}
        # search_all_hosts (the default): zoe of other.test too, sorted by host
        assert await find(me, last="liddell") == ["alice@localhost", "zoe@other.test"]
        # ... but other.test's directory searches other.test only
        assert await find(me, "vjud.other.test", last="liddell") == ["zoe@other.test"]

        # exact, case-insensitive, on every field; all fields must match
        for values, found in [
                ({"user": "ALICE"}, ["alice@localhost"]),
                ({"user": "ali"}, []),
                ({"fn": "alice liddell"}, ["alice@localhost"]),
                ({"first": "ALICE", "last": "liddell"}, ["alice@localhost"]),
                ({"first": "alice", "last": "hitchcock"}, []),
                ({"middle": "pleasance"}, ["alice@localhost"]),
                ({"nick": "ally"}, ["alice@localhost"]),
                ({"bday": "1852-05-04"}, ["alice@localhost"]),
                ({"ctry": "uk", "locality": "OXFORD"}, ["alice@localhost"]),
                ({"email": "ALICE@wonder.land"}, ["alice@localhost"]),
                ({"email": "alfred@film.example"}, ["alfred@localhost"]),   # EMAIL's text
                ({"orgname": "wonderland", "orgunit": "tea party"}, ["alice@localhost"]),
                ({"nick": "a%b"}, ["pat@localhost"]),
                ({"nick": "a_b"}, []),
                ({"first": "zed"}, [])]:
            assert await find(me, **values) == found, values
        # a value ending in * matches the beginning; % and _ are no wildcards
        for values, found in [
                ({"first": "ali*"}, ["alice@localhost"]),
                ({"first": "Alf*", "last": "h*"}, ["alfred@localhost"]),
                ({"nick": "A%*"}, ["pat@localhost"]),
                ({"nick": "a_*"}, []),
                ({"nick": "axb_*"}, ["quinn@localhost"]),
                ({"nick": "%*"}, []),
                ({"email": "alice@*"}, ["alice@localhost"])]:
            assert await find(me, **values) == found, values
        # at most `matches` (2) results
        assert await find(me, first="a*") == ["alfred@localhost", "alice@localhost"]
        # an empty search (no value, or a lone *) finds nobody: allow_return_all is false
        assert await find(me) == []
        assert await find(me, first="", last="*") == []

        # legacy fields in, legacy items out
        res = await me.iq(legacy(last="LIDDELL"), "set", to="vjud.other.test")
        q = res.find(f"{Q}query")
        assert q is not None and q.find(f"{DATA}x") is None
        got = [(i.get("jid"), [(c.tag.split("}")[1], c.text or "") for c in i])
               for i in q.findall(f"{Q}item")]
        assert got == [("zoe@other.test", [("first", "Zoe"), ("last", "Liddell"),
                                           ("nick", "zo"), ("email", "")])]
        res = await me.iq(legacy(first="ALI*", nick="ally"), "set", to=VJUD)
        assert [i.get("jid") for i in res.iter(f"{Q}item")] == ["alice@localhost"]
        res = await me.iq(legacy(email="alice@wonder.land"), "set", to=VJUD)
        assert res.findtext(f"{Q}query/{Q}item/{Q}email") == "alice@wonder.land"
        res = await me.iq(legacy(), "set", to=VJUD)
        q = res.find(f"{Q}query")
        assert q is not None and len(q) == 0

        # a changed vCard changes the entry
        await p["alice"].iq(card("Alice", "Hargreaves", "mrs-h"), "set")
        assert await find(me, last="liddell") == ["zoe@other.test"]
        assert await find(me, nick="mrs-h") == ["alice@localhost"]
        assert await find(me, nick="ally") == []

        # errors
        res = await me.iq(f"<query xmlns='{SEARCH}'><x xmlns='jabber:x:data' type='form'/>"
                          "</query>", "set", to=VJUD, ok=False)
        assert error_condition(res) == "bad-request"
        res = await me.iq("<query xmlns='jabber:iq:version'/>", to=VJUD, ok=False)
        assert error_condition(res) == "service-unavailable"
        for peer in (*p.values(), zoe):
            await peer.close()

    run(main())
    # a deleted account leaves the directory
    srv.ctl("unregister", "alfred", "localhost")

    async def after() -> None:
        me = await Peer(srv.c2s, "zed").login(presence=False, roster=False)
        assert await find(me, first="alf*") == []
        assert await find(me, first="a*") == ["alice@localhost", "anna@localhost"]
        await me.close()

    run(after())


def test_allow_return_all_and_slixmpp(make_server: MakeServer) -> None:
    """allow_return_all: an empty search lists everybody (matches: infinity); the older
    option ``host`` names the service; slixmpp's xep_0055 searches with a data form."""
    srv = _server(make_server, vcard={"search": True, "allow_return_all": True,
                                      "matches": "infinity", "host": "people.@HOST@"})
    for u in ("alice", "bob", "carol"):
        srv.register(u, "secret")
    srv.start()

    async def main() -> None:
        peers = [await Peer(srv.c2s, u).login(presence=False, roster=False)
                 for u in ("alice", "bob", "carol")]
        await peers[0].iq(ALICE, "set")
        await peers[1].iq(card("Bob", "Builder", "bobby"), "set")
        await peers[2].iq(card("Carol", "Liddell", "caro"), "set")
        res = await peers[0].iq(f"<query xmlns='{ITEMS}'/>", to="localhost")
        assert PEOPLE in disco_items(res) and VJUD not in disco_items(res)
        assert await find(peers[0], PEOPLE) == [
            "alice@localhost", "bob@localhost", "carol@localhost"]
        res = await peers[0].iq(legacy(), "set", to=PEOPLE)
        assert len(res.findall(f"{Q}query/{Q}item")) == 3
        for peer in peers:
            await peer.close()

        bob = await Slix("bob@localhost/s", "secret",
                         plugins=("xep_0030", "xep_0004", "xep_0055")).login(srv.c2s)
        iq = bob.plugin["xep_0055"].make_search_iq(ito=PEOPLE)
        iq["search"]["form"].add_field("last", value="liddell")
        res = await iq.send()
        got = res["search"]["form"]
        assert got["type"] == "result"
        assert [r for r in got["reported"]] == RESULT_FIELDS
        assert [(i["jid"], i["fn"]) for i in got["items"]] == [
            ("alice@localhost", "Alice Liddell"), ("carol@localhost", "Carol Liddell")]
        await bob.logout()

    run(main())
