"""Avatars: XEP-0398 (mod_avatar) keeps the PEP avatar (XEP-0084) and the vCard's
PHOTO (XEP-0153) the same, and mod_vcard_xupdate puts the image's hash in every
available presence. A slixmpp client publishes as Conversations does; raw clients
read the vCard, the PEP items and the presence their contacts get."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Optional

from conftest import run
from helpers.clients import Slix
from helpers.peer import Peer, befriend, is_presence
from helpers.procs import XmppdServer
from helpers.raw import RawClient

MakeServer = Callable[..., XmppdServer]
MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_avatar": {}}  # loads vCards, PEP, xupdate
PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0163", "xep_0084")
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SHA1 = hashlib.sha1(IMAGE).hexdigest()
UPDATE = "{vcard-temp:x:update}"
PUBSUB = "http://jabber.org/protocol/pubsub"
META = "urn:xmpp:avatar:metadata"
DATA = "urn:xmpp:avatar:data"


def _server(make_server: MakeServer) -> XmppdServer:
    srv = make_server(modules=MODULES)
    for u in ("alice", "bob"):
        srv.register(u, "secret")
    return srv.start()


def photo(el: ET.Element) -> Optional[str]:
    """The hash in a presence's vcard-temp:x:update (None: no photo element)."""
    p = el.find(f"{UPDATE}x/{UPDATE}photo")
    return None if p is None else (p.text or "")


async def vcard_photo(peer: Peer, of: str) -> tuple[Optional[str], Optional[bytes]]:
    res = await peer.iq("<vCard xmlns='vcard-temp'/>", to=of)
    ph = res.find("{vcard-temp}vCard/{vcard-temp}PHOTO")
    if ph is None:
        return None, None
    return ph.findtext("{vcard-temp}TYPE"), base64.b64decode(
        "".join((ph.findtext("{vcard-temp}BINVAL") or "").split()))


def test_pep_avatar_becomes_the_vcard_photo_and_the_presence_hash(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice", resource="desk").login()
        bob = await Peer(srv.c2s, "bob").login()
        await befriend(alice, bob)
        # no avatar yet: the server says so in alice's presence (an empty photo)
        await alice.send("<presence><show>away</show></presence>")
        assert photo(await bob.expect(is_presence(alice.jid))) == ""
        info = await alice.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>",
                              to="alice@localhost")
        assert "urn:xmpp:pep-vcard-conversion:0" in [
            f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")]

        # alice's phone publishes an avatar the way Conversations does (XEP-0084)
        phone = await Slix("alice@localhost/phone", "secret", plugins=PLUGINS).login(srv.c2s)
        await phone.plugin["xep_0084"].publish_avatar(IMAGE)
        await phone.plugin["xep_0084"].publish_avatar_metadata(
            items=[{"id": SHA1, "type": "image/png", "bytes": len(IMAGE)}])
        # the vCard has it now, for clients that read avatars there (group chats)
        assert await vcard_photo(bob, "alice@localhost") == ("image/png", IMAGE)
        # and alice's presence was sent again with the new hash
        while photo(await bob.expect(is_presence(alice.jid))) != SHA1:
            pass
        # every presence carries it; a directed one too (a group chat join)
        await alice.send(f"<presence to='{bob.jid}'><status>hi</status></presence>")
        assert photo(await bob.expect(is_presence(alice.jid))) == SHA1
        # a client that says "not ready" (an empty photo) is left alone
        await alice.send(f"<presence to='{bob.jid}'><x xmlns='vcard-temp:x:update'>"
                         "<photo/></x></presence>")
        assert photo(await bob.expect(is_presence(alice.jid))) == ""
        # an x without a photo is filled in
        await alice.send("<presence><x xmlns='vcard-temp:x:update'/></presence>")
        assert photo(await bob.expect(is_presence(alice.jid))) == SHA1

        # the avatar taken away (metadata without info): the vCard loses its PHOTO
        await phone.plugin["xep_0084"].stop()
        assert await vcard_photo(bob, "alice@localhost") == (None, None)
        while photo(await bob.expect(is_presence(alice.jid))) != "":
            pass
        await phone.logout()
        for p in (alice, bob):
            await p.close()
    run(main())


def test_vcard_photo_is_published_in_pep(make_server: MakeServer) -> None:
    srv = _server(make_server)

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        bob = await Peer(srv.c2s, "bob").login()
        await befriend(alice, bob)
        b64 = base64.b64encode(IMAGE).decode()
        # an older client keeps its avatar in the vCard only
        await alice.iq("<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE>"
                       f"<BINVAL>{b64}</BINVAL></PHOTO></vCard>", type="set")
        while photo(await bob.expect(is_presence(alice.jid))) != SHA1:
            pass
        # a PEP client of bob finds it where XEP-0084 says
        res = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='{META}'/></pubsub>",
                           to="alice@localhost")
        item = res.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items/{{{PUBSUB}}}item")
        assert item is not None and item.get("id") == SHA1
        inf = item.find(f"{{{META}}}metadata/{{{META}}}info")
        assert inf is not None and (inf.get("id"), inf.get("type"), inf.get("bytes")) == (
            SHA1, "image/png", str(len(IMAGE)))
        res = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='{DATA}'>"
                           f"<item id='{SHA1}'/></items></pubsub>", to="alice@localhost")
        data = res.find(f".//{{{DATA}}}data")
        assert data is not None and base64.b64decode(data.text or "") == IMAGE
        # the vCard stayed as alice sent it
        card = (await alice.iq("<vCard xmlns='vcard-temp'/>")).find("{vcard-temp}vCard")
        assert card is not None and card.findtext("{vcard-temp}FN") == "Alice"

        # a vCard stored again with the same photo publishes nothing new; one
        # without a photo leaves PEP alone
        await alice.iq("<vCard xmlns='vcard-temp'><FN>Alice L.</FN></vCard>", type="set")
        res = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='{META}'/></pubsub>",
                           to="alice@localhost")
        assert [i.get("id") for i in res.iter(f"{{{PUBSUB}}}item")] == [SHA1]
        while photo(await bob.expect(is_presence(alice.jid))) != "":
            pass

        # at the next login the hash is read from the vCard before the first presence
        await alice.iq("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>"
                       f"<BINVAL>{b64}</BINVAL></PHOTO></vCard>", type="set")
        await alice.close()
        again = await Peer(srv.c2s, "alice", resource="again").login(presence=False)
        await again.send("<presence/>")
        assert photo(await bob.expect(is_presence(again.jid))) == SHA1
        for p in (again, bob):
            await p.close()
    run(main())


async def bind_and_join(port: int, resource: str, occupant: str) -> RawClient:
    """alice logs in and sends her resource binding and a room join in one write: the
    join is handled before the server has read her avatar's hash."""
    c = RawClient(port)
    await c.connect()
    await c.open()
    await c.starttls()
    await c.auth_scram("alice", "secret")
    c._new_parser()
    await c.open()
    await c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 f"<resource>{resource}</resource></bind></iq>"
                 f"<presence to='{occupant}'><x xmlns='http://jabber.org/protocol/muc'/>"
                 "</presence>")
    return c


def test_a_group_chat_join_sent_before_the_hash_is_read_is_updated(
        make_server: MakeServer) -> None:
    """A client that joins a room in the same packet as its resource binding (before the
    server has read the avatar's hash) is shown in the room with the hash right after."""
    srv = make_server(modules={**MODULES, "mod_muc": {}})
    srv.register("alice", "secret")
    srv.register("bob", "secret")
    srv.start()
    room = "lounge@conference.localhost"

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        b64 = base64.b64encode(IMAGE).decode()
        await alice.iq("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>"
                       f"<BINVAL>{b64}</BINVAL></PHOTO></vCard>", type="set")
        await alice.close()
        bob = await Peer(srv.c2s, "bob").login()
        await bob.send(f"<presence to='{room}/bob'><x xmlns='http://jabber.org/protocol/muc'/>"
                       "</presence>")
        await bob.expect(is_presence(f"{room}/bob"))
        await bob.iq("<query xmlns='http://jabber.org/protocol/muc#owner'>"
                     "<x xmlns='jabber:x:data' type='submit'/></query>", type="set", to=room)
        # a join that fails (a room bob made and has not configured: locked) is not sent again
        await bob.send("<presence to='locked@conference.localhost/bob'>"
                       "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
        await bob.expect(is_presence("locked@conference.localhost/bob"))
        c = await bind_and_join(srv.c2s, "first", "locked@conference.localhost/alice")
        errors = 0
        while True:
            try:
                el = await c.recv(1.5)
            except TimeoutError:
                break
            errors += el.get("type") == "error"
        assert errors == 1
        await c.close()
        await asyncio.sleep(0.5)  # (the hash is forgotten with the last session)
        c = await bind_and_join(srv.c2s, "fast", f"{room}/alice")
        seen = [photo(await bob.expect(is_presence(f"{room}/alice"), timeout=10))]
        while seen[-1] != SHA1:
            seen.append(photo(await bob.expect(is_presence(f"{room}/alice"), timeout=10)))
        assert seen[0] != SHA1, seen  # (the join went out without it: the case at hand)
        await c.close()
        await bob.close()
    run(main())
