"""Several hand-overs in one Redis stream entry: packing and unpacking."""

from __future__ import annotations

from xmppd.cluster.redis import join_payloads, split_payloads


def test_payloads_survive_packing() -> None:
    payloads = [b"D0 a@localhost/r\n<message/>", b"", b"R1\n" + bytes(range(256)) * 300,
                "K b@localhost/x\nconflict \u00e9".encode()]
    assert split_payloads(join_payloads(payloads)) == payloads
    assert split_payloads(join_payloads([])) == []


def test_a_truncated_entry_yields_only_whole_payloads() -> None:
    packed = join_payloads([b"one", b"two"])
    assert split_payloads(packed[:-1]) == [b"one"]
    assert split_payloads(packed[:3]) == []
