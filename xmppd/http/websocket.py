"""XMPP over WebSocket (RFC 7395): the ``ejabberd_http_ws`` request handler.

The transport only moves messages: each WebSocket text message is fed to the
unchanged c2s stream machine through :class:`~xmppd.http.framing.WebSocketFraming`,
and each write of the stream machine becomes one text message. SASL, bind,
stream management, shapers and limits are the same as on TCP; TLS is the
HTTPS listener's (``tls: true``), so ``secure`` and channel binding come from
it. WebSocket pings (``websocket_ping_interval``) detect dead peers; a quiet
connection is closed after ``websocket_timeout`` (or the listener's
``idle_timeout`` if shorter).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import struct
import time
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import WSMsgType, web

from ..c2s.stream import C2SStream
from ..shaper import Pause
from ..tls import channel_binding
from .framing import WebSocketFraming, add_client_ns
from .policy import PLAIN_REFUSED, Peer, origin_allowed
from .server import HANDLERS

if TYPE_CHECKING:
    import ssl

    from ..config import ListenConfig
    from ..server import Server

log = logging.getLogger(__name__)

# aiohttp >= 3.13 can hand text messages over undecoded (expat checks UTF-8)
_WS_KW: dict[str, Any] = (
    {"decode_text": False}
    if "decode_text" in inspect.signature(web.WebSocketResponse.__init__).parameters else {})
_BIG = 1 << 62


def _text_frame(data: bytes) -> bytes:
    """Header of an unmasked, final text frame (RFC 6455 5.2) for ``data``."""
    n = len(data)
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n)
    return struct.pack("!BBQ", 0x81, 127, n)


class WebSocketConnection:
    """The ``Connection`` the c2s stream machine writes to, over one WebSocket.

    Each write becomes one complete text frame (compression is not
    negotiated); the frames written during one turn of the event loop go to
    the transport together, at the end of that turn. A peer that stops
    reading is disconnected once its backlog passes ``c2s_queue_limit``.
    """

    __slots__ = ("server", "listen", "ws", "transport", "framing", "secure", "peer_ip",
                 "stream", "bucket", "pause", "_resume", "_closed", "_limit", "_overflow", "_out",
                 "_loop")

    def __init__(self, server: Server, listen: ListenConfig, ws: web.WebSocketResponse,
                 transport: Optional[asyncio.Transport], peer: Peer) -> None:
        self.server = server
        self.listen = listen
        self.ws = ws
        self.transport = transport
        self.secure = peer.tls
        self.peer_ip = peer.ip
        size = listen.max_stanza_size
        self.framing = WebSocketFraming(int(size) if size != float("inf") else _BIG)
        self._resume = asyncio.Event()
        self._resume.set()
        self._closed = False
        self._overflow = False
        self._limit = server.config["c2s_queue_limit"]
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.bucket = server.shaper_bucket(listen.shaper)
        self.pause = Pause()
        self.stream = C2SStream(server, self, listen)

    async def run(self) -> None:
        """Feed every text message to the stream until the WebSocket closes.

        The listener's ``shaper`` and ``max_stanza_rate`` apply as on TCP: the
        next message waits, nothing is dropped. ``self.stream`` is looked up for
        each message: a session resumed here (XEP-0198) becomes this connection's
        stream."""
        ws, resume = self.ws, self._resume
        pause = self.pause
        reads_open = self.server.reads_open
        while True:
            if not resume.is_set():
                await resume.wait()
            if pause.until:
                await pause.wait()
            if not reads_open.is_set() and not self._closed:
                await reads_open.wait()  # the cluster's hand-overs drain first
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                data = msg.data
                if not isinstance(data, bytes):
                    data = data.encode()
                bucket = self.bucket  # changes at bind when the shaper is a rule
                if bucket is not None:
                    delay = bucket.consume(len(data))
                    if delay > 0:
                        self.throttle(delay)
                self.stream.feed(data)
            elif kind is WSMsgType.BINARY:
                self.stream.stream_error("unsupported-encoding",
                                         "XMPP over WebSocket uses text messages (RFC 7395)")
            elif kind is WSMsgType.ERROR:
                log.info("websocket from %s: %s", self.peer_ip, msg.data)
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    # -- Connection interface used by C2SStream -------------------------------
    def throttle(self, delay: float) -> None:
        """Take the next message ``delay`` seconds from now at the earliest (shaper,
        stanza rate limit)."""
        self.pause.add(delay, self.stream, self.peer_ip)

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        data = add_client_ns(data)
        out = self._out
        if not out:
            self._loop.call_soon(self._flush)
        out.append(_text_frame(data))
        out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        t = self.transport
        if not out or t is None or t.is_closing():
            return
        t.write(b"".join(out))
        if t.get_write_buffer_size() > self._limit and not self._overflow:
            self._overflow = True
            log.info("closing slow reader %s", self.stream)
            self.stream.stream_error("policy-violation", "send queue overflow")
            t.abort()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._out:
            self._flush()  # what the stream wrote last (an error, <close/>) goes first
        self._resume.set()
        asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except (TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        self._resume.clear()

    def resume_reading(self) -> None:
        self._resume.set()

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        raise ConnectionError("STARTTLS is not available over WebSocket")

    def channel_binding(self, cb_type: str) -> Optional[bytes]:
        if not self.secure or self.transport is None:
            return None
        return channel_binding(self.server.certs, self.stream.host, self.transport, cb_type)

    @property
    def idle_seconds(self) -> float:
        return time.monotonic() - self.stream.last_recv


def stream_listen(server: Server, listen: ListenConfig) -> ListenConfig:
    """The listener as the stream machine sees it over HTTP: no STARTTLS (TLS is
    the HTTPS listener's, login over plain HTTP is decided before the stream
    starts, see :mod:`xmppd.http.policy`), and the WebSocket idle timeout."""
    return dataclasses.replace(
        listen, starttls=False, starttls_required=False,
        idle_timeout=min(listen.idle_timeout, server.config["websocket_timeout"]))


def add_websocket(server: Server, listen: ListenConfig, path: str, app: web.Application) -> None:
    view = stream_listen(server, listen)
    size = listen.max_stanza_size
    # messages a bit over max_stanza_size still reach the parser, which answers
    # with a policy-violation stream error; far larger ones are cut by aiohttp
    max_msg = int(size) * 2 + 4096 if size != float("inf") else 64 * 1024 * 1024
    ping = server.config["websocket_ping_interval"] or None

    async def handle(request: web.Request) -> web.StreamResponse:
        if not origin_allowed(server, listen, request.headers.get("Origin")):
            return web.Response(status=403, text="origin not allowed\n")
        ws = web.WebSocketResponse(protocols=("xmpp",), heartbeat=ping, max_msg_size=max_msg,
                                   compress=False, **_WS_KW)
        ready = ws.can_prepare(request)
        if not ready.ok:
            return web.Response(status=426, headers={"Upgrade": "websocket"},
                                text="XMPP over WebSocket (RFC 7395) endpoint\n")
        if ready.protocol != "xmpp":
            return web.Response(status=400, text="the xmpp WebSocket sub-protocol is "
                                                 "required (RFC 7395)\n")
        await ws.prepare(request)
        peer = Peer(server, listen, request)
        conn = WebSocketConnection(server, view, ws, request.transport, peer)
        server.connections.add(conn)
        refused = server.admit_connection(conn)
        try:
            if refused is not None:
                conn.stream.stream_error("policy-violation", refused)
            elif not peer.may_login:
                conn.stream.stream_error("policy-violation", PLAIN_REFUSED)
            await conn.run()
        finally:
            server.connections.discard(conn)
            server.release_connection(conn)
            conn.stream.connection_lost()
            if not ws.closed:
                conn.close()
        return ws

    app.router.add_get(path, handle)


HANDLERS["ejabberd_http_ws"] = add_websocket
