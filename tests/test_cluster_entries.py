"""Several hand-overs in one Redis stream entry: packing and unpacking."""

from __future__ import annotations

from xmppd.cluster.redis import entry_payloads, join_payloads, pack_entry, split_payloads


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
