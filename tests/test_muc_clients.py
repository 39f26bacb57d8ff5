"""Group chat with real clients (slixmpp xep_0045/0313/0249, aioxmpp.muc) against a real server."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Iterator

import pytest
import slixmpp.exceptions
from slixmpp import JID
from slixmpp.exceptions import IqError
from conftest import run
from helpers.clients import aioxmpp_client
from helpers.muc import MUC_MODULES, SERVICE, MucSlix, codes, error_condition, raw_join
from helpers.procs import XmppdServer
from helpers.raw import RawClient

USERS = ("alice", "bob", "carol", "dave", "erin")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("muc"), modules=MUC_MODULES)
    for user in USERS:
        srv.register(user, "pw-" + user)
    srv.start()
    yield srv
    srv.stop()


async def clients(server: XmppdServer, *names: str) -> list[MucSlix]:
    out = []
    for n in names:
        out.append(await MucSlix(f"{n}@localhost/{n}-dev", "pw-" + n).login(server.c2s))
    return out


async def logout(*cs: MucSlix) -> None:
    for c in cs:
        await c.logout()


def presence_codes(p: object) -> set[int]:
    return set(p["muc"]["status_codes"])  # type: ignore[index]


def test_instant_room_join_talk_and_stanza_id(server: XmppdServer) -> None:
    room = f"lobby@{SERVICE}"

    async def main() -> None:
        alice, bob, carol = await clients(server, "alice", "bob", "carol")
        pres, subject, _, _ = await alice.join(room, "Alice")
        assert {110, 201, 170} <= presence_codes(pres)
        assert pres["muc"]["affiliation"] == "owner" and pres["muc"]["role"] == "moderator"
        # a locked (reserved) room turns others away until it is configured
        with pytest.raises(slixmpp.exceptions.PresenceError) as locked:
            await bob.join(room, "Bob")
        assert locked.value.condition == "item-not-found"
        await alice.instant(room)
        pres, _, occupants, _ = await bob.join(room, "Bob")
        assert 110 in presence_codes(pres) and 201 not in presence_codes(pres)
        # slixmpp lists every occupant it saw arrive, itself last
        assert [str(o["from"]) for o in occupants] == [f"{room}/Alice", f"{room}/Bob"]
        await carol.join(room, "Carol")
        bob.muc.set_subject(room, "Verona")
        alice.send_message(mto=room, mbody="Good morrow", mtype="groupchat")
        for c in (alice, bob, carol):
            msg = await c.next_body()
            assert msg["body"] == "Good morrow"
            assert str(msg["from"]) == f"{room}/Alice"
            sid = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
            assert sid is not None and sid.get("by") == room and sid.get("id")
        # the subject reached everyone and is given to newcomers
        dave, = await clients(server, "dave")
        _, subject, _, _ = await dave.join(room, "Dave")
        assert subject["subject"] == "Verona" and str(subject["from"]) == f"{room}/Bob"
        await logout(alice, bob, carol, dave)
    run(main())


def test_reserved_room_configuration_form(server: XmppdServer) -> None:
    room = f"council@{SERVICE}"

    async def main() -> None:
        alice, bob = await clients(server, "alice", "bob")
        await alice.join(room, "Alice")
        form = await alice.muc.get_room_config(room, timeout=10)
        assert "muc#roomconfig_membersonly" in form.get_fields()
        await alice.configure(room, **{"muc#roomconfig_roomname": "The Council",
                                       "muc#roomconfig_persistentroom": True,
                                       "muc#roomconfig_whois": "anyone"})
        info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
        feats = info["disco_info"]["features"]
        assert "muc_persistent" in feats and "muc_nonanonymous" in feats
        assert "urn:xmpp:mam:2" in feats and "http://jabber.org/protocol/muc" in feats
        assert [i[3] for i in info["disco_info"]["identities"]] == ["The Council"]
        pres, _, _, _ = await bob.join(room, "Bob")
        assert {110, 100, 170} <= presence_codes(pres)   # non-anonymous, archived
        # the room is listed by the service, the service by the host
        items = await bob.plugin["xep_0030"].get_items(jid=SERVICE, timeout=10)
        assert room in [i[0] for i in items["disco_items"]["items"]]
        host_items = await bob.plugin["xep_0030"].get_items(jid="localhost", timeout=10)
        assert SERVICE in [i[0] for i in host_items["disco_items"]["items"]]
        await logout(alice, bob)
    run(main())


def test_moderation_kick_ban_and_voice(server: XmppdServer) -> None:
    room = f"stage@{SERVICE}"

    async def main() -> None:
        alice, bob, carol = await clients(server, "alice", "bob", "carol")
        await alice.join(room, "Alice")
        await alice.configure(room, **{"muc#roomconfig_moderatedroom": True,
                                       "members_by_default": False})
        pres, _, _, _ = await bob.join(room, "Bob")
        assert pres["muc"]["role"] == "visitor"
        # a visitor has no voice
        bob.send_message(mto=room, mbody="may I?", mtype="groupchat")
        err = await asyncio.wait_for(bob.errors.get(), 10)
        assert err["error"]["condition"] == "forbidden"
        # voice request reaches the moderator, who approves it by submitting the form
        bob.muc.request_voice(room, "participant")
        form = (await asyncio.wait_for(alice.forms.get(), 10))["form"]
        assert form.get_fields()["muc#roomnick"]["value"] == "Bob"
        answer = alice.make_message(mto=room)
        reply = alice.plugin["xep_0004"].make_form(ftype="submit")
        for var in ("FORM_TYPE", "muc#role", "muc#jid", "muc#roomnick"):
            reply.add_field(var=var, value=form.get_fields()[var]["value"])
        reply.add_field(var="muc#request_allow", value="true")
        answer.append(reply)
        answer.send()
        await bob.presence_from(f"{room}/Bob", role="participant")
        bob.send_message(mto=room, mbody="thank you", mtype="groupchat")
        assert (await alice.next_body())["body"] == "thank you"
        # revoke voice again, explicitly
        await alice.muc.set_role(room, "Bob", "visitor", timeout=10)
        await bob.presence_from(f"{room}/Bob", role="visitor")
        # kick: status 307 for the kicked one, who may come back
        await carol.join(room, "Carol")
        await alice.muc.set_role(room, "Carol", "none", reason="too loud", timeout=10)
        p = await carol.presence_from(f"{room}/Carol", "unavailable")
        assert {110, 307} <= presence_codes(p)
        await carol.join(room, "Carol")
        # ban: status 301, and a banned user cannot enter
        await alice.muc.set_affiliation(room, "outcast", jid="carol@localhost", reason="banned",
                                        timeout=10)
        p = await carol.presence_from(f"{room}/Carol", "unavailable")
        assert {110, 301} <= presence_codes(p)
        with pytest.raises(slixmpp.exceptions.PresenceError) as banned:
            await carol.join(room, "Carol")
        assert banned.value.condition == "forbidden"
        outcasts = await alice.muc.get_affiliation_list(room, "outcast", timeout=10)
        assert [str(j) for j in outcasts] == ["carol@localhost"]
        # a participant may not kick
        with pytest.raises(slixmpp.exceptions.IqError) as denied:
            await bob.muc.set_role(room, "Alice", "none", timeout=10)
        assert denied.value.condition in ("forbidden", "not-allowed")
        await logout(alice, bob, carol)
    run(main())


def test_members_only_and_password_rooms(server: XmppdServer) -> None:
    members = f"family@{SERVICE}"
    secret = f"vault@{SERVICE}"

    async def main() -> None:
        alice, bob, carol = await clients(server, "alice", "bob", "carol")
        await alice.join(members, "Alice")
        await alice.configure(members, **{"muc#roomconfig_membersonly": True})
        with pytest.raises(slixmpp.exceptions.PresenceError) as e:
            await bob.join(members, "Bob")
        assert e.value.condition == "registration-required"
        await alice.muc.set_affiliation(members, "member", jid="bob@localhost", timeout=10)
        await bob.join(members, "Bob")
        # removing membership removes the occupant (321)
        await alice.muc.set_affiliation(members, "none", jid="bob@localhost", timeout=10)
        p = await bob.presence_from(f"{members}/Bob", "unavailable")
        assert 321 in presence_codes(p)

        await alice.join(secret, "Alice")
        await alice.configure(secret, **{"muc#roomconfig_passwordprotectedroom": True,
                                         "muc#roomconfig_roomsecret": "sesame"})
        with pytest.raises(slixmpp.exceptions.PresenceError) as e:
            await carol.join(secret, "Carol", password="wrong")
        assert e.value.condition == "not-authorized"
        await carol.join(secret, "Carol", password="sesame")
        await logout(alice, bob, carol)
    run(main())


def test_invitations_mediated_and_direct(server: XmppdServer) -> None:
    room = f"party@{SERVICE}"

    async def main() -> None:
        alice, bob, carol = await clients(server, "alice", "bob", "carol")
        await alice.join(room, "Alice")
        await alice.configure(room, **{"muc#roomconfig_membersonly": True})
        alice.muc.invite(room, "bob@localhost", reason="join us")
        inv = await asyncio.wait_for(bob.invites.get(), 10)
        assert str(inv["from"]) == room
        assert inv["muc"]["invite"]["from"] == "alice@localhost"
        assert inv["muc"]["invite"]["reason"] == "join us"
        # the invitation made bob a member of the members-only room
        await bob.join(room, "Bob")
        bob.muc.decline(room, "alice@localhost", reason="busy")  # declines flow back too
        dec = await asyncio.wait_for(alice.declines.get(), 10)
        assert dec["muc"]["decline"]["from"] == "bob@localhost"
        # XEP-0249: client to client, through the server unchanged
        alice.plugin["xep_0249"].send_invitation("carol@localhost", room, reason="come")
        direct = await asyncio.wait_for(carol.direct_invites.get(), 10)
        assert str(direct["groupchat_invite"]["jid"]) == room
        assert direct["groupchat_invite"]["reason"] == "come"
        await logout(alice, bob, carol)
    run(main())


def test_occupant_limit_service_unavailable(server: XmppdServer) -> None:
    room = f"small@{SERVICE}"

    async def main() -> None:
        alice, bob, carol = await clients(server, "alice", "bob", "carol")
        await alice.join(room, "Alice")
        await alice.configure(room, **{"muc#roomconfig_maxusers": "2"})
        await bob.join(room, "Bob")
        with pytest.raises(slixmpp.exceptions.PresenceError) as full:
            await carol.join(room, "Carol")
        assert full.value.condition == "service-unavailable"
        assert full.value.etype == "wait"
        await logout(alice, bob, carol)
    run(main())


def test_order_preserved_with_several_senders(server: XmppdServer) -> None:
    room = f"busy@{SERVICE}"
    per_sender = 40

    async def main() -> None:
        cs = await clients(server, *USERS)
        await cs[0].join(room, "u0")
        await cs[0].instant(room)
        for i, c in enumerate(cs[1:], 1):
            await c.join(room, f"u{i}")

        async def burst(i: int, c: MucSlix) -> None:
            for n in range(per_sender):
                c.send_message(mto=room, mbody=f"{i}:{n}", mtype="groupchat")
                if n % 10 == 0:
                    await asyncio.sleep(0)
        await asyncio.gather(*(burst(i, c) for i, c in enumerate(cs)))
        total = per_sender * len(cs)
        seen = []
        for c in cs:
            got = [(await c.next_body(20))["body"] for _ in range(total)]
            seen.append(got)
        assert all(s == seen[0] for s in seen), "occupants saw different orders"
        for i in range(len(cs)):
            mine = [b for b in seen[0] if b.startswith(f"{i}:")]
            assert mine == [f"{i}:{n}" for n in range(per_sender)]
        await logout(*cs)
    run(main(), timeout=120)


def test_offline_member_catches_up_through_archive(server: XmppdServer) -> None:
    room = f"group@{SERVICE}"

    async def main() -> None:
        alice, bob = await clients(server, "alice", "bob")
        await alice.join(room, "Alice")
        await alice.configure(room, **{"muc#roomconfig_membersonly": True,
                                       "muc#roomconfig_persistentroom": True})
        await alice.muc.set_affiliation(room, "member", jid="bob@localhost", timeout=10)
        await bob.join(room, "Bob")
        alice.send_message(mto=room, mbody="before", mtype="groupchat")
        last_seen = await bob.next_body()
        last_id = last_seen.xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
        await bob.logout()  # bob goes offline; the room keeps him as a member
        for n in range(5):
            alice.send_message(mto=room, mbody=f"missed {n}", mtype="groupchat")
        for n in range(5):
            await alice.next_body()
        bob2, = await clients(server, "bob")
        # what bob missed, after the last message he saw (XEP-0313 at the room JID)
        bodies = []
        async for m in bob2.plugin["xep_0313"].iterate(jid=room, rsm={"max": 2, "after": last_id}):
            bodies.append(m["mam_result"]["forwarded"]["stanza"]["body"])
        assert bodies == [f"missed {n}" for n in range(5)]
        # the join history gives the last ones too
        _, _, _, history = await bob2.join(room, "Bob", maxstanzas=3)
        assert [h["body"] for h in history] == ["missed 2", "missed 3", "missed 4"]
        assert all(h["delay"]["from"] == room for h in history)
        await logout(alice, bob2)
    run(main())


def test_receipts_markers_and_private_messages(server: XmppdServer) -> None:
    room = f"ticks@{SERVICE}"

    async def main() -> None:
        a = RawClient(server.c2s)
        b = RawClient(server.c2s)
        await a.login("alice", "pw-alice", "raw")
        await b.login("bob", "pw-bob", "raw")
        await raw_join(a, room, "Alice")
        await a.send(f"<iq type='set' to='{room}' id='i'><query xmlns='http://jabber.org/protocol/"
                     f"muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")
        await a.recv_until(lambda e: e.get("id") == "i")
        await raw_join(b, room, "Bob")
        marker = ("<displayed xmlns='urn:xmpp:chat-markers:0' id='m-1'/>"
                  "<received xmlns='urn:xmpp:receipts' id='m-1'/>")
        await b.send(f"<message to='{room}' type='groupchat' id='mk'>{marker}</message>")
        got = await a.recv_until(lambda e: e.get("id") == "mk")
        assert got.get("from") == f"{room}/Bob"
        assert got.find("{urn:xmpp:chat-markers:0}displayed").get("id") == "m-1"
        assert got.find("{urn:xmpp:receipts}received").get("id") == "m-1"
        # a private message, with a receipt request, reaches only its addressee
        await a.send(f"<message to='{room}/Bob' type='chat' id='pm'><body>psst</body>"
                     f"<request xmlns='urn:xmpp:receipts'/></message>")
        pm = await b.recv_until(lambda e: e.get("id") == "pm")
        assert pm.get("from") == f"{room}/Alice" and pm.get("type") == "chat"
        assert pm.find("{urn:xmpp:receipts}request") is not None
        assert pm.find("{http://jabber.org/protocol/muc#user}x") is not None
        # XEP-0410 self-ping is answered by the room itself
        await b.send(f"<iq type='get' to='{room}/Bob' id='sp'><ping xmlns='urn:xmpp:ping'/></iq>")
        pong = await b.recv_until(lambda e: e.get("id") == "sp")
        assert pong.get("type") == "result"
        await a.close()
        await b.close()
    run(main())


def test_nick_modified_by_service_210_and_conflict(server: XmppdServer) -> None:
    room = f"names@{SERVICE}"

    async def main() -> None:
        a = RawClient(server.c2s)
        b = RawClient(server.c2s)
        await a.login("alice", "pw-alice", "raw210")
        await b.login("bob", "pw-bob", "raw210")
        pres = await raw_join(a, room, "  Alice  ")
        assert pres.get("from") == f"{room}/Alice"
        assert {110, 201, 210} <= codes(pres)
        await a.send(f"<iq type='set' to='{room}' id='i'><query xmlns='http://jabber.org/protocol/"
                     f"muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")
        await a.recv_until(lambda e: e.get("id") == "i")
        err = await raw_join(b, room, "Alice")
        assert err.get("type") == "error" and error_condition(err) == "conflict"
        await a.close()
        await b.close()
    run(main())


def test_destroy_with_alternate_venue(server: XmppdServer) -> None:
    room = f"doomed@{SERVICE}"

    async def main() -> None:
        alice, bob = await clients(server, "alice", "bob")
        await alice.join(room, "Alice")
        await alice.instant(room)
        await bob.join(room, "Bob")
        await alice.muc.destroy(room, reason="moving", altroom=f"newplace@{SERVICE}", timeout=10)
        p = await bob.presence_from(f"{room}/Bob", "unavailable")
        destroy = p.xml.find("{http://jabber.org/protocol/muc#user}x/"
                             "{http://jabber.org/protocol/muc#user}destroy")
        assert destroy is not None and destroy.get("jid") == f"newplace@{SERVICE}"
        with pytest.raises(slixmpp.exceptions.IqError) as gone:
            await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert gone.value.condition == "item-not-found"
        await logout(alice, bob)
    run(main())


def test_aioxmpp_muc(server: XmppdServer) -> None:
    import aioxmpp
    import aioxmpp.muc
    room_jid = aioxmpp.JID.fromstr(f"aio@{SERVICE}")

    async def main() -> None:
        a = aioxmpp_client("alice@localhost/aio", "pw-alice", server.c2s)
        b = aioxmpp_client("bob@localhost/aio", "pw-bob", server.c2s)
        async with a.connected(), b.connected():
            muc_a = a.summon(aioxmpp.MUCClient)
            muc_b = b.summon(aioxmpp.MUCClient)
            room_a, fut = muc_a.join(room_jid, "Alice")
            await asyncio.wait_for(fut, 10)
            # aioxmpp clients configure through the owner form
            form = aioxmpp.muc.ConfigurationForm.from_xso(await muc_a.get_room_config(room_jid))
            form.roomname.value = "aio room"
            await muc_a.set_room_config(room_jid, form.render_reply())
            room_b, fut = muc_b.join(room_jid, "Bob")
            await asyncio.wait_for(fut, 10)
            received: asyncio.Queue[aioxmpp.Message] = asyncio.Queue()
            room_b.on_message.connect(lambda msg, member, source, **kw: received.put_nowait(msg))
            msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
            msg.body[None] = "from aioxmpp"
            room_a.send_message(msg)
            got = await asyncio.wait_for(received.get(), 10)
            while got.body.any() != "from aioxmpp":
                got = await asyncio.wait_for(received.get(), 10)
            assert got.from_ == room_jid.replace(resource="Alice")
            assert sorted(m.nick for m in room_b.members) == ["Alice", "Bob"]
            await room_b.leave()
    run(main())


def test_occupant_ids_xep_0421(server: XmppdServer) -> None:
    """slixmpp's xep_0421 sees one occupant id per user in a room, across nicknames and
    devices, unrelated to the user's id in another room; a forged one is replaced."""
    room, other = f"ids@{SERVICE}", f"ids2@{SERVICE}"

    async def main() -> None:
        alice, bob = await clients(server, "alice", "bob")
        bob2 = await MucSlix("bob@localhost/bob-tablet", "pw-bob").login(server.c2s)
        info = await alice.plugin["xep_0030"].get_info(jid=SERVICE, timeout=10)
        assert "urn:xmpp:occupant-id:0" in info["disco_info"]["features"]
        await alice.join(room, "Alice")
        await alice.instant(room)
        # (slixmpp's xep_0421 has_feature fails on its own disco result: ask disco)
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert "urn:xmpp:occupant-id:0" in info["disco_info"]["features"]
        pres, _, occupants, _ = await bob.join(room, "Bob")
        bob_id = pres["occupant-id"]["id"]
        alice_id = occupants[0]["occupant-id"]["id"]
        assert bob_id and alice_id and bob_id != alice_id and len(bob_id) <= 128
        pres, _, _, _ = await bob2.join(room, "Bob")
        assert pres["occupant-id"]["id"] == bob_id
        # a message with a forged id arrives with the sender's own
        msg = bob.make_message(mto=room, mbody="it is me", mtype="groupchat")
        msg["occupant-id"]["id"] = alice_id
        msg.send()
        got = await alice.next_body()
        assert got["body"] == "it is me" and got["occupant-id"]["id"] == bob_id
        assert len(got.xml.findall("{urn:xmpp:occupant-id:0}occupant-id")) == 1
        # a new nickname keeps the id
        bob.send_presence(pto=f"{room}/Robert")
        while True:
            p = await asyncio.wait_for(alice.muc_presences.get(), 10)
            if str(p["from"]) == f"{room}/Robert":
                break
        assert p["occupant-id"]["id"] == bob_id
        # another room: another id for the same user
        await alice.join(other, "Alice")
        await alice.instant(other)
        pres, _, _, _ = await bob.join(other, "Bob")
        assert pres["occupant-id"]["id"] not in (bob_id, "")
        await logout(alice, bob, bob2)
    run(main())


def test_moderators_retract_messages_xep_0425(server: XmppdServer) -> None:
    """slixmpp's xep_0425: a moderator takes a message back; everybody is told, the
    archive and the join history keep a tombstone; others may not."""
    room = f"moderated@{SERVICE}"

    async def main() -> None:
        alice, bob, carol = await clients(server, "alice", "bob", "carol")
        await alice.join(room, "Alice")
        await alice.configure(room, **{"muc#roomconfig_persistentroom": True})
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert "urn:xmpp:message-moderate:1" in info["disco_info"]["features"]
        await bob.join(room, "Bob")
        await carol.join(room, "Carol")
        bob.send_message(mto=room, mbody="buy cheap potions", mtype="groupchat")
        spam = await alice.next_body()
        sid = spam.xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
        bob.send_message(mto=room, mbody="sorry", mtype="groupchat")
        await alice.next_body()
        # a participant may not
        with pytest.raises(IqError) as err:
            await carol.plugin["xep_0425"].moderate(JID(room), sid, "no", timeout=10)
        assert err.value.condition == "forbidden"
        await alice.plugin["xep_0425"].moderate(JID(room), sid, "spam", timeout=10)
        for c in (alice, bob, carol):
            m = await asyncio.wait_for(c.moderated.get(), 10)
            assert str(m["from"]) == room and m["retract"]["id"] == sid
            assert str(m["retract"]["moderated"]["by"]) == f"{room}/Alice"
            assert m["retract"]["reason"] == "spam"
        # the archive keeps a tombstone, the other message as it was
        found = {}
        async for m in carol.plugin["xep_0313"].iterate(jid=room, rsm={"max": 10}):
            fwd = m["mam_result"]["forwarded"]["stanza"]
            found[m["mam_result"]["id"]] = fwd
        assert found[sid]["body"] == ""
        assert found[sid].xml.find("{urn:xmpp:message-retract:1}retracted") is not None
        assert "sorry" in [f["body"] for f in found.values()]
        # the join history no longer has the body either
        dave, = await clients(server, "dave")
        _, _, _, history = await dave.join(room, "Dave")
        assert [h["body"] for h in history if h["body"]] == ["sorry"]
        # once is enough
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0425"].moderate(JID(room), sid, "again", timeout=10)
        assert err.value.condition == "item-not-found"

        # XEP-0424: an author takes back their own message: relayed, and the archive keeps
        # a tombstone; somebody else's retraction of it is relayed but changes nothing
        bob.send_message(mto=room, mbody="oops", mtype="groupchat")
        oops = (await alice.next_body()).xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
        carol.plugin["xep_0424"].send_retraction(JID(room), oops, mtype="groupchat")
        await alice.next_body()   # (the fallback body)
        await asyncio.sleep(0.5)
        async for m in dave.plugin["xep_0313"].iterate(jid=room, rsm={"max": 20}):
            if m["mam_result"]["id"] == oops:
                assert m["mam_result"]["forwarded"]["stanza"]["body"] == "oops"
        bob.plugin["xep_0424"].send_retraction(JID(room), oops, mtype="groupchat")
        await alice.next_body()
        kept = {}
        for _ in range(50):
            kept = {}
            async for m in dave.plugin["xep_0313"].iterate(jid=room, rsm={"max": 20}):
                kept[m["mam_result"]["id"]] = m["mam_result"]["forwarded"]["stanza"]
            if kept[oops]["body"] == "":
                break
            await asyncio.sleep(0.1)
        assert kept[oops].xml.find("{urn:xmpp:message-retract:1}retracted") is not None
        await logout(alice, bob, carol, dave)
    run(main())


def test_moderation_first_version_requests_xep_0425_0_2(server: XmppdServer) -> None:
    """Clients of XEP-0425's first version (Converse.js) send the request in a
    fastening; the notice carries both versions' forms."""
    room = f"moderated0@{SERVICE}"

    async def main() -> None:
        alice, bob = await clients(server, "alice", "bob")
        await alice.join(room, "Alice")
        await alice.instant(room)
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert "urn:xmpp:message-moderate:0" in info["disco_info"]["features"]
        await bob.join(room, "Bob")
        bob.send_message(mto=room, mbody="rude words", mtype="groupchat")
        sid = (await alice.next_body()).xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
        iq = alice.make_iq_set(ito=room)
        iq.xml.append(ET.fromstring(
            f"<apply-to xmlns='urn:xmpp:fasten:0' id='{sid}'>"
            "<moderate xmlns='urn:xmpp:message-moderate:0'>"
            "<retract xmlns='urn:xmpp:message-retract:0'/><reason>rude</reason>"
            "</moderate></apply-to>"))
        await iq.send(timeout=10)
        m = await asyncio.wait_for(bob.moderated.get(), 10)
        old = m.xml.find("{urn:xmpp:fasten:0}apply-to/{urn:xmpp:message-moderate:0}moderated")
        assert old is not None and old.get("by") == f"{room}/Alice"
        assert old.find("{urn:xmpp:message-retract:0}retract") is not None
        assert old.findtext("{urn:xmpp:message-moderate:0}reason") == "rude"
        assert m["retract"]["id"] == sid
        await logout(alice, bob)
    run(main())
