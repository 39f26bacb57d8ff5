"""TCP transport for client streams: moves bytes, owns TLS, shaping and
back-pressure. Everything XMPP happens in :class:`~xmppd.c2s.stream.C2SStream`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

from ..shaper import ShapedReading
from ..tls import channel_binding
from ..xmlstream import TCPFraming
from .stream import C2SStream

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server

log = logging.getLogger(__name__)

# Write batching: what streams write during one turn of the event loop is
# joined per connection and handed to the transport once, after the turn
# (one send() instead of several: stream header and features, a burst of
# stanzas for one user, a room's messages to one occupant). Under load a turn
# handles more input, so batches grow just when syscalls cost the most.
_dirty: list[C2SConnection] = []
_flush_pending = False

# Work that should not wait for the end of a long turn (a cluster node's hand-overs to
# Redis and its queue of stanzas from the other nodes, see xmppd.cluster.polled): run
# every POLL_EVERY client reads.
POLL_EVERY = 16
_between_reads: Optional[Callable[[], None]] = None
_reads = 0


def set_between_reads(fn: Optional[Callable[[], None]]) -> None:
    """``fn`` runs between client reads, every :data:`POLL_EVERY` of them (None: nothing)."""
    global _between_reads
    _between_reads = fn


def flush_writes() -> None:
    """Hand every connection's batched output to its transport."""
    global _flush_pending
    _flush_pending = False
    while _dirty:
        batch = _dirty[:]
        _dirty.clear()
        for conn in batch:
            conn.flush()


class C2SConnection(ShapedReading, asyncio.Protocol):
    __slots__ = ("server", "listen", "transport", "stream", "framing", "secure", "peer_ip",
                 "bucket", "_paused", "_write_paused", "_tls_host", "_out")

    def __init__(self, server: Server, listen: ListenConfig, direct_tls: bool) -> None:
        self.server = server
        self.listen = listen
        self.transport: Optional[asyncio.Transport] = None
        self.secure = direct_tls
        self.peer_ip = ""
        max_size = listen.max_stanza_size
        self.framing = TCPFraming(int(max_size) if max_size != float("inf") else 1 << 62)
        self.bucket = server.shaper_bucket(listen.shaper)
        self._paused = False
        self._shaped = False
        self._write_paused = False
        self._throttled = False
        self._out: Optional[list[bytes]] = None  # batched output of this loop turn
        self.stream: C2SStream = C2SStream(server, self, listen)

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        # TCP_NODELAY: asyncio and uvloop set it on every TCP transport already
        self.server.connections.add(self)
        refused = self.server.admit_connection(self)
        if refused is not None:
            self.stream.stream_error("policy-violation", refused)

    def data_received(self, data: bytes) -> None:
        bucket = self.bucket
        if bucket is not None:
            delay = bucket.consume(len(data))
            if delay > 0:
                # ejabberd shaper semantics: stop reading for a while, drop nothing
                self.throttle(delay)
        self.stream.feed(data)
        global _reads
        _reads += 1
        if _reads >= POLL_EVERY:
            _reads = 0
            if _between_reads is not None:
                try:
                    _between_reads()
                except Exception:  # noqa: BLE001 - not this client's fault
                    log.exception("work between client reads failed")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._out = None
        self.server.connections.discard(self)
        self.server.release_connection(self)
        self.stream.connection_lost()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._check_queue()

    def _check_queue(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.server.config["c2s_queue_limit"]:
            # a client that does not read: cut it off instead of growing memory
            log.info("closing slow reader %s", self.stream)
            transport.abort()

    def resume_writing(self) -> None:
        self._write_paused = False

    # -- Connection interface used by C2SStream -------------------------------
    def write(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out.append(data)
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._out = [data]
        _dirty.append(self)
        global _flush_pending
        if not _flush_pending:
            try:
                asyncio.get_running_loop().call_soon(flush_writes)
            except RuntimeError:  # no event loop: write at once
                _dirty.remove(self)
                self.flush()
                return
            _flush_pending = True

    def flush(self) -> None:
        out = self._out
        if out is None:
            return
        self._out = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._write_paused:
            self._check_queue()

    def close(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._out = None
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        self._paused = True
        self.apply_reading()

    def resume_reading(self) -> None:
        self._paused = False
        self.apply_reading()

    def apply_reading(self) -> None:
        """Read or not, after any change: busy stream, shaper, the server's hold."""
        t = self.transport
        if t is None or t.is_closing():
            return
        try:
            if self._paused or self._shaped or not self.server.reads_open.is_set():
                t.pause_reading()
            else:
                t.resume_reading()
        except (RuntimeError, AttributeError):
            pass

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        self.flush()  # <proceed/> goes out in clear
        new = await loop.start_tls(self.transport, self, ctx, server_side=True,
                                   ssl_handshake_timeout=30)
        if new is None:
            raise ConnectionError("TLS handshake failed")
        self.transport = new  # type: ignore[assignment]
        self.secure = True

    def channel_binding(self, cb_type: str) -> Optional[bytes]:
        if not self.secure or self.transport is None:
            return None
        return channel_binding(self.server.certs, self.stream.host, self.transport, cb_type)

    @property
    def idle_seconds(self) -> float:
        return time.monotonic() - self.stream.last_recv


async def start_listener(server: Server, listen: ListenConfig) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    ctx: Optional[ssl.SSLContext] = None
    if listen.tls:
        assert server.certs is not None
        ctx = server.certs.sni_context(next(iter(server.hosts)), ["xmpp-client"])
    direct = ctx is not None
    return await loop.create_server(
        lambda: C2SConnection(server, listen, direct), host=listen.ip if listen.ip != "::" else None,
        port=listen.port, ssl=ctx, backlog=listen.backlog, reuse_address=True,
        reuse_port=server.reuse_port, ssl_handshake_timeout=30 if ctx else None,
    )
