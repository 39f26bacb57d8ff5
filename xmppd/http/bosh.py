"""BOSH (XEP-0124) carrying XMPP (XEP-0206): the ``mod_bosh`` request handler.

A :class:`BoshSession` is the ``Connection`` of one unchanged c2s stream. The
client's requests (``rid`` in sequence, within a window of ``requests``) are
processed in ``rid`` order, even when they arrive out of order; up to
``hold`` requests are kept waiting for output, each for at most ``wait``
seconds; output goes to the oldest waiting request, never more than
``max_concat`` stanzas at a time; a session without a waiting request for
``max_inactivity`` seconds (or the client's ``pause``, at most ``max_pause``)
ends. A request whose response was lost is answered again from a small cache
(``rid`` repeated); ``ack`` is supported. Errors use XEP-0124's terminal
conditions: ``item-not-found`` (unknown ``sid``, ``rid`` out of the window),
``bad-request`` (not a well-formed ``<body/>``, missing ``rid``),
``host-unknown``, ``policy-violation`` (polling too often, a pause too long,
too many sessions from one address, login over plain HTTP refused), and
``remote-stream-error`` with the ``<stream:error/>`` of the stream machine.
The listener's ``shaper`` (bytes of request bodies) and ``max_stanza_rate``
apply as on TCP: over the limit, the session's next request waits.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from ..c2s.stream import C2SStream
from ..confval import INFINITY, v_pos_int_or_infinity, v_timeout
from ..moduleapi import Module, Option
from ..shaper import Pause
from ..tls import channel_binding
from ..xml import XML_NS, Element, escape_attr
from ..xmlstream import Event, StreamClose, StreamError, StreamOpen
from .body import body_chunks
from .framing import BOSH_NS, XBOSH_NS, BoshFraming, add_client_ns, parse_body
from .policy import Peer, cors_headers, origin_allowed
from .server import HANDLERS
from .websocket import stream_listen

if TYPE_CHECKING:
    import ssl

    from ..config import ListenConfig
    from ..server import Server

log = logging.getLogger(__name__)

MAX_WAIT = 120          # seconds a request may be held, whatever the client asks
MAX_HOLD = 1            # requests held at once (as ejabberd)
POLLING = 2             # shortest interval between empty polls when hold or wait is 0
RID_MAX = 2 ** 53
RESTART = "{%s}restart" % XBOSH_NS
VERSION = "{%s}version" % XBOSH_NS
LANG = "{%s}lang" % XML_NS
_HEAD = ("<body xmlns='%s' xmlns:xmpp='%s' xmlns:stream='http://etherx.jabber.org/streams'"
         % (BOSH_NS, XBOSH_NS)).encode()


class ModBosh(Module):
    """Options of the BOSH handler for a virtual host (the handler is mounted
    with ``request_handlers: {/bosh: mod_bosh}`` on an ``ejabberd_http``
    listener; without this module the defaults apply)."""

    name = "mod_bosh"
    xeps = ("XEP-0124", "XEP-0206")
    options = {
        "max_inactivity": Option(30.0, v_timeout("second"),
                                 "seconds without a pending request before a session ends"),
        "max_pause": Option(120.0, v_timeout("second"), "longest pause a client may ask for"),
        "max_concat": Option(INFINITY, v_pos_int_or_infinity, "stanzas per response"),
    }


def body(attrs: dict[str, str], payload: list[bytes]) -> bytes:
    head = b"".join([_HEAD] + [(" %s='%s'" % (k, escape_attr(v))).encode()
                               for k, v in attrs.items()])
    if not payload:
        return head + b"/>"
    return b"".join([head, b">"] + payload + [b"</body>"])


def terminate(condition: Optional[str] = None, payload: Optional[list[bytes]] = None) -> bytes:
    attrs = {"type": "terminate"}
    if condition:
        attrs["condition"] = condition
    return body(attrs, payload or [])


def _int(value: Optional[str]) -> Optional[int]:
    if value is None or not value.isdigit() or len(value) > 17:
        return None
    return int(value)


class _Request:
    __slots__ = ("rid", "future", "timer", "creation")

    def __init__(self, rid: int, future: asyncio.Future[bytes], creation: bool = False) -> None:
        self.rid = rid
        self.future = future
        self.timer: Optional[asyncio.TimerHandle] = None
        self.creation = creation


class BoshSession:
    """One BOSH session: the c2s stream's connection, and the rid machine."""

    def __init__(self, manager: BoshManager, peer: Peer, rid: int, attrs: dict[str, str],
                 opts: dict[str, Any]) -> None:
        self.manager = manager
        self.server = manager.server
        self.listen = manager.view
        self.sid = secrets.token_urlsafe(18)
        self.secure = peer.tls
        self.peer_ip = peer.ip
        self.framing = BoshFraming()
        wait, hold = _int(attrs.get("wait")), _int(attrs.get("hold"))
        self.wait = min(wait if wait is not None else 60, MAX_WAIT)
        self.hold = min(hold if hold is not None else 1, MAX_HOLD)
        self.requests = self.hold + 1
        self.inactivity: float = opts["max_inactivity"]
        self.max_pause: float = opts["max_pause"]
        concat = opts["max_concat"]
        self.max_concat = int(concat) if concat != INFINITY else 1 << 30
        self.acks = attrs.get("ack") == "1"
        self.last_rid = rid            # highest rid processed, in order
        self.held: list[_Request] = []
        self.early: dict[int, tuple[dict[str, str], list[Element], _Request]] = {}
        self.out: list[bytes] = []
        self.out_size = 0
        self.cache: dict[int, bytes] = {}
        self.closed = False
        self.condition: Optional[str] = None
        self._loop = asyncio.get_running_loop()
        self._flush_handle: Optional[asyncio.Handle] = None
        self._inactive: Optional[asyncio.TimerHandle] = None
        self._pause: Optional[float] = None
        self._last_poll = 0.0
        self.bucket = self.server.shaper_bucket(self.listen.shaper)
        self.pause = Pause()
        self.waiting = 0  # requests that wait for a pause to end
        self.stream = C2SStream(self.server, self, self.listen)

    # -- requests --------------------------------------------------------------
    def start(self, rid: int, attrs: dict[str, str]) -> asyncio.Future[bytes]:
        """The session creation request: open the stream, answer with features."""
        req = _Request(rid, self._loop.create_future(), creation=True)
        open_attrs = {"to": attrs.get("to", ""), "version": attrs.get(VERSION, "1.0")}
        if LANG in attrs:
            open_attrs[LANG] = attrs[LANG]
        self._hold(req)
        self._feed([StreamOpen(open_attrs, "jabber:client", None)])
        self._settle()
        return req.future

    async def take_turn(self, size: int) -> None:
        """Wait until the session may take a request of ``size`` bytes: the listener's
        ``shaper`` and ``max_stanza_rate`` pause a session as they pause a TCP
        connection's reading (nothing is dropped; the client has at most
        ``requests`` requests out, so it waits with them)."""
        bucket = self.bucket
        if bucket is not None:
            delay = bucket.consume(size)
            if delay > 0:
                self.throttle(delay)
        if self.pause.until:
            self.waiting += 1
            try:
                await self.pause.wait()
            finally:
                self.waiting -= 1

    async def request(self, attrs: dict[str, str], children: list[Element]) -> bytes:
        rid = _int(attrs.get("rid"))
        if rid is None or rid >= RID_MAX:
            return self.fail("bad-request")
        cached = self.cache.get(rid)
        if cached is not None:
            return cached  # the client lost our answer: the same again (XEP-0124 14.3)
        if self.closed:
            return terminate("item-not-found")
        future: asyncio.Future[bytes] = self._loop.create_future()
        if rid <= self.last_rid:
            for req in self.held:
                if req.rid == rid:  # asked again while still held: answer the new one
                    old, req.future = req.future, future
                    if not old.done():
                        old.set_result(body({}, []))
                    return await future
            return self.fail("item-not-found")
        if rid > self.last_rid + self.requests:
            return self.fail("item-not-found")
        if rid != self.last_rid + 1:
            prev = self.early.get(rid)
            if prev is not None and not prev[2].future.done():
                prev[2].future.set_result(body({}, []))
            self.early[rid] = (attrs, children, _Request(rid, future))
            self.stream.last_recv = time.monotonic()
            return await future
        self._process(attrs, children, _Request(rid, future))
        while self.last_rid + 1 in self.early and not self.closed:
            a, c, r = self.early.pop(self.last_rid + 1)
            self._process(a, c, r)
        return await future

    def _process(self, attrs: dict[str, str], children: list[Element], req: _Request) -> None:
        self.last_rid = req.rid
        self.stream.last_recv = time.monotonic()
        if self._inactive is not None:
            self._inactive.cancel()
            self._inactive = None
        self._pause = None
        ack = _int(attrs.get("ack"))
        if ack is not None:
            for old in [k for k in self.cache if k <= ack]:
                del self.cache[old]
        events: list[Event] = list(children)
        pause = attrs.get("pause")
        if pause is not None:
            seconds = _int(pause)
            if seconds is None or seconds > self.max_pause:
                req.future.set_result(self.fail("policy-violation"))
                return
            self._pause = float(seconds)
        if attrs.get(RESTART) == "true":
            open_attrs = {"to": attrs.get("to") or self.stream.host, "version": "1.0"}
            if LANG in attrs:
                open_attrs[LANG] = attrs[LANG]
            events.append(StreamOpen(open_attrs, "jabber:client", None))
        if attrs.get("type") == "terminate":
            events.append(StreamClose())
        elif not events and pause is None and (self.hold == 0 or self.wait == 0):
            now = time.monotonic()
            if now - self._last_poll < POLLING:
                req.future.set_result(self.fail("policy-violation"))
                return
            self._last_poll = now
        self._hold(req)
        if events:
            self._feed(events)
        if self._pause is not None:
            for r in list(self.held):
                self._respond(r, self._take())
        self._settle()

    def _feed(self, events: list[Event]) -> None:
        self.framing.push(events)
        self.stream.feed(b"")

    def _hold(self, req: _Request) -> None:
        self.held.append(req)
        req.timer = self._loop.call_later(self.wait, self._expire, req)

    def _settle(self) -> None:
        """Answer what must be answered now: output, and requests over ``hold``."""
        if self.closed:
            return
        self._flush()
        while len(self.held) > self.hold:
            self._respond(self.held[0], self._take())

    def _expire(self, req: _Request) -> None:
        if req in self.held:
            self._respond(req, [])

    def _take(self) -> list[bytes]:
        n = self.max_concat
        payload = self.out[:n]
        del self.out[:n]
        self.out_size -= sum(len(p) for p in payload)
        return payload

    def _flush(self) -> None:
        self._flush_handle = None
        while self.out and self.held:
            self._respond(self.held[0], self._take())

    def _respond(self, req: _Request, payload: list[bytes]) -> None:
        if req in self.held:
            self.held.remove(req)
        if req.timer is not None:
            req.timer.cancel()
        attrs: dict[str, str] = {}
        if req.creation:
            attrs = self._session_attrs(req.rid)
        elif self.acks and req.rid < self.last_rid:
            attrs["ack"] = str(self.last_rid)
        data = body(attrs, payload)
        self.cache[req.rid] = data
        for r in [r for r in self.cache if r <= req.rid - self.requests - 1]:
            del self.cache[r]
        if not req.future.done():
            req.future.set_result(data)
        if not self.held and not self.closed:
            self._idle()

    def _session_attrs(self, rid: int) -> dict[str, str]:
        sa = self.framing.stream_attrs
        attrs = {"sid": self.sid, "wait": str(self.wait), "hold": str(self.hold),
                 "requests": str(self.requests), "inactivity": str(int(self.inactivity)),
                 "maxpause": str(int(self.max_pause)), "polling": str(POLLING), "ver": "1.11",
                 "from": sa.get("from", self.stream.host), "authid": sa.get("id", ""),
                 # the link from this connection manager to the XMPP server is
                 # in-process (XEP-0124 7.1): secure, whatever the client's link
                 "secure": "true", "xmpp:version": "1.0",
                 "xmpp:restartlogic": "true"}
        if self.acks:
            attrs["ack"] = str(rid)
        return attrs

    # -- inactivity ------------------------------------------------------------
    def _idle(self) -> None:
        if self._inactive is not None:
            self._inactive.cancel()
        delay = self._pause if self._pause is not None else self.inactivity
        self._inactive = self._loop.call_later(delay, self._timed_out)

    def _timed_out(self) -> None:
        self._inactive = None
        if not self.held and not self.waiting and not self.closed:
            log.info("BOSH session %s of %s: inactive, closing", self.sid, self.peer_ip)
            self.stream.close()

    def fail(self, condition: str) -> bytes:
        """A binding error ends the session; returns the terminate body."""
        if not self.closed:
            log.info("BOSH session %s of %s: %s", self.sid, self.peer_ip, condition)
            self.condition = condition
            self.stream.close()
        return terminate(condition)

    # -- Connection interface used by C2SStream -------------------------------
    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.out.append(add_client_ns(data))
        self.out_size += len(data)
        if self.out_size > self.server.config["c2s_queue_limit"]:
            self.out = []
            self.out_size = 0
            self.stream.stream_error("policy-violation", "send queue overflow")
            return
        if self.held and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def close(self) -> None:
        """The stream is closed: answer every pending request, forget the session."""
        if self.closed:
            return
        self.closed = True
        error = self.framing.error_payload
        condition = self.condition or ("remote-stream-error" if error else None)
        payload = self.out + ([error] if error else [])
        self.out = []
        pending = self.held + [r for _, _, r in self.early.values()]
        self.held = []
        self.early = {}
        for i, req in enumerate(sorted(pending, key=lambda r: r.rid)):
            if req.timer is not None:
                req.timer.cancel()
            data = terminate(condition, payload if i == 0 else None)
            self.cache[req.rid] = data
            if not req.future.done():
                req.future.set_result(data)
        for handle in (self._inactive, self._flush_handle):
            if handle is not None:
                handle.cancel()
        self.manager.forget(self)
        self._loop.call_soon(self.stream.connection_lost)

    def abort(self) -> None:
        self.close()

    def throttle(self, delay: float) -> None:
        """Take the next request ``delay`` seconds from now at the earliest."""
        self.pause.add(delay, self.stream, self.peer_ip)

    def pause_reading(self) -> None:
        return None  # the stream queues input while busy; requests still flow

    def resume_reading(self) -> None:
        return None

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        raise ConnectionError("STARTTLS is not available over BOSH")

    def channel_binding(self, cb_type: str) -> Optional[bytes]:
        # HTTP requests of one session may use different TLS connections: no tls-unique
        if not self.secure:
            return None
        return channel_binding(self.server.certs, self.stream.host, None, cb_type)

    @property
    def idle_seconds(self) -> float:
        return time.monotonic() - self.stream.last_recv

    def __repr__(self) -> str:
        return f"<BoshSession {self.sid} {self.stream!r}>"


class BoshManager:
    """The BOSH sessions of one listener path."""

    def __init__(self, server: Server, listen: ListenConfig) -> None:
        self.server = server
        self.listen = listen
        self.view = stream_listen(server, listen)
        self.sessions: dict[str, BoshSession] = {}
        size = listen.max_stanza_size
        self.max_stanza = int(size) if size != INFINITY else 1 << 62
        self.max_body = int(size) * 4 + 8192 if size != INFINITY else 16 * 1024 * 1024

    def options(self, host: str) -> dict[str, Any]:
        mod = self.server.hosts[host].modules.get("mod_bosh")
        return mod.opts if mod is not None else ModBosh.validate({}, "modules.mod_bosh", [])

    async def create(self, request: web.BaseRequest, attrs: dict[str, str]) -> bytes:
        rid = _int(attrs.get("rid"))
        if rid is None or rid >= RID_MAX:
            return terminate("bad-request")
        host = attrs.get("to", "").lower()
        if host not in self.server.hosts:
            return terminate("host-unknown")
        peer = Peer(self.server, self.listen, request)
        session = BoshSession(self, peer, rid, attrs, self.options(host))
        server = self.server
        refused = server.admit_connection(session)
        if refused is not None or not peer.may_login:
            server.release_connection(session)
            log.info("BOSH session refused to %s: %s", peer.ip,
                     refused if refused is not None else "login over plain HTTP")
            return terminate("policy-violation")
        self.sessions[session.sid] = session
        server.connections.add(session)
        return await session.start(rid, attrs)

    def forget(self, session: BoshSession) -> None:
        if self.sessions.pop(session.sid, None) is not None:
            self.server.connections.discard(session)
            self.server.release_connection(session)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        server, listen = self.server, self.listen
        origin = request.headers.get("Origin")
        if not origin_allowed(server, listen, origin):
            return web.Response(status=403, text="origin not allowed\n")
        headers = cors_headers(server, listen, origin)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=headers)
        if request.method != "POST":
            return web.Response(text="BOSH endpoint (XEP-0124, XEP-0206): POST a <body/>\n",
                                headers=headers)
        try:
            data = await self._read(request)
        except TimeoutError:
            return web.Response(status=408, text="the request body stalled\n", headers=headers)
        if data is None:
            reply = terminate("policy-violation")
        else:
            reply = await self._dispatch(request, data)
        return web.Response(body=reply, content_type="text/xml", charset="utf-8",
                            headers=headers)

    async def _read(self, request: web.Request) -> Optional[bytes]:
        length = request.content_length
        if length is not None and length > self.max_body:
            return None
        chunks: list[bytes] = []
        total = 0
        async for chunk in body_chunks(request.content, request.transport):
            total += len(chunk)
            if total > self.max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _dispatch(self, request: web.Request, data: bytes) -> bytes:
        try:
            attrs, children = parse_body(data, self.max_stanza)
        except StreamError as e:
            condition = "policy-violation" if e.condition == "policy-violation" else "bad-request"
            sid = _sid_of(data)
            session = self.sessions.get(sid) if sid else None
            if session is not None:
                return session.fail(condition)
            return terminate(condition)
        sid = attrs.get("sid")
        if sid is None:
            return await self.create(request, attrs)
        session = self.sessions.get(sid)
        if session is None:
            return terminate("item-not-found")
        await session.take_turn(len(data))
        if children:
            # while the cluster's hand-overs drain, stanzas wait (see Server.hold_reads)
            await self.server.reads_open.wait()
        return await session.request(attrs, children)


def _sid_of(data: bytes) -> Optional[str]:
    """The sid of a body that did not parse, to end its session."""
    i = data.find(b"sid=")
    if i < 0 or i + 5 >= len(data):
        return None
    quote = data[i + 4:i + 5]
    end = data.find(quote, i + 5)
    return data[i + 5:end].decode("ascii", "replace") if end > 0 else None


def add_bosh(server: Server, listen: ListenConfig, path: str, app: web.Application) -> None:
    manager = BoshManager(server, listen)
    app.router.add_route("*", path, manager.handle)


HANDLERS["mod_bosh"] = add_bosh
