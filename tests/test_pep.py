"""Personal eventing (XEP-0163 PEP, mod_pubsub): what OMEMO, avatars and bookmarks
need. slixmpp clients publish with publish-options, get notifications filtered by
their entity capabilities (+notify) and the last item when they come online; raw
clients check the access models, the errors XEP-0060 names and the owner's
operations."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from conftest import run
from helpers.clients import Slix, aioxmpp_client
from helpers.peer import Peer, befriend, error_condition
from helpers.procs import XmppdServer

MakeServer = Callable[..., XmppdServer]
MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_blocking": {}, "mod_vcard": {},
           "mod_pubsub": {"max_nodes": 6,
                          "force_node_config": {"storage:bookmarks": {"access_model": "whitelist"}}}}
PLUGINS = ("xep_0030", "xep_0004", "xep_0115", "xep_0060", "xep_0163")
DEVICES = "urn:xmpp:omemo:2:devices"
PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"


def _server(make_server: MakeServer) -> XmppdServer:
    srv = make_server(modules=MODULES)
    for u in ("alice", "bob", "carol"):
        srv.register(u, "secret")
    srv.start()
    return srv


def devices(*ids: int) -> ET.Element:
    return ET.fromstring("<devices xmlns='urn:xmpp:omemo:2'>%s</devices>"
                         % "".join(f"<device id='{i}'/>" for i in ids))


def options(client: Slix, **fields: str) -> Any:
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBSUB + "#publish-options")
    for var, value in fields.items():
        form.add_field(var="pubsub#" + var, value=value)
    return form


async def interested(jid: str, *nodes: str) -> tuple[Slix, asyncio.Queue[Any]]:
    """A slixmpp client that announces NODE+notify in its caps, and its events."""
    c = Slix(jid, "secret", plugins=PLUGINS)
    for node in nodes:
        c.plugin["xep_0163"].add_interest(node)
    events: asyncio.Queue[Any] = asyncio.Queue()
    for kind in ("publish", "retract", "delete"):
        c.add_event_handler("pubsub_" + kind, lambda m, k=kind: events.put_nowait((k, m)))
    return c, events


def _device_ids(msg: Any) -> list[str]:
    item = msg.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}item")
    return [d.get("id", "") for d in item.iter("{urn:xmpp:omemo:2}device")] if item is not None else []


def test_omemo_device_lists_travel_between_real_clients(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        a, b = await Peer(srv.c2s, "alice").login(), await Peer(srv.c2s, "bob").login()
        await befriend(a, b)
        await a.close()
        await b.close()
        bob, bob_events = await interested("bob@localhost/phone", DEVICES)
        await bob.login(srv.c2s)
        # a client without the interest gets nothing
        quiet, quiet_events = await interested("bob@localhost/desk")
        await quiet.login(srv.c2s)
        alice = await Slix("alice@localhost/a", "secret", plugins=PLUGINS).login(srv.c2s)
        await alice.plugin["xep_0060"].publish(None, DEVICES, id="current", payload=devices(1, 2),
                                               options=options(alice, access_model="open"))
        kind, msg = await asyncio.wait_for(bob_events.get(), 10)
        assert kind == "publish" and msg["from"] == "alice@localhost"
        assert _device_ids(msg) == ["1", "2"]
        # anybody reads an open node (a stranger starting an encrypted chat)
        carol = await Slix("carol@localhost/c", "secret", plugins=PLUGINS).login(srv.c2s)
        got = await carol.plugin["xep_0060"].get_items("alice@localhost", DEVICES)
        assert [i["id"] for i in got["pubsub"]["items"]] == ["current"]
        # the node is open: asking for presence access is a precondition not met
        with pytest.raises(Exception) as err:
            await alice.plugin["xep_0060"].publish(
                None, DEVICES, id="current", payload=devices(1, 2, 3),
                options=options(alice, access_model="presence"))
        assert err.value.condition == "conflict"          # type: ignore[attr-defined]
        assert err.value.iq.xml.find(f".//{{{ERRORS}}}precondition-not-met") is not None  # type: ignore[attr-defined]
        # the same options publish: an update for bob, none for the quiet client
        await alice.plugin["xep_0060"].publish(None, DEVICES, id="current", payload=devices(1, 2, 3),
                                               options=options(alice, access_model="open"))
        kind, msg = await asyncio.wait_for(bob_events.get(), 10)
        assert _device_ids(msg) == ["1", "2", "3"]
        await asyncio.sleep(0.5)
        assert quiet_events.empty()
        # bob's next client gets the last item as soon as it comes online
        later, later_events = await interested("bob@localhost/tablet", DEVICES)
        await later.login(srv.c2s)
        kind, msg = await asyncio.wait_for(later_events.get(), 10)
        assert _device_ids(msg) == ["1", "2", "3"]
        assert msg.xml.find("{urn:xmpp:delay}delay") is not None
        # a retraction is notified too
        await alice.plugin["xep_0060"].retract(None, DEVICES, "current", notify=True)
        kind, msg = await asyncio.wait_for(bob_events.get(), 10)
        assert kind == "retract"
        for c in (alice, bob, quiet, later, carol):
            await c.logout()

    run(main())


def test_access_models_errors_and_the_owners_operations(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        alice, bob = await Peer(srv.c2s, "alice").login(), await Peer(srv.c2s, "bob").login()
        carol = await Peer(srv.c2s, "carol").login()
        await befriend(alice, bob)
        info = await alice.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>",
                              to="alice@localhost")
        assert info.find(".//{http://jabber.org/protocol/disco#info}identity"
                         "[@category='pubsub'][@type='pep']") is not None
        feats = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert {PUBSUB + "#publish-options", PUBSUB + "#access-presence"} <= feats

        async def publish(who: Peer, node: str, payload: str, item: str = "",
                          ok: bool = True) -> ET.Element:
            it = f" id='{item}'" if item else ""
            return await who.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item{it}>"
                                f"{payload}</item></publish></pubsub>", "set", ok=ok)

        async def items(who: Peer, owner: str, node: str, ok: bool = True,
                        extra: str = "") -> ET.Element:
            return await who.iq(f"<pubsub xmlns='{PUBSUB}'><items node='{node}'{extra}/></pubsub>",
                                to=owner, ok=ok)

        # the default node: presence access; the item id is made up when missing
        res = await publish(alice, "http://jabber.org/protocol/mood", "<mood xmlns="
                            "'http://jabber.org/protocol/mood'><happy/></mood>")
        made = res.find(f".//{{{PUBSUB}}}item")
        assert made is not None and made.get("id")
        got = await items(bob, "alice@localhost", "http://jabber.org/protocol/mood")
        assert got.find(".//{http://jabber.org/protocol/mood}happy") is not None
        res = await items(carol, "alice@localhost", "http://jabber.org/protocol/mood", ok=False)
        assert error_condition(res) == "not-authorized"
        assert res.find(f".//{{{ERRORS}}}presence-subscription-required") is not None
        # one item kept by default: a second publish replaces the first
        await publish(alice, "http://jabber.org/protocol/mood", "<mood xmlns="
                      "'http://jabber.org/protocol/mood'><sad/></mood>", item="m2")
        got = await items(bob, "alice@localhost", "http://jabber.org/protocol/mood")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["m2"]

        # forced configuration: bookmarks stay private whatever the client asks
        await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='storage:bookmarks'><item id='current'>"
                       "<storage xmlns='storage:bookmarks'/></item></publish><publish-options>"
                       "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                       f"<value>{PUBSUB}#publish-options</value></field>"
                       "<field var='pubsub#access_model'><value>open</value></field>"
                       "</x></publish-options></pubsub>", "set")
        res = await items(bob, "alice@localhost", "storage:bookmarks", ok=False)
        assert error_condition(res) == "not-allowed"
        await items(alice, "alice@localhost", "storage:bookmarks")

        # the owner's form: more items, then the newest N
        form = await alice.iq(f"<pubsub xmlns='{PUBSUB}#owner'><configure node='notes'/></pubsub>",
                              ok=False)
        assert error_condition(form) == "item-not-found"
        await publish(alice, "notes", "<note xmlns='x:notes'>1</note>", item="n1")
        form = await alice.iq(f"<pubsub xmlns='{PUBSUB}#owner'><configure node='notes'/></pubsub>")
        fields = {f.get("var"): f.findtext("{jabber:x:data}value")
                  for f in form.iter("{jabber:x:data}field")}
        assert fields["pubsub#access_model"] == "presence" and fields["pubsub#max_items"] == "1"
        await alice.iq(f"<pubsub xmlns='{PUBSUB}#owner'><configure node='notes'>"
                       "<x xmlns='jabber:x:data' type='submit'>"
                       f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field>"
                       "<field var='pubsub#max_items'><value>10</value></field>"
                       "<field var='pubsub#access_model'><value>open</value></field>"
                       "</x></configure></pubsub>", "set")
        for n in (2, 3):
            await publish(alice, "notes", f"<note xmlns='x:notes'>{n}</note>", item=f"n{n}")
        got = await items(carol, "alice@localhost", "notes")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["n1", "n2", "n3"]
        got = await items(carol, "alice@localhost", "notes", extra=" max_items='2'")
        assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["n2", "n3"]
        res = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><items node='notes'><item id='n2'/>"
                             "</items></pubsub>", to="alice@localhost")
        assert [i.get("id") for i in res.iter(f"{{{PUBSUB}}}item")] == ["n2"]

        # errors XEP-0060 names
        for payload, type_, to, condition, app in [
                (f"<publish node='x'/>", "set", None, "bad-request", "item-required"),
                (f"<publish node='x'><item id='1'/></publish>", "set", None, "bad-request",
                 "payload-required"),
                (f"<publish><item><a xmlns='x:a'/></item></publish>", "set", None, "bad-request",
                 "nodeid-required"),
                (f"<publish node='x'><item><a xmlns='x:a'/></item></publish>", "set",
                 "alice@localhost", "forbidden", None),
                (f"<subscribe node='x' jid='bob@localhost'/>", "set", None,
                 "feature-not-implemented", "unsupported"),
                (f"<retract node='notes'><item id='nope'/></retract>", "set", None,
                 "item-not-found", None),
                (f"<items node='nothing'/>", "get", "alice@localhost", "item-not-found", None)]:
            res = await bob.iq(f"<pubsub xmlns='{PUBSUB}'>{payload}</pubsub>", type_, to=to, ok=False)
            assert error_condition(res) == condition, payload
            if app:
                assert res.find(f".//{{{ERRORS}}}{app}") is not None, payload

        # an account has a bounded number of nodes (mood, bookmarks, notes so far)
        for n in range(3):
            await publish(alice, f"extra{n}", "<x xmlns='x:x'/>")
        res = await publish(alice, "one-too-many", "<x xmlns='x:x'/>", ok=False)
        assert error_condition(res) == "not-allowed"
        assert res.find(f".//{{{ERRORS}}}max-nodes-exceeded") is not None
        await publish(alice, "extra0", "<x xmlns='x:x'>again</x>")   # an existing node: fine

        # delete: gone for everybody; a deleted account takes its nodes along
        await alice.iq(f"<pubsub xmlns='{PUBSUB}#owner'><delete node='notes'/></pubsub>", "set")
        res = await items(carol, "alice@localhost", "notes", ok=False)
        assert error_condition(res) == "item-not-found"
        await carol.close()
        await bob.close()
        await alice.close()

    run(main())
    srv.stop()
    srv.start()   # kept in the database

    async def after() -> None:
        bob = await Peer(srv.c2s, "bob").login()
        got = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='http://jabber.org/protocol/mood'/>"
                           "</pubsub>", to="alice@localhost")
        assert got.find(".//{http://jabber.org/protocol/mood}sad") is not None
        await bob.close()
    run(after())
    srv.ctl("unregister", "alice", "localhost")
    srv.register("alice", "secret")

    async def gone() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        res = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><items node='http://jabber.org/protocol/mood'/>"
                             "</pubsub>", ok=False)
        assert error_condition(res) == "item-not-found"
        await alice.close()
    run(gone())


def test_aioxmpp_avatars_over_pep_and_vcard(make_server: MakeServer) -> None:
    """XEP-0084 avatars as aioxmpp publishes them (data and metadata nodes, the vCard kept
    in step), seen by a contact's aioxmpp client through a notification and fetched."""
    import aioxmpp
    import aioxmpp.avatar
    import aioxmpp.vcard

    srv = _server(make_server)
    png = bytes(range(256)) * 4

    async def main() -> None:
        a, b = await Peer(srv.c2s, "alice", "secret").login(), await Peer(srv.c2s, "bob", "secret").login()
        await befriend(a, b)
        await a.close()
        await b.close()
        alice = aioxmpp_client("alice@localhost/aio", "secret", srv.c2s)
        bob = aioxmpp_client("bob@localhost/aio", "secret", srv.c2s)
        bob_avatars = bob.summon(aioxmpp.avatar.AvatarService)
        changed: asyncio.Queue[Any] = asyncio.Queue()
        bob_avatars.on_metadata_changed.connect(lambda jid, meta: changed.put_nowait((jid, meta)))
        async with bob.connected(), alice.connected():
            avatars = alice.summon(aioxmpp.avatar.AvatarService)
            avatars.synchronize_vcard = True   # the image in the vCard too (XEP-0153)
            aset = aioxmpp.avatar.AvatarSet()
            aset.add_avatar_image("image/png", image_bytes=png, width=16, height=16)
            await avatars.publish_avatar_set(aset)
            alice_jid = aioxmpp.JID.fromstr("alice@localhost")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            # the PEP notification (not only the vCard hash in presence) reaches bob
            while alice_jid not in bob_avatars._has_pep_avatar:
                jid, _meta = await asyncio.wait_for(changed.get(), deadline - loop.time())
                assert str(jid) == "alice@localhost"
            descriptors = await bob_avatars.get_avatar_metadata(alice_jid, require_fresh=True)
            assert descriptors and await descriptors[0].get_image_bytes() == png
            # and aioxmpp kept alice's vCard in step (mod_vcard)
            card = await bob.summon(aioxmpp.vcard.VCardService).get_vcard(alice_jid)
            assert card.get_photo_data() == png

    run(main())


def test_notifications_cross_to_contacts_on_another_server(make_server: MakeServer) -> None:
    """Federation: bob on b.test follows alice's device list on a.test. a.test learns
    bob's session and caps from the presence he sends alice, gives him the last item,
    then each new one."""
    from helpers.federation import alice_and_bob, friends_across

    a, b = alice_and_bob(make_server, {"mod_ping": {}, "mod_disco": {}, "mod_roster": {},
                                       "mod_pubsub": {}})

    async def main() -> None:
        alice, bob = await friends_across(a, b)
        await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{DEVICES}'><item id='current'>"
                       "<devices xmlns='urn:xmpp:omemo:2'><device id='1'/></devices>"
                       "</item></publish></pubsub>", "set")
        await bob.close()
        await alice.close()
        phone, events = await interested("bob@b.test/slix", DEVICES)
        phone.connect("127.0.0.1", b.c2s)
        await asyncio.wait_for(phone.started.wait(), 15)
        kind, msg = await asyncio.wait_for(events.get(), 20)   # the last item, on presence
        assert msg["from"] == "alice@a.test" and _device_ids(msg) == ["1"]
        alice = await Peer(a.c2s, "alice", resource="home2", host="a.test").login()
        await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{DEVICES}'><item id='current'>"
                       "<devices xmlns='urn:xmpp:omemo:2'><device id='1'/><device id='2'/>"
                       "</devices></item></publish></pubsub>", "set")
        kind, msg = await asyncio.wait_for(events.get(), 20)
        assert _device_ids(msg) == ["1", "2"]
        await phone.logout()
        await alice.close()

    run(main(), timeout=120)
