"""Group chat bookmarks kept the same in private XML (XEP-0048/0049, older clients) and
PEP native bookmarks (XEP-0402, Conversations and Dino): mod_private with mod_pubsub.
A slixmpp client stores private bookmarks; raw clients read and change the PEP side."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from conftest import run
from helpers.clients import Slix
from helpers.peer import Peer
from helpers.procs import XmppdServer

MakeServer = Callable[..., XmppdServer]
MODULES = {"mod_disco": {}, "mod_private": {}, "mod_pubsub": {}}
PUBSUB = "http://jabber.org/protocol/pubsub"
NS2 = "urn:xmpp:bookmarks:1"
PRIVATE = "jabber:iq:private"
STORAGE = "storage:bookmarks"


def _server(make_server: MakeServer) -> XmppdServer:
    srv = make_server(modules=MODULES)
    srv.register("alice", "secret")
    return srv.start()


async def pep_items(peer: Peer) -> dict[str, ET.Element]:
    res = await peer.iq(f"<pubsub xmlns='{PUBSUB}'><items node='{NS2}'/></pubsub>")
    out = {}
    for it in res.iter(f"{{{PUBSUB}}}item"):
        conf = it.find(f"{{{NS2}}}conference")
        assert conf is not None
        out[it.get("id", "")] = conf
    return out


async def private_storage(peer: Peer) -> ET.Element:
    res = await peer.iq(f"<query xmlns='{PRIVATE}'><storage xmlns='{STORAGE}'/></query>")
    storage = res.find(f"{{{PRIVATE}}}query/{{{STORAGE}}}storage")
    assert storage is not None
    return storage


def test_private_bookmarks_and_pep_bookmarks_stay_the_same(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        phone = await Peer(srv.c2s, "alice", resource="phone").login(roster=False)
        info = await phone.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>",
                              to="alice@localhost")
        assert f"{NS2}#compat" in [f.get("var") for f in info.iter(
            "{http://jabber.org/protocol/disco#info}feature")]

        # an older client keeps its bookmarks in private XML
        old = await Slix("alice@localhost/pc", "secret",
                         plugins=("xep_0030", "xep_0049", "xep_0048")).login(srv.c2s)
        marks = old.plugin["xep_0048"].stanza.Bookmarks()
        marks.add_conference("tea@conference.localhost", "Alice", name="Tea", autojoin=True)
        marks.add_conference("work@conference.localhost", "alice", name="Work")
        marks.add_url("https://example.org/", name="Example")
        await old.plugin["xep_0048"].set_bookmarks(marks)

        # a PEP client sees one item per room, as XEP-0402 has them
        items = await pep_items(phone)
        assert sorted(items) == ["tea@conference.localhost", "work@conference.localhost"]
        tea = items["tea@conference.localhost"]
        assert (tea.get("name"), tea.get("autojoin"), tea.findtext(f"{{{NS2}}}nick")) == (
            "Tea", "true", "Alice")
        assert items["work@conference.localhost"].get("autojoin") == "false"
        # the node was made private and keeps every item
        cfg = await phone.iq(f"<pubsub xmlns='{PUBSUB}#owner'><configure node='{NS2}'/>"
                             "</pubsub>")
        fields = {f.get("var"): f.findtext("{jabber:x:data}value")
                  for f in cfg.iter("{jabber:x:data}field")}
        assert fields["pubsub#access_model"] == "whitelist"
        assert int(fields["pubsub#max_items"] or 0) > 1

        # the PEP client adds a room and removes one: the private storage follows,
        # with the URL bookmark kept
        await phone.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{NS2}'>"
                       "<item id='club@conference.localhost'>"
                       f"<conference xmlns='{NS2}' name='Club' autojoin='1'><nick>Al</nick>"
                       "</conference></item></publish></pubsub>", type="set")
        await phone.iq(f"<pubsub xmlns='{PUBSUB}'><retract node='{NS2}'>"
                       "<item id='work@conference.localhost'/></retract></pubsub>", type="set")
        got = await old.plugin["xep_0048"].get_bookmarks()
        confs = got["private"]["bookmarks"]["conferences"]
        assert sorted((c["jid"], c["name"], c["autojoin"], c["nick"]) for c in confs) == [
            ("club@conference.localhost", "Club", True, "Al"),
            ("tea@conference.localhost", "Tea", True, "Alice")]
        assert [u["url"] for u in got["private"]["bookmarks"]["urls"]] == ["https://example.org/"]

        # the older client stores its list again without the tea room: retracted in PEP,
        # the unchanged club room is left alone
        storage = await private_storage(phone)
        tea_el = next(c for c in storage if c.get("jid") == "tea@conference.localhost")
        storage.remove(tea_el)
        await phone.iq(f"<query xmlns='{PRIVATE}'>{ET.tostring(storage).decode()}</query>",
                       type="set")
        assert sorted(await pep_items(phone)) == ["club@conference.localhost"]
        await old.logout()
        await phone.close()
    run(main())
