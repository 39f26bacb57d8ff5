"""Cluster entries: several hand-overs in one Redis stream entry, and the session
registry's view of the session entries of other nodes."""

from __future__ import annotations

from xmppd.cluster.entries import entry_payloads, join_payloads, pack_entry, split_payloads


def test_payloads_survive_packing() -> None:
    payloads = [b"D0 a@localhost/r\n<message/>", b"", b"R1\n" + bytes(range(256)) * 300,
                "K b@localhost/x\nconflict \u00e9".encode()]
    assert split_payloads(join_payloads(payloads)) == payloads
    assert split_payloads(join_payloads([])) == []


def test_a_truncated_entry_yields_only_whole_payloads() -> None:
    packed = join_payloads([b"one", b"two"])
    assert split_payloads(packed[:-1]) == [b"one"]
    assert split_payloads(packed[:3]) == []


def test_stream_entries_carry_one_or_several_payloads() -> None:
    stanzas = [b"D0 a@localhost/r\n<message id='1'/>", b"D0 b@localhost/r\n<message id='2'/>"]
    field, value = pack_entry(stanzas)
    assert field == b"z"  # NUL-separated: split in one call
    assert entry_payloads({field: value}) == stanzas
    assert pack_entry(stanzas[:1]) == (b"p", stanzas[0])
    assert entry_payloads(dict([pack_entry(stanzas[:1])])) == stanzas[:1]
    # a payload with a NUL byte (never a stanza, but the entry must not break it up)
    odd = [b"E x\nwith\0nul", b"", stanzas[0]]
    field, value = pack_entry(odd)
    assert field == b"m"
    assert entry_payloads({field: value}) == odd
    assert entry_payloads({b"other": b"?"}) == []


def test_a_remote_session_follows_its_entry_when_it_changes() -> None:
    """The registry makes one RemoteSession per entry of the backend's view; a session
    that changes on its node arrives as a new entry, and routing sees the change."""
    from xmppd.cluster.base import SessionEntry
    from xmppd.cluster.envelope import unpack
    from xmppd.cluster.redis import RedisBackend
    from xmppd.jid import JID
    from xmppd.sessions import SessionRegistry
    from xmppd.xml import Element
    from xmppd.xmlstream import parse_stanza

    backend = RedisBackend("a")
    backend._alive.add("b")
    registry = SessionRegistry(backend)
    full = JID.parse("u@localhost/phone")
    backend._add_remote(SessionEntry(full, "b", 0, True, 1.0))
    first = registry.resources(full.bare)
    assert [(s.jid, s.priority, s.node) for s in first] == [(full, 0, "b")]
    assert registry.resources(full.bare)[0] is first[0]  # made once
    assert registry.get(full) is first[0]
    backend._add_remote(SessionEntry(full, "b", 5, False, 1.0))  # new priority, away
    now = registry.resources(full.bare)
    assert [(s.priority, s.available) for s in now] == [(5, False)]
    assert registry.get(full) is now[0]

    now[0].send(Element("{jabber:client}message", {"to": str(full), "id": "m1"}))
    backend.hops = 2  # a stanza routed again: the hop count travels with it
    now[0].send(Element("{jabber:client}message", {"to": str(full), "id": "m2"}))
    sent = [unpack(op[2]) for op in backend._ops if op[0] == "xadd"]
    assert [(e.kind, e.hops, e.target) for e in sent] == [("D", 0, str(full)),
                                                          ("D", 2, str(full))]
    assert [parse_stanza(e.body).attrs["id"] for e in sent] == ["m1", "m2"]
