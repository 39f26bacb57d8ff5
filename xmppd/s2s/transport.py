"""TCP transport for server-to-server streams, in both directions.

It moves bytes between a socket and a stream machine (:class:`~xmppd.s2s.incoming.S2SIn`
or :class:`~xmppd.s2s.outgoing.S2SOut`), owns TLS (server or client side),
read pausing and the cut-off of a peer that does not read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, Optional, Protocol

from ..shaper import ShapedReading, TokenBucket
from ..xmlstream import TCPFraming

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger(__name__)

SERVER_NS = "jabber:server"


class StreamMachine(Protocol):
    def feed(self, data: bytes) -> None: ...
    def connection_lost(self) -> None: ...


class S2SConnection(ShapedReading, asyncio.Protocol):
    """One TCP connection carrying one s2s stream."""

    def __init__(self, server: Server, max_stanza_size: float,
                 bucket: Optional[TokenBucket] = None) -> None:
        self.server = server
        self.bucket = bucket  # the listener's shaper (incoming streams)
        self._shaped = False
        self._throttled = False
        self.transport: Optional[asyncio.Transport] = None
        self.framing = TCPFraming(int(max_stanza_size) if max_stanza_size != float("inf")
                                  else 1 << 62, content_ns=SERVER_NS)
        self.stream: Optional[StreamMachine] = None
        self.secure = False
        self.peer_ip = ""
        self._paused = False
        self._write_paused = False
        self.connected = asyncio.get_event_loop().create_future()

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        bucket = self.bucket
        if bucket is not None:
            delay = bucket.consume(len(data))
            if delay > 0:
                self.throttle(delay)
        if self.stream is not None:
            self.stream.feed(data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed"))
        if self.stream is not None:
            self.stream.connection_lost()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._check_queue()

    def resume_writing(self) -> None:
        self._write_paused = False

    def _check_queue(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if t.get_write_buffer_size() > self.server.config["c2s_queue_limit"]:
            log.info("closing s2s connection to %s: the peer does not read", self.peer_ip)
            t.abort()

    # -- what the stream machines use -----------------------------------------
    def write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)
            if self._write_paused:
                self._check_queue()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        self._paused = True
        self.apply_reading()

    def resume_reading(self) -> None:
        self._paused = False
        self.apply_reading()

    def apply_reading(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        try:
            if self._paused or self._shaped:
                t.pause_reading()
            else:
                t.resume_reading()
        except (RuntimeError, AttributeError):
            pass

    async def start_tls(self, ctx: ssl.SSLContext, *, server_side: bool,
                        server_hostname: Optional[str] = None) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        new = await loop.start_tls(self.transport, self, ctx, server_side=server_side,
                                   server_hostname=server_hostname, ssl_handshake_timeout=30)
        if new is None:
            raise ConnectionError("TLS handshake failed")
        self.transport = new  # type: ignore[assignment]
        self.secure = True

    def peer_certificate(self) -> Optional[bytes]:
        """The DER certificate the peer presented (verified by the TLS layer), if any."""
        if not self.secure or self.transport is None:
            return None
        sslobj: Any = self.transport.get_extra_info("ssl_object")
        if sslobj is None:
            return None
        try:
            der = sslobj.getpeercert(binary_form=True)
        except (ValueError, ssl.SSLError):
            return None
        return der if isinstance(der, bytes) else None
