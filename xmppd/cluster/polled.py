"""The queue reader's Redis connection, readable in the middle of a loop turn.

Under load one turn of the event loop is a whole round of client reads, and what the
turn writes to clients leaves at its end. A stanza for a local client leaves with the
turn that read it. One for another node went to Redis only when the turn ended (the
writer is a task), and the reply that brings it to the other node was seen there only
at that loop's next poll for I/O, in its next turn, and left at the end of that one:
a turn and a half more, on average, than a local stanza. Between two client reads
(every :data:`xmppd.c2s.listener.POLL_EVERY`,
:meth:`xmppd.cluster.redis.RedisBackend.between_reads`) the writer now sends what
waits, when its pause is over, and the queue reader's connection is read: it is a
plain non-blocking socket (``loop.add_reader`` reads it too) that
:meth:`PolledConnection.poll` reads at any moment. A stanza that crosses then leaves
with the other node's current turn, as a local one leaves with this node's. Measured
under overload (bench/RESULTS.md): the crossing half's p99 close to the local half's,
at the same CPU per stanza.

Replies are matched to calls exactly as on :class:`.resp.RespConnection` (the same
protocol object); only the transport differs.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Optional

from .resp import RespConnection, _Protocol

RECV = 262144


class _SocketTransport:
    """What :class:`.resp._Protocol` and :class:`.resp.RespConnection` use of an asyncio
    transport (``write``, ``close``), over a non-blocking socket."""

    def __init__(self, sock: socket.socket, proto: _Protocol,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.proto = proto
        self.loop = loop
        self.fd = sock.fileno()
        self._out = b""
        self._closed = False
        loop.add_reader(self.fd, self.poll)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._out:
            self._out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            self._lost(e)
            return
        if sent < len(data):
            self._out = data[sent:]
            self.loop.add_writer(self.fd, self._drain)

    def _drain(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        self._out = self._out[sent:]
        if not self._out:
            self.loop.remove_writer(self.fd)

    def poll(self) -> None:
        """Read what has come, if anything (never waits)."""
        if self._closed:
            return
        try:
            data = self.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        if not data:
            self._lost(None)
            return
        self.proto.data_received(data)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._lost(None)

    def _lost(self, exc: Optional[Exception]) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.fd)
        if self._out:
            self.loop.remove_writer(self.fd)
        self.sock.close()
        self.proto.connection_lost(exc)


class PolledConnection(RespConnection):
    """A :class:`.resp.RespConnection` whose replies :meth:`poll` reads at once."""

    _socket: Optional[_SocketTransport] = None  # of the last connection opened

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self.unix_socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = self.unix_socket_path
        else:
            info = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family, _t, _p, _c, address = info[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), self.timeout)
        except BaseException:
            sock.close()
            raise
        proto = _Protocol()
        self._socket = _SocketTransport(sock, proto, loop)
        proto.transport = self._socket  # type: ignore[assignment]
        return proto

    def poll(self) -> None:
        """Handle Redis's replies that have come (between two client reads)."""
        if self._socket is not None:
            self._socket.poll()  # (a closed one reads nothing)
