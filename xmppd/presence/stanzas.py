"""Small stanza helpers shared by the presence modules."""

from __future__ import annotations

from typing import Optional

from ..datetimes import stamp
from ..stanza import PRESENCE
from ..xml import CLIENT_NS, Element, serialize, start_tag

IDLE_NS = "urn:xmpp:idle:1"
IDLE = "{%s}idle" % IDLE_NS
STATUS = "{jabber:client}status"


def freeze(el: Element) -> Element:
    """Serialize the children of an element we built once, so fan-out reuses the bytes.

    Only for elements this code owns and will not change the children of again.
    """
    if el.raw is None:
        if not el.children:
            el.raw = b""
        else:
            full = serialize(el, CLIENT_NS)
            head = len(start_tag(el, CLIENT_NS).encode("utf-8"))
            tail = len(el.name.encode("utf-8")) + 3
            el.raw = full[head:-tail]
    return el


def presence(type: Optional[str], frm: str, to: Optional[str] = None) -> Element:
    attrs = {"from": frm}
    if to is not None:
        attrs["to"] = to
    if type is not None:
        attrs["type"] = type
    return Element(PRESENCE, attrs)


def idle(since: float) -> Element:
    """XEP-0319 ``<idle since=.../>``."""
    return Element(IDLE, {"since": stamp(since, millis=False)})

