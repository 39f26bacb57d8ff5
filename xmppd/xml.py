"""A small, fast element model and serializer for XMPP stanzas.

Tags use Clark notation (``{namespace}local``). The stream content namespace
(``jabber:client`` on client streams, ``jabber:server`` on server streams) is
always represented internally as ``jabber:client``; the serializer writes a
top-level stanza without ``xmlns`` so it inherits whatever the target
stream's default namespace is.

Elements produced by the parser keep the raw bytes of their inner content
(``raw``). As long as nobody changes the children, serializing the element
reuses those bytes instead of walking the tree. Every mutating method clears
``raw``; code must not mutate ``children`` directly on an element it did not
create (use :meth:`Element.copy` first: copy on write).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Optional, Union

CLIENT_NS = "jabber:client"
XML_NS = "http://www.w3.org/XML/1998/namespace"
STREAM_NS = "http://etherx.jabber.org/streams"

Child = Union["Element", str]

_ESC_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ESC_ATTR = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;",
     "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
)


# str.translate with a dict is slow (about 2 us for a JID); most values need no
# escaping at all, which one regex search tells
_NEEDS_TEXT = re.compile("[&<>]").search
_NEEDS_ATTR = re.compile("[&<>'\"\n\r\t]").search


def escape_text(text: str) -> str:
    return text if _NEEDS_TEXT(text) is None else text.translate(_ESC_TEXT)


def escape_attr(value: str) -> str:
    return value if _NEEDS_ATTR(value) is None else value.translate(_ESC_ATTR)


def split_tag(tag: str) -> tuple[str, str]:
    """Return (namespace, local name) of a Clark-notation tag."""
    if tag[0] == "{":
        i = tag.index("}")
        return tag[1:i], tag[i + 1:]
    return "", tag


class Element:
    """An XML element: tag, attributes, children (elements and strings)."""

    __slots__ = ("tag", "attrs", "children", "raw")

    def __init__(
        self,
        tag: str,
        attrs: Optional[dict[str, str]] = None,
        children: Optional[list[Child]] = None,
        raw: Optional[bytes] = None,
    ) -> None:
        self.tag = tag
        self.attrs = {} if attrs is None else attrs
        self.children: list[Child] = [] if children is None else children
        self.raw = raw

    # -- reading -----------------------------------------------------------
    @property
    def ns(self) -> str:
        return split_tag(self.tag)[0]

    @property
    def name(self) -> str:
        return split_tag(self.tag)[1]

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self.attrs.get(key, default)

    @property
    def text(self) -> str:
        children = self.children
        if len(children) == 1:  # the usual case: one text node (or one element)
            c = children[0]
            return c if isinstance(c, str) else ""
        return "".join([c for c in children if isinstance(c, str)])

    def elements(self) -> Iterator[Element]:
        for c in self.children:
            if isinstance(c, Element):
                yield c

    def find(self, tag: str) -> Optional[Element]:
        for c in self.children:
            if isinstance(c, Element) and c.tag == tag:
                return c
        return None

    def findall(self, tag: str) -> list[Element]:
        return [c for c in self.children if isinstance(c, Element) and c.tag == tag]

    def findtext(self, tag: str) -> Optional[str]:
        el = self.find(tag)
        return None if el is None else el.text

    def first_child(self) -> Optional[Element]:
        for c in self.children:
            if isinstance(c, Element):
                return c
        return None

    # -- writing (copy on write: call on elements you own) ----------------
    def set(self, key: str, value: Optional[str]) -> None:
        if value is None:
            self.attrs.pop(key, None)
        else:
            self.attrs[key] = value

    def append(self, child: Child) -> Child:
        self.raw = None
        self.children.append(child)
        return child

    def add(self, tag: str, attrs: Optional[dict[str, str]] = None, text: Optional[str] = None) -> Element:
        """Append and return a new child element."""
        el = Element(tag, attrs, [text] if text else None)
        self.append(el)
        return el

    def remove(self, child: Child) -> None:
        self.raw = None
        self.children.remove(child)

    def remove_all(self, tag: str) -> None:
        kept = [c for c in self.children if not (isinstance(c, Element) and c.tag == tag)]
        if len(kept) != len(self.children):
            self.raw = None
            self.children = kept

    def copy(self) -> Element:
        """Shallow copy: new attrs and child list, shared child elements."""
        return Element(self.tag, dict(self.attrs), list(self.children), self.raw)

    def deepcopy(self) -> Element:
        return Element(
            self.tag,
            dict(self.attrs),
            [c.deepcopy() if isinstance(c, Element) else c for c in self.children],
            self.raw,
        )

    # -- output ------------------------------------------------------------
    def to_bytes(self, parent_ns: str = CLIENT_NS) -> bytes:
        return serialize(self, parent_ns)

    def __str__(self) -> str:
        return serialize(self).decode("utf-8")

    def __repr__(self) -> str:
        return f"<Element {self.tag} {self.attrs!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.tag == other.tag
            and self.attrs == other.attrs
            and _norm_children(self.children) == _norm_children(other.children)
        )

    __hash__ = None  # type: ignore[assignment]


def _norm_children(children: list[Child]) -> list[Child]:
    """Merge adjacent strings and drop empty ones (for equality)."""
    out: list[Child] = []
    for c in children:
        if isinstance(c, str):
            if not c:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + c
                continue
        out.append(c)
    return out


def _attr_name(key: str, prefixes: dict[str, str], decls: list[str]) -> str:
    if key[0] != "{":
        return key
    ns, local = split_tag(key)
    if ns == XML_NS:
        return "xml:" + local
    prefix = prefixes.get(ns)
    if prefix is None:
        prefix = "ns%d" % len(prefixes)
        prefixes[ns] = prefix
        decls.append(" xmlns:%s='%s'" % (prefix, escape_attr(ns)))
    return "%s:%s" % (prefix, local)


def start_tag(el: Element, parent_ns: str = CLIENT_NS, close: bool = False) -> str:
    """Serialize the start tag of ``el`` (``close`` makes it self-closing)."""
    tag = el.tag
    if tag[0] == "{":
        i = tag.index("}")
        ns = tag[1:i]
        local = tag[i + 1:]
    else:
        ns = ""
        local = tag
    parts = ["<", local]
    if ns != parent_ns:
        parts.append(" xmlns='%s'" % escape_attr(ns))
    prefixes: Optional[dict[str, str]] = None
    decls: list[str] = []
    needs = _NEEDS_ATTR
    for key, value in el.attrs.items():
        if needs(value) is not None:
            value = value.translate(_ESC_ATTR)
        if key[0] == "{":
            if prefixes is None:
                prefixes = {}
            key = _attr_name(key, prefixes, decls)
        parts.append(" %s='%s'" % (key, value))
    parts.extend(decls)
    parts.append("/>" if close else ">")
    return "".join(parts)


def _write(el: Element, parent_ns: str, out: list[str]) -> None:
    tag = el.tag
    ns = tag[1:tag.index("}")] if tag[0] == "{" else ""
    if not el.children:
        out.append(start_tag(el, parent_ns, True))
        return
    out.append(start_tag(el, parent_ns))
    for c in el.children:
        if isinstance(c, str):
            out.append(c if _NEEDS_TEXT(c) is None else c.translate(_ESC_TEXT))
        elif c.raw is not None:
            out.append(_raw_as_str(c, ns))
        else:
            _write(c, ns, out)
    out.append("</%s>" % split_tag(tag)[1])


def _raw_as_str(el: Element, parent_ns: str) -> str:
    raw = el.raw
    assert raw is not None
    return "%s%s</%s>" % (start_tag(el, parent_ns), raw.decode("utf-8"), split_tag(el.tag)[1])


_END_TAGS: dict[str, bytes] = {}


def _end_tag(tag: str) -> bytes:
    end = _END_TAGS.get(tag)
    if end is None:
        end = ("</%s>" % split_tag(tag)[1]).encode()
        if len(_END_TAGS) < 4096:  # bounded: tags come from the network
            _END_TAGS[tag] = end
    return end


def serialize(el: Element, parent_ns: str = CLIENT_NS) -> bytes:
    """Serialize ``el`` to UTF-8 bytes, reusing raw inner bytes where valid."""
    raw = el.raw
    if raw is not None:
        if not raw:
            return start_tag(el, parent_ns, True).encode()
        return start_tag(el, parent_ns).encode() + raw + _end_tag(el.tag)
    out: list[str] = []
    _write(el, parent_ns, out)
    return "".join(out).encode("utf-8")


def E(tag: str, attrs: Optional[dict[str, str]] = None, *children: Child) -> Element:
    """Shorthand constructor: ``E('{urn:xmpp:ping}ping')``."""
    return Element(tag, attrs or {}, [c for c in children if c is not None and c != ""])
