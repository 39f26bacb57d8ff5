"""What the delivery modules share: namespaces, delay stamps, stored XML."""

from __future__ import annotations

from typing import Optional

from ..datetimes import stamp
from ..stanza import BODY
from ..xml import Element
from ..xmlstream import parse_stanza

DELAY_NS = "urn:xmpp:delay"
DELAY = "{%s}delay" % DELAY_NS
RECEIPTS_NS = "urn:xmpp:receipts"
MARKERS_NS = "urn:xmpp:chat-markers:0"
CHATSTATES_NS = "http://jabber.org/protocol/chatstates"
HINTS_NS = "urn:xmpp:hints"
SID_NS = "urn:xmpp:sid:0"
THREAD = "{jabber:client}thread"

# payloads that alone do not make a message worth storing
_NOT_CONTENT = {CHATSTATES_NS, HINTS_NS, SID_NS, DELAY_NS, "urn:xmpp:carbons:2"}

def delay(frm: str, ts: float, reason: Optional[str] = None) -> Element:
    return Element(DELAY, {"from": frm, "stamp": stamp(ts)}, [reason] if reason else [])


def has_delay_from(el: Element, frm: str) -> bool:
    return any(isinstance(c, Element) and c.tag == DELAY and c.attrs.get("from") == frm
               for c in el.children)


def hint(el: Element, name: str) -> bool:
    tag = "{%s}%s" % (HINTS_NS, name)
    return any(isinstance(c, Element) and c.tag == tag for c in el.children)


def worth_storing(el: Element, store_empty_body: str = "unless_chat_state") -> bool:
    """XEP-0160 / XEP-0334: a body, a receipt, a marker or other content; no chat states alone.

    ``store_empty_body`` as in ejabberd: ``false`` stores only messages with a
    body, ``true`` stores anything, ``unless_chat_state`` (default) stores
    messages with some content other than chat states.
    """
    if hint(el, "no-store"):
        return False
    if hint(el, "store") or store_empty_body == "true":
        return True
    for c in el.children:
        if not isinstance(c, Element):
            continue
        if c.tag == BODY:
            return True
        if store_empty_body == "unless_chat_state" and c.ns not in _NOT_CONTENT and \
                c.tag != THREAD:
            return True  # receipts, markers, OMEMO, invitations...
    return False


def from_text(text: str) -> Element:
    """Parse one stored stanza (stored as ``str(element)``)."""
    return parse_stanza(text.encode("utf-8"))
