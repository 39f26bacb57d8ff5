"""Sans-IO incremental parser for XMPP XML streams (RFC 6120 section 4 and 11).

``XMLStreamParser.feed(bytes)`` returns a list of events: :class:`StreamOpen`,
stanza-level :class:`~xmppd.xml.Element` objects and :class:`StreamClose`.
No sockets, no asyncio: the parser can be tested with bytes alone.

Restricted XML (RFC 6120 11.1) is refused with ``restricted-xml``: DTDs,
entity declarations, comments, processing instructions and references to
undeclared entities. Nothing is ever expanded from a DTD. A stanza larger
than ``max_stanza_size`` bytes raises ``policy-violation``; malformed XML
raises ``not-well-formed``.

Each top-level element keeps the raw bytes of its inner content in
``Element.raw`` when they can be reused verbatim (no namespace prefix used
inside that was declared outside), so routing can avoid re-serializing.
"""

from __future__ import annotations

import pyexpat
import re
from dataclasses import dataclass, field
from typing import Optional, Union

from .xml import CLIENT_NS, STREAM_NS, Element

SERVER_NS = "jabber:server"
_START_TAG = re.compile(rb"<[^\s/>]+(?:\s+[^\s=/>]+\s*=\s*(?:'[^']*'|\"[^\"]*\"))*\s*(/?)>")
_WS = " \t\r\n"


class StreamError(Exception):
    """A stream-level error (RFC 6120 4.9.3); closes the stream."""

    def __init__(self, condition: str, text: Optional[str] = None) -> None:
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text


@dataclass
class StreamOpen:
    """The stream header: attributes plus the namespace declarations seen."""

    attrs: dict[str, str]
    default_ns: str
    stream_prefix: Optional[str]
    extra_ns: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamClose:
    pass


Event = Union[StreamOpen, Element, StreamClose]


class _Restricted(Exception):
    pass


_NAMES: dict[str, str] = {}  # expat name -> Clark tag, shared by all parsers


def _name(expat_name: str) -> str:
    """Map an expat name (``uri local``) to a Clark tag."""
    ns, sep, local_name = expat_name.partition(" ")
    if not sep:
        tag = "{}" + expat_name
    else:
        if ns == SERVER_NS:
            ns = CLIENT_NS
        tag = "{%s}%s" % (ns, local_name)
    if len(_NAMES) > 20000:  # bounded: names come from the network
        _NAMES.clear()
    _NAMES[expat_name] = tag
    return tag


class XMLStreamParser:
    """Incremental XML stream parser; call :meth:`reset` on stream restart."""

    def __init__(self, max_stanza_size: int = 65536) -> None:
        self.max_stanza_size = max_stanza_size
        self.reset()

    def reset(self) -> None:
        p = pyexpat.ParserCreate("UTF-8", " ")
        p.buffer_text = True
        p.buffer_size = 4096
        p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartNamespaceDeclHandler = self._ns_decl
        p.XmlDeclHandler = self._xml_decl
        for name in (
            "StartDoctypeDeclHandler", "CommentHandler", "ProcessingInstructionHandler",
            "EntityDeclHandler", "UnparsedEntityDeclHandler", "NotationDeclHandler",
            "ElementDeclHandler", "AttlistDeclHandler", "ExternalEntityRefHandler",
            "SkippedEntityHandler",
        ):
            setattr(p, name, self._restricted)
        self._parser = p
        self._stack: list[Element] = []
        self._events: list[Event] = []
        self._buf = bytearray()
        self._base = 0          # absolute stream offset of _buf[0]
        self._fed = 0           # total bytes fed to this parser
        self._mark = 0          # absolute offset where the current top-level item began
        self._stanza_start = -1
        self._raw_allowed = True
        self._pending_ns: list[tuple[str, str]] = []
        self._closed = False
        self._error: Optional[StreamError] = None

    # -- public ------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._stack)

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data`` and return the complete events it finished."""
        if self._error is not None:
            raise self._error
        if self._closed or not data:
            return []
        self._buf += data
        self._fed += len(data)
        try:
            self._parser.Parse(data, False)
        except _Restricted:
            self._fail(StreamError("restricted-xml"))
        except StreamError as e:
            self._fail(e)
        except pyexpat.ExpatError as e:
            code = e.code
            if code in (pyexpat.errors.codes[pyexpat.errors.XML_ERROR_UNDEFINED_ENTITY],
                        pyexpat.errors.codes[pyexpat.errors.XML_ERROR_RECURSIVE_ENTITY_REF]):
                self._fail(StreamError("restricted-xml"))
            self._fail(StreamError("not-well-formed", str(e)))
        events = self._events
        self._events = []
        # keep only the bytes that may still belong to a stanza
        start = self._stanza_start
        keep = start if start >= 0 else self._mark
        buf = self._buf
        cut = keep - self._base
        if cut > 0:
            del buf[:cut]
            self._base = keep
        if start < 0:
            ws = len(buf) - len(buf.lstrip())
            if ws:
                del buf[:ws]
                self._base += ws
                self._mark = self._base
            if not buf:
                self._buf = bytearray()
            if self._fed - self._mark > self.max_stanza_size:
                self._fail(StreamError("policy-violation", "stanza too large"))
        elif self._fed - start > self.max_stanza_size:
            self._fail(StreamError("policy-violation", "stanza too large"))
        return events

    def _fail(self, err: StreamError) -> None:
        self._error = err
        raise err

    # -- expat callbacks -----------------------------------------------------
    def _restricted(self, *args: object) -> None:
        raise _Restricted()

    def _xml_decl(self, version: Optional[str], encoding: Optional[str], standalone: int) -> None:
        if encoding is not None and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise StreamError("unsupported-encoding")

    def _ns_decl(self, prefix: Optional[str], uri: Optional[str]) -> None:
        # only listened to until the stream header is in
        self._pending_ns.append((prefix or "", uri or ""))

    @staticmethod
    def _attrs(attrs: dict[str, str]) -> dict[str, str]:
        out = {}
        for k, v in attrs.items():
            ns, sep, local_name = k.partition(" ")
            out["{%s}%s" % (ns, local_name) if sep else k] = v
        return out

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        stack = self._stack
        depth = len(stack)
        if depth == 1:
            self._stanza_start = self._parser.CurrentByteIndex
        elif depth == 0:
            self._open_stream(name, attrs, self._pending_ns)
            return
        tag = _NAMES.get(name) or _name(name)
        if attrs:
            for k in attrs:
                if " " in k:
                    attrs = self._attrs(attrs)
                    break
        el = Element(tag, attrs)
        if depth > 1:
            stack[-1].children.append(el)
        stack.append(el)

    def _open_stream(self, name: str, attrs: dict[str, str], decls: list[tuple[str, str]]) -> None:
        parts = name.split(" ")
        if len(parts) < 2 or parts[0] != STREAM_NS or parts[1] != "stream":
            if len(parts) >= 2 and parts[1] == "stream":
                raise StreamError("invalid-namespace")
            raise StreamError("invalid-namespace", "expected stream:stream")
        default_ns = ""
        stream_prefix: Optional[str] = None
        extra: dict[str, str] = {}
        for prefix, uri in decls:
            if prefix == "":
                default_ns = uri
            elif uri == STREAM_NS:
                stream_prefix = prefix
            else:
                extra[prefix] = uri
        self._pending_ns = []
        self._parser.StartNamespaceDeclHandler = None
        # a stanza may use a prefix the header declared: its raw bytes would not
        # stand alone, so raw reuse is off for such (rare) streams
        self._raw_allowed = not extra
        el = Element("{%s}stream" % STREAM_NS, self._attrs(attrs))
        self._stack.append(el)
        pos = self._parser.CurrentByteIndex
        m = _START_TAG.match(self._buf, pos - self._base)
        self._mark = self._base + m.end() if m is not None else self._fed
        self._events.append(StreamOpen(el.attrs, default_ns, stream_prefix, extra))

    def _end(self, name: str) -> None:
        stack = self._stack
        el = stack.pop()
        depth = len(stack)
        if depth == 1:
            start = self._stanza_start
            self._stanza_start = -1
            buf = self._buf
            m = _START_TAG.match(buf, start - self._base)
            pos = self._parser.CurrentByteIndex
            if pos - start > self.max_stanza_size:
                raise StreamError("policy-violation", "stanza too large")
            if m is None:  # cannot happen for well-formed input; be safe
                self._mark = pos
            elif m.group(1):
                self._mark = self._base + m.end()
                if self._raw_allowed:
                    el.raw = b""
            else:
                end = pos - self._base
                self._mark = pos + buf.find(b">", end) - end + 1
                if self._raw_allowed and buf.find(b"xmlns:", m.start(), m.end()) < 0:
                    raw = bytes(buf[m.end():end])
                    # the stream prefix is not declared in every framing (WebSocket)
                    if raw.find(b"stream:") < 0:
                        el.raw = raw
            self._events.append(el)
        elif depth == 0:
            self._closed = True
            self._events.append(StreamClose())

    def _chars(self, data: str) -> None:
        stack = self._stack
        if len(stack) > 1:
            children = stack[-1].children
            children.append(data)
        elif stack and data.strip(_WS):
            raise StreamError("bad-format", "text at the stream level")


class TCPFraming:
    """RFC 6120 framing: one long-lived <stream:stream> document per direction."""

    def __init__(self, max_stanza_size: int = 65536, content_ns: str = CLIENT_NS) -> None:
        self.parser = XMLStreamParser(max_stanza_size)
        self.content_ns = content_ns

    def feed(self, data: bytes) -> list[Event]:
        return self.parser.feed(data)

    def reset(self) -> None:
        self.parser.reset()

    def header(self, attrs: dict[str, str]) -> bytes:
        from .xml import escape_attr
        parts = ["<?xml version='1.0'?><stream:stream xmlns='%s' "
                 "xmlns:stream='http://etherx.jabber.org/streams'" % self.content_ns]
        for k, v in attrs.items():
            parts.append(" %s='%s'" % (k, escape_attr(v)))
        parts.append(">")
        return "".join(parts).encode()

    def footer(self) -> bytes:
        return b"</stream:stream>"

    def error(self, condition: str, text: Optional[str] = None) -> bytes:
        from .xml import escape_text
        inner = "<%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" % condition
        if text:
            inner += ("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>%s</text>"
                      % escape_text(text))
        return ("<stream:error>%s</stream:error>" % inner).encode()

    def features(self, children: bytes) -> bytes:
        return b"<stream:features>" + children + b"</stream:features>"


_FRAGMENT_HEAD = (b"<stream:stream xmlns='jabber:client' "
                  b"xmlns:stream='http://etherx.jabber.org/streams'>")


def parse_stanza(data: bytes) -> Element:
    """Parse one serialized stanza (as written to a client stream) into an element."""
    p = XMLStreamParser(len(data) + 1024)
    for ev in p.feed(_FRAGMENT_HEAD + data):
        if isinstance(ev, Element):
            return ev
    raise StreamError("not-well-formed", "incomplete stanza")
