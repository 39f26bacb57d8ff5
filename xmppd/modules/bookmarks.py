"""Group chat bookmarks kept the same in private XML and in PEP (XEP-0402 section 5,
``urn:xmpp:bookmarks:1#compat``), for mod_private.

Older clients (Pidgin, older Gajim) keep their bookmarks as one
``<storage xmlns='storage:bookmarks'/>`` in private XML (XEP-0048 over XEP-0049);
Conversations, Dino and newer Gajim keep one PEP item per room in
``urn:xmpp:bookmarks:1`` (XEP-0402). When the account has PEP (mod_pubsub):

- a storage stored by a client is published item by item: new and changed rooms
  are published (the node is created private, ``whitelist``, keeping every item,
  as XEP-0402 asks), rooms no longer listed are retracted, unchanged ones are left
  alone (no notification);
- a room published or retracted by a client in PEP rewrites the private storage
  from the PEP items, keeping its ``url`` bookmarks (which XEP-0402 dropped).
"""

from __future__ import annotations

from typing import Optional

from ..jid import JID, JIDError
from ..xml import Child, Element

STORAGE = "storage:bookmarks"
NS2 = "urn:xmpp:bookmarks:1"
COMPAT = NS2 + "#compat"
# the node's options when the conversion creates it (XEP-0402 section 3)
NODE_OPTIONS = {"access_model": "whitelist", "persist_items": True,
                "send_last_published_item": "never"}


def _true(value: Optional[str]) -> bool:
    return value in ("1", "true")


def _conference(src: Element, src_ns: str, dst_ns: str, attrs: dict[str, str]) -> Element:
    """A ``conference`` of one namespace in the other: name, autojoin, nick, password."""
    attrs["autojoin"] = "true" if _true(src.attrs.get("autojoin")) else "false"
    if src.attrs.get("name"):
        attrs["name"] = src.attrs["name"]
    children: list[Child] = []
    for tag in ("nick", "password"):
        text = src.findtext("{%s}%s" % (src_ns, tag))
        if text:
            children.append(Element("{%s}%s" % (dst_ns, tag), None, [text]))
    return Element("{%s}conference" % dst_ns, attrs, children)


def to_item(conf: Element) -> Optional[tuple[str, Element]]:
    """A storage's ``conference`` as an XEP-0402 item: (room JID, payload)."""
    try:
        room = str(JID.parse(conf.attrs.get("jid", "")).bare)
    except JIDError:
        return None
    return room, _conference(conf, STORAGE, NS2, {})


def to_conference(room: str, item: Element) -> Element:
    """An XEP-0402 item as a storage's ``conference``."""
    return _conference(item, NS2, STORAGE, {"jid": room})


def items_of_storage(storage: Element) -> dict[str, Element]:
    out: dict[str, Element] = {}
    for conf in storage.findall("{%s}conference" % STORAGE):
        found = to_item(conf)
        if found is not None:
            out[found[0]] = found[1]
    return out


def storage_of(items: dict[str, Element], old: Optional[Element]) -> Element:
    """The storage for the PEP items, with the ``url`` bookmarks of the old one."""
    children: list[Child] = [to_conference(room, items[room]) for room in sorted(items)]
    if old is not None:
        children += old.findall("{%s}url" % STORAGE)
    return Element("{%s}storage" % STORAGE, None, children)


def same(a: Element, b: Element) -> bool:
    return a.to_bytes() == b.to_bytes()
