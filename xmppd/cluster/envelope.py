"""How a stanza travels to another node: the recipient JID, then the bytes."""

from __future__ import annotations

from ..jid import JID
from ..xml import Element


def pack(to: JID, stanza: Element) -> bytes:
    return str(to).encode() + b"\n" + stanza.to_bytes()


def unpack(payload: bytes) -> tuple[str, bytes]:
    head, _, body = payload.partition(b"\n")
    return head.decode(), body
