"""Shared fan-out: one stanza serialized once, addressed to many.

:func:`shared` fills ``Element.raw`` with the serialized children of a stanza
the room built; :func:`addressed` makes a per-recipient view that differs only
in ``to`` and shares the children and their bytes. The core serializer then
writes only a new start tag per recipient and reuses the body bytes, while
sessions (and stream management, which keeps what it sent) still receive an
ordinary :class:`~xmppd.xml.Element`.
"""

from __future__ import annotations

from ..xml import CLIENT_NS, Element, escape_text, serialize


def shared(stanza: Element) -> Element:
    """Serialize the children of ``stanza`` once (the room owns ``stanza``)."""
    if stanza.raw is None:
        ns = stanza.ns
        parts = [escape_text(c).encode() if isinstance(c, str) else serialize(c, ns)
                 for c in stanza.children]
        stanza.raw = b"".join(parts)
    return stanza


def addressed(stanza: Element, to: str) -> Element:
    """``stanza`` for one recipient: new attributes, same children and bytes."""
    attrs = dict(stanza.attrs)
    attrs["to"] = to
    return Element(stanza.tag, attrs, list(stanza.children), stanza.raw)


__all__ = ["CLIENT_NS", "addressed", "shared"]
