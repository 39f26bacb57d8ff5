"""How stanzas and control messages travel between nodes.

A payload is one line of header, a newline, then a body:

- ``D<hops> <full JID>``: deliver the stanza in the body to that local session;
- ``R<hops>``: route the stanza in the body on the receiving node (rooms, bare JIDs);
- ``K <full JID>``: end that local session, the body is the reason (cluster-wide
  resource conflict, kick from an admin on another node);
- ``E <name>``: a cluster event for the modules (``cluster/event/<name>``), the body
  is its argument (e.g. whose roster changed, so other nodes reload their copy).

``hops`` counts how often a stanza was forwarded, so two nodes whose views
briefly disagree cannot bounce it back and forth forever.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ..jid import JID
from ..xml import Element

MAX_HOPS = 3


class Envelope(NamedTuple):
    kind: str      # "D", "R", "K" or "E"
    hops: int
    target: str    # full JID for D and K, the event name for E, "" for R
    body: bytes


def header(to: JID, hops: int = 0) -> bytes:
    """The first line of a delivery to ``to`` (with its newline): the stanza follows."""
    return b"D%d %s\n" % (hops, str(to).encode())


def deliver(to: JID, stanza: Element, hops: int = 0) -> bytes:
    return header(to, hops) + stanza.to_bytes()


def route(stanza: Element, hops: int = 0) -> bytes:
    return b"R%d\n%s" % (hops, stanza.to_bytes())


def kick(full: JID, reason: str) -> bytes:
    return b"K %s\n%s" % (str(full).encode(), reason.encode())


def event(name: str, arg: str) -> bytes:
    return b"E %s\n%s" % (name.encode(), arg.encode())


def delivery(payload: bytes) -> Optional[tuple[bytes, int]]:
    """For a ``D`` payload: the target's full JID (UTF-8) and where the stanza starts,
    without decoding the header (read for every stanza that crosses); None otherwise."""
    if payload[:1] != b"D":
        return None
    head = payload.find(b"\n")
    return payload[payload.find(b" ", 0, head) + 1:head], head + 1


def unpack(payload: bytes) -> Envelope:
    head, _, body = payload.partition(b"\n")
    text = head.decode()
    kind = text[:1]
    rest = text[1:]
    if kind in ("K", "E"):
        return Envelope(kind, 0, rest.strip(), body)
    num, _, target = rest.partition(" ")
    try:
        hops = int(num)
    except ValueError:
        hops = MAX_HOPS
    return Envelope(kind, hops, target, body)
