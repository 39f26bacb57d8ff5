"""The room state machine alone: stanzas in, stanzas and store effects out (no sockets, no DB)."""

from __future__ import annotations

import itertools
from typing import Optional

from xmppd.jid import JID
from xmppd.muc.config import RoomConfig
from xmppd.datetimes import parse_stamp, stamp
from xmppd.muc.history import History
from xmppd.muc.room import Outbox, Room
from xmppd.xml import Element

MUC = "http://jabber.org/protocol/muc"
USER = MUC + "#user"
ROOM = JID.parse("room@conference.example")


class Policy:
    max_users = 200
    max_users_admin_threshold = 1
    history_size = 5
    archive_expiry = 3 * 86400.0
    min_message_interval = 0.0
    min_presence_interval = 0.0
    occupant_key: Optional[bytes] = None

    def __init__(self) -> None:
        self.clock = 1_000_000.0
        self.ids = itertools.count()

    def is_service_admin(self, jid: JID) -> bool:
        return False

    def can_persist(self, jid: JID) -> bool:
        return True

    def now(self) -> float:
        return self.clock

    def new_id(self) -> str:
        return f"sid{next(self.ids)}"

    def nick_owner(self, nick: str) -> Optional[str]:
        return None


def presence(frm: str, nick: str, *, x: bool = True, type_: Optional[str] = None) -> Element:
    attrs = {"from": frm, "to": f"{ROOM}/{nick}"}
    if type_:
        attrs["type"] = type_
    return Element("{jabber:client}presence", attrs, [Element("{%s}x" % MUC)] if x else [])


def send(room: Room, el: Element) -> Outbox:
    kind = el.tag.split("}")[1]
    type_ = el.attrs.get("type") or {"message": "normal", "presence": "available"}.get(kind, "get")
    return room.handle(JID.parse(el.attrs["from"]), JID.parse(el.attrs["to"]), kind, type_, el)


def codes(el: Element) -> set[int]:
    x = el.find("{%s}x" % USER)
    return {int(s.attrs["code"]) for s in x.findall("{%s}status" % USER)} if x is not None else set()


def new_room(**cfg: object) -> Room:
    room = Room(ROOM, Policy(), RoomConfig(**cfg), fresh=True)  # type: ignore[arg-type]
    send(room, presence("owner@example/a", "Owner", x=False))   # instant room
    return room


def test_join_order_status_codes_and_subject_last() -> None:
    room = Room(ROOM, Policy(), RoomConfig(), fresh=True)
    out = send(room, presence("owner@example/a", "Owner"))
    self_p, subject = out.stanzas
    assert codes(self_p) == {110, 170, 201} and room.locked
    assert subject.find("{jabber:client}subject") is not None
    refused = send(room, presence("bob@example/b", "Bob")).stanzas[0]
    assert refused.attrs["type"] == "error" and refused.find("{jabber:client}error") is not None
    room.locked = False
    out = send(room, presence("bob@example/b", "Bob"))
    tos = [(el.attrs["from"], el.attrs["to"]) for el in out.stanzas]
    assert tos == [(f"{ROOM}/Owner", "bob@example/b"),     # existing occupants first
                   (f"{ROOM}/Bob", "owner@example/a"),     # the newcomer to the others
                   (f"{ROOM}/Bob", "bob@example/b"),       # then to itself (110)
                   (str(ROOM), "bob@example/b")]           # and the subject last
    assert codes(out.stanzas[2]) == {110, 170}
    # the owner (a moderator) sees bob's real JID; bob does not see the owner's
    assert out.stanzas[1].find("{%s}x" % USER).find("{%s}item" % USER).attrs["jid"] == "bob@example/b"
    assert "jid" not in out.stanzas[0].find("{%s}x" % USER).find("{%s}item" % USER).attrs
    assert ("joined", JID.parse("bob@example/b")) in out.effects


def test_fanout_shares_serialized_bytes_and_stamps_stanza_id() -> None:
    room = new_room()
    for i in range(3):
        send(room, presence(f"u{i}@example/r", f"u{i}"))
    msg = Element("{jabber:client}message", {"from": "u0@example/r", "to": str(ROOM),
                                             "type": "groupchat", "id": "x1"},
                  [Element("{jabber:client}body", {}, ["hi"]),
                   Element("{urn:xmpp:sid:0}stanza-id", {"id": "forged", "by": str(ROOM)})])
    out = send(room, msg)
    assert len(out.stanzas) == 4
    raws = {id(el.raw) for el in out.stanzas}
    assert len(raws) == 1 and out.stanzas[0].raw is not None      # one body, shared
    for el in out.stanzas:
        sids = el.findall("{urn:xmpp:sid:0}stanza-id")
        assert [s.attrs["id"] for s in sids] == ["sid0"]            # the forged one is gone
        assert el.attrs["id"] == "x1" and el.attrs["from"] == f"{ROOM}/u0"
        assert b"<body>hi</body>" in el.to_bytes()
    assert sorted(el.attrs["to"] for el in out.stanzas) == sorted(
        ["owner@example/a"] + [f"u{i}@example/r" for i in range(3)])
    assert [e[0] for e in out.effects] == ["archive"]


def test_occupant_limit_and_admin_threshold() -> None:
    room = new_room(max_users=2)
    send(room, presence("bob@example/b", "Bob"))
    full = send(room, presence("carol@example/c", "Carol")).stanzas[0]
    err = full.find("{jabber:client}error")
    assert err is not None and err.attrs["type"] == "wait"
    assert err.find("{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None
    room.set_affiliation("carol@example", "admin")   # admins get max_users_admin_threshold more
    ok = send(room, presence("carol@example/c", "Carol")).stanzas
    assert 110 in codes(ok[-2])


def test_nick_change_multi_session_and_bounce() -> None:
    room = new_room()
    send(room, presence("bob@example/phone", "Bob"))
    out = send(room, presence("bob@example/laptop", "Bob"))   # same account, same nick
    assert len(room.occupants) == 2 and len(room.occupants["Bob"].sessions) == 2
    assert any(codes(el) == {110, 170} and el.attrs["to"] == "bob@example/laptop"
               for el in out.stanzas)
    out = send(room, presence("bob@example/phone", "Robert", x=False))
    gone = [el for el in out.stanzas if el.attrs.get("type") == "unavailable"]
    assert gone and all(303 in codes(el) for el in gone)
    assert "Robert" in room.occupants and "Bob" not in room.occupants
    # a bounce from one device removes that device only; from the last, the occupant (333)
    err = Element("{jabber:client}message", {"from": "bob@example/phone", "to": str(ROOM),
                                             "type": "error"},
                  [Element("{jabber:client}error", {"type": "cancel"}, [
                      Element("{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable")])])
    send(room, err)
    assert list(room.occupants["Robert"].sessions) == [JID.parse("bob@example/laptop")]
    err.attrs["from"] = "bob@example/laptop"
    out = send(room, err)
    assert "Robert" not in room.occupants
    assert any(333 in codes(el) for el in out.stanzas)


def test_members_only_switch_removes_non_members_with_322() -> None:
    room = new_room()
    send(room, presence("bob@example/b", "Bob"))
    form = Element("{jabber:x:data}x", {"type": "submit"}, [
        Element("{jabber:x:data}field", {"var": "muc#roomconfig_membersonly"},
                [Element("{jabber:x:data}value", {}, ["1"])])])
    iq = Element("{jabber:client}iq", {"from": "owner@example/a", "to": str(ROOM), "type": "set",
                                       "id": "c"},
                 [Element("{%s#owner}query" % MUC, {}, [form])])
    out = send(room, iq)
    assert "Bob" not in room.occupants
    assert any(322 in codes(el) for el in out.stanzas)
    assert any(el.attrs.get("type") == "result" for el in out.stanzas)
    assert any(104 in codes(el) for el in out.stanzas)


def test_history_limits() -> None:
    h = History(10)
    t0 = 1_000_000.0
    for i in range(6):
        h.add(Element("{jabber:client}message", {"from": f"{ROOM}/n"},
                      [Element("{jabber:client}body", {}, [f"m{i}"])]), t0 + i * 10)
    now = t0 + 60

    def bodies(spec: Optional[Element]) -> list[str]:
        return [e.stanza.findtext("{jabber:client}body") or "" for e in h.select(spec, 86400, now)]
    hist = "{%s}history" % MUC
    assert bodies(None) == [f"m{i}" for i in range(6)]
    assert bodies(Element(hist, {"maxstanzas": "2"})) == ["m4", "m5"]
    assert bodies(Element(hist, {"maxstanzas": "0"})) == []
    assert bodies(Element(hist, {"seconds": "25"})) == ["m4", "m5"]
    assert bodies(Element(hist, {"since": stamp(t0 + 35)})) == ["m4", "m5"]
    one = h.entries[-1].size
    assert bodies(Element(hist, {"maxchars": str(one * 2)})) == ["m4", "m5"]
    assert h.select(None, 15, now) == [h.entries[-1]]   # retention applies to history too
    assert parse_stamp("2024-01-02T03:04:05Z") == 1704164645.0


OID = "{urn:xmpp:occupant-id:0}occupant-id"


def oids(el: Element) -> list[str]:
    return [o.attrs["id"] for o in el.findall(OID)]


def test_occupant_ids_stable_per_user_and_room_never_forged() -> None:
    """XEP-0421: one id per real bare JID and room, on every presence and message the
    room sends for the occupant (also history and private messages); a client's own
    <occupant-id/> is replaced, and another room gives the same user another id."""
    from xmppd.muc import info

    policy = Policy()
    policy.occupant_key = b"k" * 32
    room = Room(ROOM, policy, RoomConfig(), fresh=True)  # type: ignore[arg-type]
    send(room, presence("owner@example/a", "Owner", x=False))
    assert "urn:xmpp:occupant-id:0" in info.features(room)
    forged = Element(OID, {"id": "owner-s-id"})
    join = presence("bob@example/phone", "Bob")
    join.children.append(forged)
    out = send(room, join)
    bob_id = {i for el in out.stanzas if el.attrs["from"] == f"{ROOM}/Bob" for i in oids(el)}
    owner_id = {i for el in out.stanzas if el.attrs["from"] == f"{ROOM}/Owner" for i in oids(el)}
    assert len(bob_id) == 1 and len(owner_id) == 1 and bob_id != owner_id
    assert "owner-s-id" not in bob_id
    assert all(len(oids(el)) == 1 for el in out.stanzas if el.tag.endswith("presence"))
    # another device, a new nickname: the same id
    out = send(room, presence("bob@example/laptop", "Bob"))
    out = send(room, presence("bob@example/phone", "Robert", x=False))
    assert {i for el in out.stanzas for i in oids(el)} == bob_id
    # a message: the room's id, not the forged one; kept in the join history
    msg = Element("{jabber:client}message", {"from": "bob@example/phone", "to": str(ROOM),
                                             "type": "groupchat"},
                  [Element("{jabber:client}body", {}, ["hi"]), Element(OID, {"id": "owner-s-id"})])
    out = send(room, msg)
    assert out.stanzas and all(oids(el) == sorted(bob_id) for el in out.stanzas)
    archived = [e for e in out.effects if e[0] == "archive"][0][-1]
    assert oids(archived) == sorted(bob_id)
    history = [el for el in send(room, presence("carol@example/c", "Carol")).stanzas
               if el.find("{jabber:client}body") is not None]
    assert history and oids(history[0]) == sorted(bob_id)
    # a private message carries the sender's id too
    pm = Element("{jabber:client}message", {"from": "bob@example/phone", "to": f"{ROOM}/Carol",
                                            "type": "chat"}, [Element("{jabber:client}body", {}, ["psst"])])
    out = send(room, pm)
    assert out.stanzas and oids(out.stanzas[0]) == sorted(bob_id)
    # the same user in another room of the service: another id
    other = Room(JID.parse("other@conference.example"), policy, RoomConfig(), fresh=True)  # type: ignore[arg-type]
    out = other.handle(JID.parse("bob@example/phone"), JID.parse("other@conference.example/Bob"),
                       "presence", "available",
                       Element("{jabber:client}presence", {}, [Element("{%s}x" % MUC)]))
    assert out.stanzas and set(oids(out.stanzas[0])) - bob_id
    # without a key (occupant_id: false), no ids and no feature
    plain = new_room()
    out = send(plain, presence("bob@example/phone", "Bob"))
    assert not any(oids(el) for el in out.stanzas)
    assert "urn:xmpp:occupant-id:0" not in info.features(plain)
