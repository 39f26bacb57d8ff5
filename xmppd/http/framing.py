"""Sans-IO framings of client streams carried over HTTP.

:class:`WebSocketFraming` implements RFC 7395: ``<open/>`` and ``<close/>``
in ``urn:ietf:params:xml:ns:xmpp-framing`` instead of a stream header, one
complete element per WebSocket message. It runs the regular
:class:`~xmppd.xmlstream.XMLStreamParser` (restricted XML, stanza size limit,
raw byte reuse) under a synthetic stream root, checks that each message
closes every element it opens, and turns ``<open/>``/``<close/>`` into the
stream events the c2s machine knows.

:class:`BoshFraming` implements XEP-0206: a ``<body/>`` wrapper per HTTP
request. :func:`parse_body` parses one request body (the session needs its
attributes before anything reaches the stream); the parsed events are handed
over with :meth:`BoshFraming.push`. Output is collected by the BOSH session.

Both transports need top-level stanzas to carry ``xmlns='jabber:client'``
(each message or body child stands alone): :func:`add_client_ns` adds it.
"""

from __future__ import annotations

import re
from typing import Optional

from ..xml import CLIENT_NS, STREAM_NS, Element, escape_attr, escape_text
from ..xmlstream import _START_TAG, Event, StreamClose, StreamError, StreamOpen, XMLStreamParser

FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
BOSH_NS = "http://jabber.org/protocol/httpbind"
XBOSH_NS = "urn:xmpp:xbosh"
STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
OPEN_TAG = "{%s}open" % FRAMING_NS
CLOSE_TAG = "{%s}close" % FRAMING_NS
BODY_TAG = "{%s}body" % BOSH_NS

_ROOT = ("<stream:stream xmlns='%s' xmlns:stream='%s'>" % (CLIENT_NS, STREAM_NS)).encode()
_XML_DECL = re.compile(rb"\s*<\?xml[^>]*\?>")
_STANZA_START = re.compile(rb"<(?:message|presence|iq)(?=[\s/>])")
_CLIENT_XMLNS = b" xmlns='jabber:client'"


def add_client_ns(data: bytes) -> bytes:
    """Give a serialized top-level stanza its ``xmlns='jabber:client'``.

    The serializer leaves it out (a stanza inherits the TCP stream's default
    namespace); over WebSocket and BOSH each stanza must declare it. Our
    serializer escapes ``>`` in attribute values, so the first ``>`` ends the
    start tag.
    """
    m = _STANZA_START.match(data)
    if m is None:
        return data
    end = data.find(b">")
    if data.find(b"xmlns=", 0, end) >= 0:
        return data
    i = m.end()
    return b"".join((data[:i], _CLIENT_XMLNS, data[i:]))


def stream_error_bytes(condition: str, text: Optional[str], declare: bool,
                       extra: bytes = b"") -> bytes:
    """A stream error; ``extra``: an application-specific condition element."""
    inner = "<%s xmlns='%s'/>" % (condition, STREAMS_NS)
    if text:
        inner += "<text xmlns='%s' xml:lang='en'>%s</text>" % (STREAMS_NS, escape_text(text))
    decl = " xmlns:stream='%s'" % STREAM_NS if declare else ""
    return b"<stream:error%s>%s%s</stream:error>" % (decl.encode(), inner.encode(), extra)


def _features(children: bytes) -> bytes:
    return b"".join((b"<stream:features xmlns:stream='", STREAM_NS.encode(), b"'>", children,
                     b"</stream:features>"))


class WebSocketFraming:
    """RFC 7395 framing: feed one WebSocket text message at a time."""

    def __init__(self, max_stanza_size: int = 65536) -> None:
        self.parser = XMLStreamParser(max_stanza_size)
        self._error: Optional[StreamError] = None
        self.reset()

    def reset(self) -> None:
        self.parser.reset()
        self.parser.feed(_ROOT)

    def feed(self, data: bytes) -> list[Event]:
        if self._error is not None:
            raise self._error
        if data[:1] != b"<":
            if not data.strip():
                return []  # tolerate an empty keepalive message
            m = _XML_DECL.match(data)
            data = data[m.end():] if m is not None else data.lstrip()
        elif data[:5] == b"<?xml":
            m = _XML_DECL.match(data)
            if m is not None:
                data = data[m.end():]
        if data[:2] == b"<!":  # a DTD or a comment heading the message
            raise StreamError("restricted-xml")
        if data[:14] == b"<stream:stream":
            raise StreamError("invalid-namespace", "open the stream with <open xmlns='%s'/> "
                              "(RFC 7395)" % FRAMING_NS)
        parser = self.parser
        events = parser.feed(data)
        if parser.depth != 1:
            # the parser is out of step with the messages now: stay failed
            self._error = StreamError(
                "not-well-formed", "a WebSocket message must hold complete elements (RFC 7395)")
            raise self._error
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, Element):
                tag = ev.tag
                if tag == OPEN_TAG:
                    out.append(StreamOpen(ev.attrs, CLIENT_NS, None))
                    continue
                if tag == CLOSE_TAG:
                    out.append(StreamClose())
                    continue
            out.append(ev)
        return out

    def header(self, attrs: dict[str, str]) -> bytes:
        parts = ["<open xmlns='%s'" % FRAMING_NS]
        for k, v in attrs.items():
            parts.append(" %s='%s'" % (k, escape_attr(v)))
        parts.append("/>")
        return "".join(parts).encode()

    def footer(self) -> bytes:
        return b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"

    def error(self, condition: str, text: Optional[str] = None, extra: bytes = b"") -> bytes:
        return stream_error_bytes(condition, text, True, extra)

    def features(self, children: bytes) -> bytes:
        return _features(children)


# -- BOSH -------------------------------------------------------------------

class _BodyParser(XMLStreamParser):
    """The stream parser with ``<body/>`` as its root: children are stanzas."""

    def _open_stream(self, name: str, attrs: dict[str, str],
                     decls: list[tuple[str, str]]) -> None:
        if name != BOSH_NS + " body":
            raise StreamError("bad-format", "the request is not a BOSH <body/>")
        self._pending_ns = []
        self._parser.StartNamespaceDeclHandler = None
        # stanzas may use a prefix the body declares (xmpp:, stream:): no raw reuse
        self._raw_allowed = False
        el = Element(BODY_TAG, self._attrs(attrs))
        self._stack.append(el)
        m = _START_TAG.match(self._buf, self._parser.CurrentByteIndex - self._base)
        self._mark = self._base + m.end() if m is not None else self._fed
        self._events.append(StreamOpen(el.attrs, BOSH_NS, None))


def parse_body(data: bytes, max_stanza_size: int) -> tuple[dict[str, str], list[Element]]:
    """Parse one BOSH request body into its attributes and child elements.

    Raises :class:`StreamError` (``not-well-formed``, ``restricted-xml``,
    ``policy-violation`` for an oversize stanza, ``bad-format``).
    """
    parser = _BodyParser(max_stanza_size)
    events = parser.feed(data)
    if not events or not isinstance(events[0], StreamOpen) or \
            not isinstance(events[-1], StreamClose):
        raise StreamError("not-well-formed", "the body is incomplete")
    return events[0].attrs, [e for e in events[1:-1] if isinstance(e, Element)]


class BoshFraming:
    """XEP-0206 framing. Input arrives parsed (:meth:`push`); the stream
    header, footer and errors become attributes of the session's responses.
    """

    def __init__(self) -> None:
        self.pending: list[Event] = []
        self.stream_attrs: dict[str, str] = {}
        self.error_payload: Optional[bytes] = None

    def push(self, events: list[Event]) -> None:
        self.pending.extend(events)

    def feed(self, data: bytes) -> list[Event]:
        events, self.pending = self.pending, []
        return events

    def reset(self) -> None:
        return None

    def header(self, attrs: dict[str, str]) -> bytes:
        self.stream_attrs = attrs
        return b""

    def footer(self) -> bytes:
        return b""

    def error(self, condition: str, text: Optional[str] = None, extra: bytes = b"") -> bytes:
        self.error_payload = stream_error_bytes(condition, text, True, extra)
        return b""

    def features(self, children: bytes) -> bytes:
        return _features(children)
