"""vCards (XEP-0054, mod_vcard) and private XML storage (XEP-0049, mod_private):
slixmpp clients store and read them, raw clients get the errors the XEPs name, and
both survive a restart and go with the account."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.peer import Peer, error_condition
from helpers.procs import XmppdServer

MakeServer = Callable[..., XmppdServer]
MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_vcard": {}, "mod_private": {}}
PLUGINS = ("xep_0030", "xep_0054", "xep_0049", "xep_0048")
VCARD = "{vcard-temp}vCard"
PRIVATE = "{jabber:iq:private}query"
PHOTO = bytes(range(256)) * 8   # an "image" of 2 KiB


def _server(make_server: MakeServer, db: str = "sqlite") -> XmppdServer:
    srv = make_server(db=db, modules=MODULES)
    for u in ("alice", "bob", "carol"):
        srv.register(u, "secret")
    srv.start()
    return srv


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_slixmpp_clients_publish_and_read_vcards_and_bookmarks(make_server: MakeServer,
                                                              db: str) -> None:
    srv = _server(make_server, db)

    async def publish() -> None:
        alice = await Slix("alice@localhost/a", "secret", plugins=PLUGINS).login(srv.c2s)
        card = alice.plugin["xep_0054"].make_vcard()
        card["FN"] = "Alice Liddell"
        card["NICKNAME"] = "alice"
        card["PHOTO"]["TYPE"] = "image/png"
        card["PHOTO"]["BINVAL"] = PHOTO
        await alice.plugin["xep_0054"].publish_vcard(card)
        marks = alice.plugin["xep_0048"].stanza.Bookmarks()
        marks.add_conference("tea@conference.localhost", "alice", name="Tea party",
                             autojoin=True)
        await alice.plugin["xep_0048"].set_bookmarks(marks)
        await alice.logout()

    async def read() -> None:
        bob = await Slix("bob@localhost/b", "secret", plugins=PLUGINS).login(srv.c2s)
        res = await bob.plugin["xep_0054"].get_vcard("alice@localhost", local=False)
        assert res["vcard_temp"]["FN"] == "Alice Liddell"
        assert res["vcard_temp"]["PHOTO"]["BINVAL"] == PHOTO
        await bob.logout()
        alice = await Slix("alice@localhost/a2", "secret", plugins=PLUGINS).login(srv.c2s)
        own = await alice.plugin["xep_0054"].get_vcard("alice@localhost", local=False)
        assert own["vcard_temp"]["NICKNAME"] == ["alice"]
        got = await alice.plugin["xep_0048"].get_bookmarks()
        confs = got["private"]["bookmarks"]["conferences"]
        assert [(c["jid"], c["nick"], c["name"]) for c in confs] == [
            ("tea@conference.localhost", "alice", "Tea party")]
        await alice.logout()

    run(publish())
    srv.stop()
    srv.start()   # kept in the database
    run(read())


def test_errors_and_edges(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        bob = await Peer(srv.c2s, "bob").login()
        # vCards: a user without one reads an empty vCard; nobody else may set it
        res = await bob.iq("<vCard xmlns='vcard-temp'/>", to="carol@localhost")
        card = res.find(VCARD)
        assert card is not None and len(card) == 0
        res = await bob.iq("<vCard xmlns='vcard-temp'><FN>Bob</FN></vCard>", "set",
                           to="alice@localhost", ok=False)
        assert error_condition(res) == "forbidden"
        res = await bob.iq("<vCard xmlns='vcard-temp'/>", to="nobody@localhost", ok=False)
        assert error_condition(res) == "service-unavailable"
        await bob.iq("<vCard xmlns='vcard-temp'><FN>Bob</FN></vCard>", "set")
        await bob.iq("<vCard xmlns='vcard-temp'><FN>Robert</FN></vCard>", "set",
                     to="bob@localhost")   # replaces it
        res = await alice.iq("<vCard xmlns='vcard-temp'/>", to="bob@localhost")
        assert res.findtext(f"{VCARD}/{{vcard-temp}}FN") == "Robert"

        # private XML: one's own only, by namespace
        await alice.iq("<query xmlns='jabber:iq:private'><prefs xmlns='x:prefs'><a>1</a>"
                       "</prefs><prefs xmlns='x:prefs'><b>2</b></prefs>"
                       "<other xmlns='x:other'/></query>", "set")
        res = await alice.iq("<query xmlns='jabber:iq:private'><prefs xmlns='x:prefs'/>"
                             "</query>")
        kept = res.findall(f"{PRIVATE}/{{x:prefs}}prefs")
        assert [ET.tostring(k) for k in kept] == [
            b'<ns0:prefs xmlns:ns0="x:prefs"><ns0:a>1</ns0:a></ns0:prefs>',
            b'<ns0:prefs xmlns:ns0="x:prefs"><ns0:b>2</ns0:b></ns0:prefs>']
        # a namespace set alone leaves the others
        await alice.iq("<query xmlns='jabber:iq:private'><other xmlns='x:other'>new</other>"
                       "</query>", "set")
        res = await alice.iq("<query xmlns='jabber:iq:private'><prefs xmlns='x:prefs'/>"
                             "</query>")
        assert len(res.findall(f"{PRIVATE}/{{x:prefs}}prefs")) == 2
        res = await alice.iq("<query xmlns='jabber:iq:private'><other xmlns='x:other'/>"
                             "</query>")
        assert res.findtext(f"{PRIVATE}/{{x:other}}other") == "new"
        # nothing stored: the empty element comes back
        res = await alice.iq("<query xmlns='jabber:iq:private'><none xmlns='x:none'/></query>")
        back = res.find(f"{PRIVATE}/{{x:none}}none")
        assert back is not None and len(back) == 0
        for payload, type_, to, condition in [
                ("<prefs xmlns='x:prefs'/>", "get", "alice@localhost", "forbidden"),
                ("<prefs xmlns='x:prefs'>mine</prefs>", "set", "alice@localhost", "forbidden"),
                ("", "get", None, "bad-request"),
                ("", "set", None, "not-acceptable"),
                ("<vCard xmlns='vcard-temp'/>", "set", None, "not-acceptable"),
                ("<query xmlns='jabber:iq:roster'/>", "get", None, "not-acceptable"),
                ("<a xmlns='x:a'/><b xmlns='x:b'/>", "get", None, "not-acceptable")]:
            res = await bob.iq(f"<query xmlns='jabber:iq:private'>{payload}</query>", type_,
                               to=to, ok=False)
            assert error_condition(res) == condition, (payload, type_, to)
        res = await bob.iq("<query xmlns='jabber:iq:private'><prefs xmlns='x:prefs'/></query>")
        assert len(res.find(f"{PRIVATE}/{{x:prefs}}prefs") or []) == 0  # alice's stay hers
        # both are announced
        info = await alice.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>",
                              to="localhost")
        feats = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert {"vcard-temp", "jabber:iq:private"} <= feats
        await alice.close()
        await bob.close()

    run(main())
    # an account deleted takes its vCard and private XML with it
    srv.ctl("unregister", "bob", "localhost")
    srv.register("bob", "secret")

    async def after() -> None:
        bob = await Peer(srv.c2s, "bob").login()
        res = await bob.iq("<vCard xmlns='vcard-temp'/>")
        card = res.find(VCARD)
        assert card is not None and len(card) == 0
        await bob.close()
    run(after())
