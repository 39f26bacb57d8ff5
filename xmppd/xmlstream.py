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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn, Optional, Union

from .xml import CLIENT_NS, STREAM_NS, Element, escape_attr, escape_text

SERVER_NS = "jabber:server"
COMPONENT_NS = "jabber:component:accept"  # external components (XEP-0114)
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


def _restricted(*args: object) -> NoReturn:
    """The handler of DTDs, comments, processing instructions and entities."""
    raise _Restricted()


_NAMES: dict[str, str] = {}  # expat name -> Clark tag, shared by all parsers


def _name(expat_name: str) -> str:
    """Map an expat name (``uri local``) to a Clark tag."""
    ns, sep, local_name = expat_name.partition(" ")
    if not sep:
        tag = "{}" + expat_name
    else:
        if ns == SERVER_NS or ns == COMPONENT_NS:
            ns = CLIENT_NS
        tag = "{%s}%s" % (ns, local_name)
    if len(_NAMES) > 20000:  # bounded: names come from the network
        _NAMES.clear()
    _NAMES[expat_name] = tag
    return tag


def _start_tag_end(buf: Union[bytes, bytearray], begin: int) -> int:
    """Offset just past the ``>`` of the (well-formed) start tag at ``begin``.

    Attribute values may hold ``>``: the first ``>`` ends the tag when the
    quotes before it are balanced and of one kind (the usual case, three
    scans in C); anything else goes to the regular expression.
    """
    gt = buf.find(b">", begin)
    if gt < 0:
        return -1
    sq = buf.count(b"'", begin, gt)
    dq = buf.count(b'"', begin, gt)
    if not (sq & 1 or dq & 1 or (sq and dq)):
        return gt + 1
    m = _START_TAG.match(buf, begin)
    return -1 if m is None else m.end()


class XMLStreamParser:
    """Incremental XML stream parser; call :meth:`reset` on stream restart."""

    __slots__ = ("max_stanza_size", "_parser", "_stack", "_events", "_buf", "_base", "_fed",
                 "_mark", "_stanza_start", "_raw_allowed", "_pending_ns", "_closed", "_error",
                 "_header")

    def __init__(self, max_stanza_size: int = 65536) -> None:
        self.max_stanza_size = max_stanza_size
        self.reset()

    def _new_parser(self) -> pyexpat.XMLParserType:
        p = pyexpat.ParserCreate("UTF-8", " ")
        p.buffer_text = True
        p.buffer_size = 4096
        p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartNamespaceDeclHandler = self._ns_decl
        p.XmlDeclHandler = self._xml_decl
        # (one chained assignment: a parser is made for every stream and restart)
        p.StartDoctypeDeclHandler = p.CommentHandler = p.ProcessingInstructionHandler = \
            p.EntityDeclHandler = p.UnparsedEntityDeclHandler = p.NotationDeclHandler = \
            p.ElementDeclHandler = p.AttlistDeclHandler = p.ExternalEntityRefHandler = \
            p.SkippedEntityHandler = _restricted
        return p

    def reset(self) -> None:
        # None while released (see release); typed as always there for subclasses
        self._parser: pyexpat.XMLParserType = self._new_parser()
        self._stack: list[Element] = []
        self._events: list[Event] = []
        self._buf: Union[bytes, bytearray] = b""
        self._base = 0          # absolute stream offset of _buf[0]
        self._fed = 0           # total bytes fed to this parser
        self._mark = 0          # absolute offset where the current top-level item began
        self._stanza_start = -1
        self._raw_allowed = True
        self._pending_ns: list[tuple[str, str]] = []
        self._closed = False
        self._error: Optional[StreamError] = None
        self._header: Optional[bytes] = None  # the stream's start tag, to rebuild the parser

    def release(self) -> bool:
        """Free the expat parser (about 10 KiB) of a stream idle between stanzas.

        The next :meth:`feed` builds a new one and re-feeds the stream's own
        start tag to it first, so namespaces and prefixes are as before and
        nothing is emitted for it. Returns whether the parser is released.
        """
        if self._parser is None:
            return True
        if self._closed or self._error is not None or self._header is None or \
                not self.between_stanzas:
            return False
        self._parser = None  # type: ignore[assignment]
        return True

    def _rebuild(self) -> pyexpat.XMLParserType:
        header = self._header
        assert header is not None
        p = self._new_parser()
        p.StartNamespaceDeclHandler = None
        p.StartElementHandler = None  # the stream element is on the stack already
        p.Parse(header, False)
        p.StartElementHandler = self._start
        n = len(header)
        self._base = self._fed = self._mark = n
        self._parser = p
        return p

    # -- public ------------------------------------------------------------
    @property
    def between_stanzas(self) -> bool:
        """Inside the stream, with no part of a stanza pending."""
        return len(self._stack) == 1 and not self._buf and self._stanza_start < 0

    @property
    def depth(self) -> int:
        return len(self._stack)

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data`` and return the complete events it finished."""
        if self._error is not None:
            raise self._error
        if self._closed or not data:
            return []
        parser = self._parser
        if parser is None:
            parser = self._rebuild()
        if self._buf:
            self._buf += data  # type: ignore[operator]
        else:
            # the common case: nothing pending, so the callbacks read ``data``
            # itself (no copy); only an unfinished tail is kept afterwards
            self._buf = data
        self._fed += len(data)
        try:
            parser.Parse(data, False)
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
        if events:
            self._events = []
        # keep only the bytes that may still belong to a stanza
        start = self._stanza_start
        keep = start if start >= 0 else self._mark
        buf = self._buf
        cut = keep - self._base
        if cut >= len(buf):
            # everything consumed (keep is then the end of what was fed)
            self._base += len(buf)
            self._buf = b""
            return events
        if cut > 0:
            buf = self._buf = bytearray(memoryview(buf)[cut:])
            self._base = keep
        elif type(buf) is bytes:
            buf = self._buf = bytearray(buf)
        if start < 0:
            ws = len(buf) - len(buf.lstrip())
            if ws:
                del buf[:ws]  # type: ignore[union-attr]
                self._base += ws
                self._mark = self._base
            if self._fed - self._mark > self.max_stanza_size:
                self._fail(StreamError("policy-violation", "stanza too large"))
        elif self._fed - start > self.max_stanza_size:
            self._fail(StreamError("policy-violation", "stanza too large"))
        return events

    def _fail(self, err: StreamError) -> None:
        self._error = err
        raise err

    # -- expat callbacks -----------------------------------------------------
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
        # a namespaced attribute is the only kind of key with a space in it
        if attrs and " " in "".join(attrs):
            attrs = self._attrs(attrs)
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
        parser = self._parser
        parser.StartNamespaceDeclHandler = None
        # a stanza may use a prefix the header declared: its raw bytes would not
        # stand alone, so raw reuse is off for such (rare) streams
        self._raw_allowed = not extra
        el = Element("{%s}stream" % STREAM_NS, self._attrs(attrs))
        self._stack.append(el)
        pos = parser.CurrentByteIndex
        m = _START_TAG.match(self._buf, pos - self._base)
        self._mark = self._base + m.end() if m is not None else self._fed
        self._header = bytes(m.group(0)) if m is not None else None
        self._events.append(StreamOpen(el.attrs, default_ns, stream_prefix, extra))

    def _end(self, name: str) -> None:
        stack = self._stack
        el = stack.pop()
        depth = len(stack)
        if depth == 1:
            start = self._stanza_start
            self._stanza_start = -1
            buf = self._buf
            base = self._base
            pos = self._parser.CurrentByteIndex
            if pos - start > self.max_stanza_size:
                raise StreamError("policy-violation", "stanza too large")
            begin = start - base
            inner = _start_tag_end(buf, begin)
            if inner < 0:  # cannot happen for well-formed input; be safe
                self._mark = pos
            elif buf[inner - 2] == 47:  # b"/": <empty/>
                self._mark = base + inner
                if self._raw_allowed:
                    el.raw = b""
            else:
                end = pos - base
                self._mark = pos + buf.find(b">", end) - end + 1
                if self._raw_allowed:
                    if buf.find(b"xmlns:", begin, inner) < 0:
                        raw = bytes(buf[inner:end])
                        # the stream prefix is not declared in every framing (WebSocket)
                        if b"stream:" not in raw:
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

    __slots__ = ("parser", "content_ns", "feed")

    def __init__(self, max_stanza_size: int = 65536, content_ns: str = CLIENT_NS) -> None:
        self.parser = XMLStreamParser(max_stanza_size)
        self.content_ns = content_ns
        # feed(data) -> events: the parser's own (one call less for every read)
        self.feed: Callable[[bytes], list[Event]] = self.parser.feed

    def reset(self) -> None:
        self.parser.reset()

    def release(self) -> bool:
        """Free parser memory while the stream is idle between stanzas."""
        return self.parser.release()

    def header(self, attrs: dict[str, str]) -> bytes:
        return ("<?xml version='1.0'?><stream:stream xmlns='%s' "
                "xmlns:stream='http://etherx.jabber.org/streams'%s>" % (
                    self.content_ns,
                    "".join([" %s='%s'" % (k, escape_attr(v)) for k, v in attrs.items()]))).encode()

    def footer(self) -> bytes:
        return b"</stream:stream>"

    def error(self, condition: str, text: Optional[str] = None, extra: bytes = b"") -> bytes:
        """A stream error; ``extra``: an application-specific condition element."""
        inner = "<%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" % condition
        if text:
            inner += ("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>%s</text>"
                      % escape_text(text))
        return b"<stream:error>%s%s</stream:error>" % (inner.encode(), extra)

    def features(self, children: bytes) -> bytes:
        return b"<stream:features>" + children + b"</stream:features>"


_FRAGMENT_HEAD = (b"<stream:stream xmlns='jabber:client' "
                  b"xmlns:stream='http://etherx.jabber.org/streams'>")


_STANZA_LIMIT = 16 * 1024 * 1024
_shared: list[XMLStreamParser] = []   # one open stream, reused: a new parser costs more


def parse_stanza(data: bytes) -> Element:
    """Parse one serialized stanza (as written to a client stream) into an element."""
    if len(data) > _STANZA_LIMIT:
        raise StreamError("policy-violation", "stanza too large")
    if _shared:
        p = _shared.pop()
    else:
        p = XMLStreamParser(_STANZA_LIMIT)
        p.feed(_FRAGMENT_HEAD)
    events = p.feed(data)  # a StreamError leaves that parser broken: not put back
    for ev in events:
        if isinstance(ev, Element):
            if len(events) == 1 and p.between_stanzas:
                _shared.append(p)  # nothing left over in it: reuse it
            return ev
    raise StreamError("not-well-formed", "incomplete stanza")


def parse_xml(text: str) -> Optional[Element]:
    """One element from its serialized text (what a store keeps); None if unreadable."""
    try:
        return parse_stanza(text.encode())
    except StreamError:
        return None
