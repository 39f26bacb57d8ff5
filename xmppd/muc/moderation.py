"""Messages taken back in a room: by a moderator (XEP-0425,
``urn:xmpp:message-moderate:1``) or by their author (XEP-0424).

The moderator's client sends the room an iq set
``<moderate id='STANZA-ID'><retract xmlns='urn:xmpp:message-retract:1'/><reason/></moderate>``
naming the message by the stanza-id the room gave it. Only occupants with the role
``moderator`` may (``forbidden``); the message must still be in the join history or
the room's archive (``item-not-found``). Then:

- every occupant gets a groupchat message from the room,
  ``<retract id='STANZA-ID'><moderated by='ROOM/NICK'>`` with the moderator's
  occupant id and the reason (XEP-0424 and XEP-0425), and the moderator an empty
  result;
- the join history and the archive keep a tombstone instead of the message: its
  addresses and its author's occupant id, and ``<retracted stamp>`` with the
  ``moderated`` element; the body is gone, also from archive searches.

An occupant's own retraction (a groupchat message with
``<retract xmlns='urn:xmpp:message-retract:1' id='STANZA-ID'/>``) is relayed as any
message; when the message it names is the same occupant's (the same occupant id, or
the same real JID in the archive), the history and the archive keep a tombstone
(``<retracted stamp>``) for it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..datetimes import stamp
from ..jid import JID
from ..stanza import StanzaError
from ..xml import Child, Element
from . import occupant_id
from .ns import STANZA_ID, q

if TYPE_CHECKING:
    from .room import Occupant, Room

NS = "urn:xmpp:message-moderate:1"
RETRACT = "urn:xmpp:message-retract:1"
MESSAGE = "{jabber:client}message"
# the first version (XEP-0425 0.2, Converse.js and older clients): the request and the
# notice wrapped in a fastening (XEP-0422); the notice carries both forms
NS0 = "urn:xmpp:message-moderate:0"
RETRACT0 = "urn:xmpp:message-retract:0"
FASTEN = "urn:xmpp:fasten:0"


def moderator(room: Room, frm: JID) -> Occupant:
    """The requesting occupant, if a moderator (``forbidden`` otherwise)."""
    occ = room.by_jid.get(frm)
    if occ is None or occ.role != "moderator":
        raise StanzaError("forbidden", "auth", "only moderators moderate messages")
    return occ


def request(query: Element) -> tuple[str, str]:
    """(stanza-id, reason) of a ``<moderate/>`` request, or of the first version's
    ``<apply-to id><moderate/></apply-to>``; ``bad-request`` if it is not one."""
    if query.tag == q(FASTEN, "apply-to"):
        sid = query.attrs.get("id")
        inner = query.find(q(NS0, "moderate"))
        if not sid or inner is None or inner.find(q(RETRACT0, "retract")) is None:
            raise StanzaError("bad-request", "modify", "moderate a stanza-id, with <retract/>")
        return sid, inner.findtext(q(NS0, "reason")) or ""
    sid = query.attrs.get("id")
    if not sid or query.find(q(RETRACT, "retract")) is None:
        raise StanzaError("bad-request", "modify", "moderate a stanza-id, with <retract/>")
    return sid, query.findtext(q(NS, "reason")) or ""


def is_request(query: Element) -> bool:
    """Is this iq payload a moderation request (either version)?"""
    return query.tag == q(NS, "moderate") or (
        query.tag == q(FASTEN, "apply-to") and query.find(q(NS0, "moderate")) is not None)


def stanza_id_of(msg: Element, room: str) -> Optional[str]:
    for c in msg.findall(STANZA_ID):
        if c.attrs.get("by") == room:
            return c.attrs.get("id")
    return None


def moderated(room: Room, occ: Occupant) -> Element:
    """``<moderated by='ROOM/NICK'>`` with the moderator's occupant id."""
    children: list[Child] = [occ.oid] if occ.oid is not None else []
    return Element(q(NS, "moderated"), {"by": f"{room.jid_str}/{occ.nick}"}, children)


def _reason(reason: str) -> list[Child]:
    return [Element(q(RETRACT, "reason"), None, [reason])] if reason else []


def notice(room: Room, sid: str, by: Element, reason: str) -> Element:
    """What the occupants get: the room says the message ``sid`` is retracted (in both
    versions' forms: each client reads the one it knows)."""
    old_form: list[Child] = [Element(q(RETRACT0, "retract"))]
    if reason:
        old_form.append(Element(q(NS0, "reason"), None, [reason]))
    return Element(MESSAGE, {"from": room.jid_str, "type": "groupchat"}, [
        Element(q(RETRACT, "retract"), {"id": sid}, [by, *_reason(reason)]),
        Element(q(FASTEN, "apply-to"), {"id": sid}, [
            Element(q(NS0, "moderated"), {"by": by.attrs["by"]}, old_form)])])


def tombstone(original: Element, by: Optional[Element], reason: str, now: float) -> Element:
    """The message as the history and the archive keep it once retracted (``by``: the
    moderator's ``moderated``, None when its author took it back)."""
    kept: list[Child] = [c for c in original.children if isinstance(c, Element)
                         and c.tag in (STANZA_ID, occupant_id.TAG)]
    inner: list[Child] = [by] if by is not None else []
    kept.append(Element(q(RETRACT, "retracted"), {"stamp": stamp(now)},
                        [*inner, *_reason(reason)]))
    return Element(original.tag, dict(original.attrs), kept)


def same_author(original: Element, occ: Occupant, room: Room) -> bool:
    """Did ``occ`` write ``original`` (a history entry)? By occupant id, else by nick."""
    mine = occ.oid.attrs.get("id") if occ.oid is not None else None
    theirs = original.find(occupant_id.TAG)
    if mine is not None and theirs is not None:
        return theirs.attrs.get("id") == mine
    return original.attrs.get("from") == f"{room.jid_str}/{occ.nick}"


def is_retracted(msg: Element) -> bool:
    return msg.find(q(RETRACT, "retracted")) is not None
