"""The client stream (RFC 6120): header, STARTTLS, SASL, bind, then stanzas.

``C2SStream`` is independent of the transport: it is fed bytes, writes bytes
through ``conn`` (TCP, WebSocket or BOSH adapters provide the same small
interface and their own framing) and hands stanzas to the router. The few
steps that must wait (credential lookup, TLS handshake) run as tasks while
the stream holds further input back, so stanza order is kept.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Optional, Protocol

from .. import tokens
from ..jid import JID, JIDError, resourceprep
from ..shaper import TokenBucket, per_second
from ..stanza import IQ, StanzaError, error_reply, iq_result
from ..xml import Element, escape_attr, escape_text, serialize
from ..xmlstream import Event, StreamClose, StreamError, StreamOpen
from . import sasl

if TYPE_CHECKING:
    import ssl

    from ..config import ListenConfig
    from ..server import Server, VirtualHost

log = logging.getLogger(__name__)

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
BIND_TAG = "{%s}bind" % BIND_NS
SESSION_TAG = "{%s}session" % SESSION_NS
STARTTLS_TAG = "{%s}starttls" % TLS_NS
SASL_PREFIX = "{%s}" % sasl.SASL_NS
SASL2_PREFIX = "{%s}" % sasl.SASL2_NS


class Framing(Protocol):
    def feed(self, data: bytes) -> list[Event]: ...
    def reset(self) -> None: ...
    def header(self, attrs: dict[str, str]) -> bytes: ...
    def footer(self) -> bytes: ...
    def error(self, condition: str, text: Optional[str] = None,
              extra: bytes = b"") -> bytes: ...
    def features(self, children: bytes) -> bytes: ...


class Connection(Protocol):
    """What a transport offers to the stream machine."""

    secure: bool
    peer_ip: str
    stream: Any  # the C2SStream fed by this connection (replaced on resumption)
    bucket: Optional[TokenBucket]  # the listener's shaper (bytes), set again at bind

    @property
    def framing(self) -> Framing: ...

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def start_tls(self, ctx: ssl.SSLContext) -> Awaitable[None]: ...
    def channel_binding(self, cb_type: str) -> Optional[bytes]: ...
    def throttle(self, delay: float) -> None: ...  # read nothing for ``delay`` seconds


# stream states
HEADER, NEGOTIATE, BIND, BOUND, CLOSED = range(5)

# features are mostly empty elements, the same for every stream: serialized once
_FEATURES: dict[tuple[Any, ...], bytes] = {}


def _feature_bytes(el: Element) -> bytes:
    if el.children:
        return serialize(el, "")
    key = (el.tag, *el.attrs.items())
    out = _FEATURES.get(key)
    if out is None:
        if len(_FEATURES) > 256:  # bounded: a caps hash changes with the modules
            _FEATURES.clear()
        out = _FEATURES[key] = serialize(el, "")
    return out


class C2SStream:
    __slots__ = (
        "server", "conn", "listen", "state", "vhost", "host", "stream_id", "jid", "jid_str",
        "priority", "available", "presence", "node", "sasl", "sasl_pending", "sasl_failures", "last_recv",
        "busy", "queue", "data", "sm", "filters", "closing", "auth_jid", "created", "rate",
        "__weakref__",
    )

    def __init__(self, server: Server, conn: Connection, listen: ListenConfig) -> None:
        self.server = server
        self.conn = conn
        self.listen = listen
        self.state = HEADER
        self.vhost: Optional[VirtualHost] = None
        self.host = ""
        self.stream_id = ""
        self.jid: JID = None  # type: ignore[assignment]  # set at bind
        self.jid_str = ""
        self.priority = 0
        self.available = False
        self.presence: Optional[Element] = None
        self.node = server.sessions.node
        self.sasl: Optional[sasl.SaslExchange] = None
        self.sasl_pending: Optional[str] = None
        self.sasl_failures = 0   # failed SASL (and SASL2) attempts on this stream
        self.last_recv = time.monotonic()
        self.created = self.last_recv
        self.busy = False
        self.queue: list[Event] = []
        self.data: dict[str, Any] = {}
        self.sm: Any = None
        self.filters: tuple[Callable[[Any, Element], Optional[Element]], ...] = ()
        self.closing = False
        self.auth_jid: Optional[JID] = None
        self.rate = per_second(listen.max_stanza_rate)

    # -- input ------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.last_recv = time.monotonic()
        if self.state == CLOSED:
            return
        try:
            events = self.conn.framing.feed(data)
        except StreamError as e:
            text = e.text
            if self.state == HEADER and data[:1] == b"\x16" and not self.conn.secure:
                # a TLS handshake record: the client expects Direct TLS (XEP-0368) here;
                # say so in the log (the client cannot read the stream error anyway)
                text = ("a TLS handshake on a port without Direct TLS: connect with "
                        "STARTTLS, or to the Direct TLS port")
            self.stream_error(e.condition, text)
            return
        rate = self.rate
        if rate is not None and self.state == BOUND and events:
            delay = rate.consume(sum(1 for e in events if isinstance(e, Element)))
            if delay > 0:
                # too many stanzas: read more slowly (TCP pushes back); drop nothing
                self.conn.throttle(delay)
        if self.busy:
            # a step is waiting: keep the order, and stop reading until it is done
            # (paused only now: most clients wait for the answer and send nothing)
            self.queue.extend(events)
            self.conn.pause_reading()
            return
        self._process(events)

    def _process(self, events: list[Event]) -> None:
        for i, ev in enumerate(events):
            if self.state == CLOSED:
                return
            try:
                pending = self._handle(ev)
            except StreamError as e:
                self.stream_error(e.condition, e.text)
                return
            if pending is not None:
                self.busy = True
                self.queue[:0] = events[i + 1:]
                asyncio.ensure_future(self._wait(pending))
                return

    async def _wait(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except StreamError as e:
            self.stream_error(e.condition, e.text)
        except Exception:
            log.exception("stream %s failed", self.stream_id)
            self.stream_error("internal-server-error")
        self.busy = False
        if self.state == CLOSED:
            return
        queued, self.queue = self.queue, []
        self.conn.resume_reading()
        if queued:
            self._process(queued)

    def _handle(self, ev: Event) -> Optional[Awaitable[None]]:
        state = self.state
        if isinstance(ev, Element):
            if state == BOUND:
                sm = self.sm
                if sm is not None and ev.tag[1:14] == "jabber:client":
                    sm.on_receive(self)  # XEP-0198: count inbound stanzas
                if ev.tag == IQ and self._bind_iq(ev):
                    return None
                if ev.tag[1:14] == "jabber:client":
                    self.server.router.from_client(self, ev)
                    return None
                return self._stream_element(ev)
            if state == NEGOTIATE:
                return self._negotiate(ev)
            if state == BIND:
                if ev.tag == IQ and self._bind_iq(ev):
                    return None
                if ev.tag[1:14] == "jabber:client":
                    raise StreamError("not-authorized", "bind a resource first")
                return self._stream_element(ev)
            raise StreamError("not-authorized")
        if isinstance(ev, StreamOpen):
            self._open(ev)
            return None
        if isinstance(ev, StreamClose):
            self.closing = True  # a clean close ends the session (no resumption)
            self.close()
            # nothing can be written after our closing tag: unregister now, so what
            # is routed to the session meanwhile bounces or is stored, not dropped
            # (the transport may take a while to close, e.g. a WebSocket handshake)
            self.connection_lost()
        return None

    # -- stream header and features ---------------------------------------
    def _open(self, ev: StreamOpen) -> None:
        server = self.server
        to = ev.attrs.get("to", "")
        host = to.lower()
        if self.host and host != self.host:
            host = ""  # a restart must keep the host
        vhost = server.hosts.get(host)
        self.stream_id = tokens.token_hex(12)
        attrs = {"id": self.stream_id, "from": vhost.name if vhost else
                 (self.host or next(iter(server.hosts))), "version": "1.0", "xml:lang": "en"}
        if self.state == HEADER or self.vhost is None:
            self.state = NEGOTIATE
        self.conn.write(self.conn.framing.header(attrs))
        if ev.default_ns != "jabber:client":
            raise StreamError("invalid-namespace", "the content namespace must be jabber:client")
        if vhost is None:
            raise StreamError("host-unknown", f"this server does not serve {to!r}")
        version = ev.attrs.get("version", "")
        try:
            major = int(version.split(".")[0])
        except ValueError:
            major = 0
        if major < 1:
            raise StreamError("unsupported-version", "XMPP 1.0 streams only")
        self.vhost = vhost
        self.host = vhost.name
        self.conn.write(self.conn.framing.features(self._features()))

    def _features(self) -> bytes:
        vhost = self.vhost
        assert vhost is not None
        parts: list[bytes] = []
        stage = "pre-auth"
        if self.state == NEGOTIATE:
            tls_needed = not self.conn.secure and self.listen.starttls_required
            if not self.conn.secure and (self.listen.starttls or self.listen.starttls_required) \
                    and self.server.certs is not None:
                parts.append(b"<starttls xmlns='%s'>%s</starttls>" % (
                    TLS_NS.encode(), b"<required/>" if tls_needed else b""))
            if not tls_needed:
                parts.append(sasl.features(self))
                parts.append(sasl.features2(self))
        else:
            stage = "post-auth"
            if self.state == BIND:   # (after SASL2 with Bind2 the stream is bound already)
                parts.append(b"<bind xmlns='%s'/>" % BIND_NS.encode())
                parts.append(b"<session xmlns='%s'><optional/></session>" % SESSION_NS.encode())
        for factory in vhost.stream_features[stage]:
            el = factory(self)
            if el is not None:
                parts.append(el if isinstance(el, bytes) else _feature_bytes(el))
        return b"".join(parts)

    # -- negotiation -------------------------------------------------------
    def _negotiate(self, el: Element) -> Optional[Awaitable[None]]:
        tag = el.tag
        if tag == STARTTLS_TAG:
            if self.conn.secure or self.server.certs is None or not (
                    self.listen.starttls or self.listen.starttls_required):
                self.conn.write(b"<failure xmlns='%s'/>" % TLS_NS.encode())
                self.close()
                return None
            return self._starttls()
        v2 = tag.startswith(SASL2_PREFIX)
        if v2 or tag.startswith(SASL_PREFIX):
            if not self.conn.secure and self.listen.starttls_required:
                raise StreamError("policy-violation", "STARTTLS is required first")
            if self.sasl is None or self.sasl.v2 != v2:
                self.sasl = sasl.SaslExchange(self, v2)
                self.sasl_pending = None
            return self.sasl.handle(el)
        if not self.conn.secure and self.listen.starttls_required:
            raise StreamError("policy-violation", "STARTTLS is required first")
        if tag == IQ:
            # in-band registration (XEP-0077, mod_register) answers before authentication
            res = self.server.hooks.fire("c2s/pre-auth-iq", self, el)
            if res is not None:
                return res if inspect.isawaitable(res) else None
        raise StreamError("not-authorized", "authenticate first")

    async def _starttls(self) -> None:
        certs = self.server.certs
        assert certs is not None
        self.conn.write(b"<proceed xmlns='%s'/>" % TLS_NS.encode())
        try:
            await self.conn.start_tls(certs.context(self.host))
        except (OSError, ConnectionError) as e:
            log.info("TLS handshake with %s failed: %s", self.conn.peer_ip, e)
            self.state = CLOSED
            self.conn.close()
            return
        self.conn.framing.reset()
        self.state = HEADER

    def authenticated(self, jid: JID) -> None:
        """SASL succeeded: the client restarts the stream."""
        self.auth_jid = jid
        self.sasl = None
        self.state = BIND
        self.conn.framing.reset()

    # -- resource binding (RFC 6120 7) -------------------------------------
    def _bind_iq(self, iq: Element) -> bool:
        child = iq.first_child()
        if child is None or iq.attrs.get("type") != "set" or iq.attrs.get("to") not in (
                None, self.host):
            return False
        if child.tag == SESSION_TAG and self.state == BOUND:
            self.send(iq_result(_strip(iq)))
            return True
        if child.tag != BIND_TAG:
            return False
        if self.state != BIND:
            self.send(error_reply(iq, StanzaError("not-allowed", text="already bound")))
            return True
        requested = child.findtext("{%s}resource" % BIND_NS)
        try:
            resource = resourceprep(requested.strip()) if requested and requested.strip() \
                else tokens.token_hex(6)
        except JIDError:
            self.send(error_reply(iq, StanzaError("bad-request", text="invalid resource")))
            return True
        release = self._hold_stanzas()
        refused = self._bind(resource)
        if refused is not None:
            release(error_reply(iq, refused).to_bytes())
            return True
        # (the answer every login gets: written directly, as the serializer would)
        release(("<iq type='result' id='%s'><bind xmlns='%s'><jid>%s</jid></bind></iq>" % (
            escape_attr(iq.attrs.get("id", "")), BIND_NS, escape_text(self.jid_str))).encode())
        self.server.hooks.fire_all("c2s/bound", self)
        return True

    def _hold_stanzas(self) -> Callable[[bytes], None]:
        """Hold the stanzas sent to this stream while it binds (an old session that the
        new one replaces hands its unacknowledged stanzas over at once): the returned
        function writes the answer to the binding, then them."""
        held: list[Element] = []

        def hold(_session: Any, stanza: Element) -> None:
            held.append(stanza)
        self.filters = (hold,) + self.filters

        def release(answer: bytes) -> None:
            self.filters = tuple(f for f in self.filters if f is not hold)
            self.write_raw(answer)
            for stanza in held:
                self.send(stanza)
        return release

    def _bind(self, resource: str) -> Optional[StanzaError]:
        """Bind ``resource`` (the caller answers, then fires ``c2s/bound``); an error
        when the account has as many sessions as ``max_user_sessions`` allows."""
        auth = self.auth_jid
        assert auth is not None
        limit = self.server.access.shaper_value("max_user_sessions", auth, self.conn.peer_ip)
        if isinstance(limit, (int, float)) and not isinstance(limit, bool):
            others = [s for s in self.server.sessions.resources(auth)
                      if s.jid.resource != resource]
            if len(others) >= limit:
                return StanzaError("resource-constraint", "wait",
                                   "too many sessions for this account")
        self.jid = JID(auth.local, auth.domain, resource, prepped=True)
        self.jid_str = str(self.jid)
        self.state = BOUND
        self._shape_for_user()
        old = self.server.sessions.add(self)
        if old is not None and old is not self:
            old.replaced()
        return None

    async def authenticated2(self, jid: JID, additional: Optional[bytes],
                             request: Element, extra: bytes = b"") -> None:
        """SASL2 succeeded (XEP-0388): no stream restart. The ``<success/>`` carries
        what ``request`` (the ``<authenticate/>``) asked for inline: a resumed session
        (XEP-0198), or a resource bound (Bind2, XEP-0386, named after the client's
        ``<tag/>``) with stream management, carbons and CSI."""
        self.auth_jid = jid
        self.sasl = None
        self.state = BIND
        agent = request.find("{%s}user-agent" % sasl.SASL2_NS)
        if agent is not None:
            self.data["user-agent"] = (agent.attrs.get("id", ""),
                                       agent.findtext("{%s}software" % sasl.SASL2_NS) or "",
                                       agent.findtext("{%s}device" % sasl.SASL2_NS) or "")
        vhost = self.vhost
        assert vhost is not None
        sm: Any = vhost.modules.get("mod_stream_mgmt")
        head = b"<success xmlns='%s'>" % sasl.SASL2_NS.encode()
        if additional is not None:
            head += b"<additional-data>%s</additional-data>" % (
                base64.b64encode(additional) if additional else b"")
        head += extra   # (a FAST token, XEP-0484)
        inline = b""
        resume = request.find("{%s}resume" % sasl.SM_NS)
        if resume is not None and sm is not None:
            session, answer, then = await sm.resume(self, resume)
            if session is not self:   # resumed: the old session goes on on this connection
                session.write_raw(head + _authz(session.jid_str) + answer + b"</success>")
                session.write_features()
                then()
                return
            if self.state == CLOSED:  # (the connection went while the resumption waited)
                return
            inline += answer          # <failed/>: a new session, bound below if asked
        bind = request.find("{%s}bind" % sasl.BIND2_NS)
        if bind is None:
            self.write_raw(head + _authz(str(jid)) + inline + b"</success>")
            self.write_features()
            return
        release = self._hold_stanzas()
        refused = self._bind(_bind2_resource(bind, jid, agent))
        if refused is not None:
            release(b"<failure xmlns='%s'><not-authorized xmlns='%s'/>"
                    b"<text xml:lang='en'>%s</text></failure>" % (
                        sasl.SASL2_NS.encode(), sasl.SASL_NS.encode(),
                        escape_text(refused.text or refused.condition).encode()))
            self.close()
            return
        bound = b"".join(self._bind2_inline(bind))
        release(head + _authz(self.jid_str) + inline +
                b"<bound xmlns='%s'>%s</bound></success>" % (sasl.BIND2_NS.encode(), bound) +
                self.conn.framing.features(self._features()))
        self.server.hooks.fire_all("c2s/bound", self)

    def write_features(self) -> None:
        """The stream features again, after SASL2's success (there is no restart)."""
        self.write_raw(self.conn.framing.features(self._features()))

    def _bind2_inline(self, bind: Element) -> list[bytes]:
        """Bind2's inline requests, each to the module that registered its namespace
        (:meth:`ModuleAPI.add_bind2_inline`): their answers, for ``<bound/>``."""
        out: list[bytes] = []
        vhost = self.vhost
        assert vhost is not None
        for child in bind.elements():
            handler = vhost.bind2_inline.get(child.tag[1:].split("}", 1)[0])
            answer = handler(self, child) if handler is not None else None
            if answer is not None:
                out.append(answer)
        return out

    def _shape_for_user(self) -> None:
        """A listener ``shaper`` that is a shaper rule is evaluated again for the user
        (as ejabberd does): ``c2s_shaper: {none: admin, normal: all}`` lifts the limit
        for admins once they are bound."""
        name = self.listen.shaper
        if name in self.server.config.shaper_rules:
            self.conn.bucket = self.server.shaper_bucket(name, self.jid, self.conn.peer_ip)

    def _stream_element(self, el: Element) -> Optional[Awaitable[None]]:
        vhost = self.vhost
        handler = vhost.stream_handlers.get(el.tag) if vhost is not None else None
        if handler is None:
            raise StreamError("unsupported-stanza-type", f"unexpected {el.tag}")
        result = handler(self, el)
        if asyncio.iscoroutine(result):
            return result  # type: ignore[no-any-return]
        return None

    # -- output ------------------------------------------------------------
    def send(self, stanza: Element) -> None:
        """Write a stanza to the client.

        ``filters`` (e.g. client state indication) may hold a stanza back (return
        None) or replace it; stream management (``sm``) may keep a copy.
        """
        for f in self.filters:
            out = f(self, stanza)
            if out is None:
                return
            stanza = out
        sm = self.sm
        if sm is not None:
            sm.on_send(self, stanza)
        if self.state != CLOSED:
            self.conn.write(stanza.to_bytes())

    @property
    def detached(self) -> bool:
        """Its connection is gone and stream management keeps it for resumption: what
        is sent to it waits in its queue."""
        return self.state == CLOSED and self.sm is not None

    @property
    def gone(self) -> bool:
        """Closed, and nothing keeps what is sent to it (no stream management):
        a stanza for it must be handled as if the session had ended already."""
        return self.state == CLOSED and self.sm is None

    @property
    def writes_as_is(self) -> bool:
        """Nothing looks at what :meth:`send` gets (no client state filter, no stream
        management copy): a serialized stanza can go to :meth:`write_raw` unparsed."""
        return not self.filters and self.sm is None

    def write_raw(self, data: bytes) -> None:
        if self.state != CLOSED:
            self.conn.write(data)

    def adopt(self, new: C2SStream) -> None:
        """Stream resumption (XEP-0198): go on with this session on ``new``'s connection.

        ``new`` authenticated on a fresh connection and asked to resume this
        session; the session object (in the registry, with its presence and
        module state) stays, only the transport changes. ``new`` is left
        closed on this session's old connection, which is closed if it is
        still open. Input that ``new`` had queued is processed here next.
        """
        old_conn, conn = self.conn, new.conn
        queued, new.queue = new.queue, []
        new.conn, conn.stream = old_conn, self
        old_conn.stream = new
        new.state = CLOSED
        self.conn = conn
        self.listen = new.listen
        self.rate = new.rate  # the new listener's max_stanza_rate
        self.stream_id = new.stream_id
        self.state = BOUND
        self._shape_for_user()
        self.closing = False
        self.busy = False
        self.last_recv = time.monotonic()
        old_conn.close()

        def go_on() -> None:
            if self.conn is conn and self.state == BOUND:
                conn.resume_reading()
                if queued:
                    self._process(queued)
        asyncio.get_running_loop().call_soon(go_on)

    # -- closing -------------------------------------------------------------
    def stream_error(self, condition: str, text: Optional[str] = None) -> None:
        if self.state == CLOSED:
            return
        log.info("stream error %s to %s (%s): %s", condition, self.jid_str or self.conn.peer_ip,
                 self.stream_id, text or "")
        if self.state == HEADER:
            self.conn.write(self.conn.framing.header(
                {"id": tokens.token_urlsafe(8), "from": self.host or next(iter(self.server.hosts)),
                 "version": "1.0"}))
        self.conn.write(self.conn.framing.error(condition, text))
        self.close()

    def close(self) -> None:
        """Close the stream (a footer, then the transport)."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        try:
            self.conn.write(self.conn.framing.footer())
        finally:
            self.conn.close()

    def replaced(self) -> None:
        """Another connection bound the same full JID (RFC 6120 7.7.2.2)."""
        self.stream_error("conflict", "replaced by a new connection")
        self.ended("replaced")

    def connection_lost(self) -> None:
        """The transport is gone; tear down unless something keeps the session."""
        self.state = CLOSED
        if self.jid is None:
            return
        if self.server.sessions.get_local(self.jid) is not self:
            return
        if self.server.hooks.fire("c2s/disconnected", self) is not None:
            return  # e.g. stream management keeps it for resumption
        self.ended("disconnected")

    def ended(self, reason: str) -> None:
        """The session is over: unregister and let modules clean up."""
        if self.jid is None:
            return
        if self.server.sessions.remove(self) or reason == "replaced":
            self.server.hooks.fire_all("c2s/ended", self, reason)

    def __repr__(self) -> str:
        return f"<C2SStream {self.jid_str or self.conn.peer_ip} {self.stream_id}>"


def _authz(jid: str) -> bytes:
    return b"<authorization-identifier>%s</authorization-identifier>" % escape_text(jid).encode()


def _bind2_resource(bind: Element, jid: JID, agent: Optional[Element]) -> str:
    """The resource for Bind2: the client's ``<tag/>`` (its name) and letters derived
    from its SASL2 user-agent id, so that the same installation gets the same resource
    every time (random letters without an id)."""
    tag = (bind.findtext("{%s}tag" % sasl.BIND2_NS) or "").strip()[:32]
    try:
        tag = resourceprep(tag) if tag else ""
    except JIDError:
        tag = ""
    ua = agent.attrs.get("id", "") if agent is not None else ""
    suffix = hashlib.sha256(f"{jid}\0{ua}".encode()).hexdigest()[:8] if ua \
        else tokens.token_hex(4)
    return f"{tag}.{suffix}" if tag else suffix


def _strip(iq: Element) -> Element:
    """An iq as seen by the router-less bind path: reply goes to the client."""
    return Element(iq.tag, {k: v for k, v in iq.attrs.items() if k in ("id", "type")})
