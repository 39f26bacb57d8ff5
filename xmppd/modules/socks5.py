"""The SOCKS5 side of the bytestreams proxy (XEP-0065 section 6, RFC 1928 in part).

Each client connects, offers the "no authentication" method and asks to CONNECT to
a domain name that is the hex SHA-1 of the stream's SID, requester and target JIDs
(port 0). The proxy answers success and holds the connection; the second connection
with the same address is its partner. Once the requester activates the stream (an
iq to the proxy's JID, :mod:`xmppd.modules.proxy65`), the bytes of each side go to
the other until one of them closes. Anything else (another method, command or
address type, a third connection for an address, no activation in time) closes
the connection, and so does a connection from an address that has
:data:`MAX_WAITING` connections waiting already (in the handshake or for their
partner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Optional

log = logging.getLogger(__name__)

CHUNK = 65536
HANDSHAKE_TIMEOUT = 10.0
MAX_WAITING = 16  # connections of one address not relaying yet

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter, str]


class Pending:
    """One or two connections waiting for the requester's activation."""

    __slots__ = ("conns", "timer")

    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.timer: Optional[asyncio.TimerHandle] = None


class Relay:
    """The proxy's connections, by destination address, and the streams it relays."""

    def __init__(self, wait: float = 60.0) -> None:
        self.wait = wait  # how long a connection waits for its partner and activation
        self.pending: dict[str, Pending] = {}
        self.active: set[asyncio.Task[None]] = set()
        self.server: Optional[asyncio.base_events.Server] = None
        self.waiting: Counter[str] = Counter()  # address -> connections not relaying yet

    async def start(self, ip: str, port: int, reuse_port: bool = False) -> None:
        self.server = await asyncio.start_server(self._client, host=ip or None, port=port,
                                                 reuse_address=True, reuse_port=reuse_port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for dst in list(self.pending):
            self._drop(dst)
        for task in list(self.active):
            task.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    def activate(self, dst: str) -> Optional[asyncio.Task[None]]:
        """Join the two connections of ``dst``: the task that relays until one side
        closes; None if they are not both there."""
        p = self.pending.get(dst)
        if p is None or len(p.conns) != 2:
            return None
        del self.pending[dst]
        if p.timer is not None:
            p.timer.cancel()
        (r1, w1, ip1), (r2, w2, ip2) = p.conns
        self._done_waiting(ip1)
        self._done_waiting(ip2)
        task = asyncio.ensure_future(self._pipe(r1, w1, r2, w2))
        self.active.add(task)
        task.add_done_callback(self.active.discard)
        return task

    def _drop(self, dst: str) -> None:
        p = self.pending.pop(dst, None)
        if p is None:
            return
        if p.timer is not None:
            p.timer.cancel()
        for _, w, ip in p.conns:
            w.close()
            self._done_waiting(ip)

    def _done_waiting(self, ip: str) -> None:
        self.waiting[ip] -= 1
        if self.waiting[ip] <= 0:
            del self.waiting[ip]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        if self.waiting[ip] >= MAX_WAITING:
            writer.close()
            return
        self.waiting[ip] += 1
        try:
            dst = await asyncio.wait_for(self._handshake(reader, writer), HANDSHAKE_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            dst = None
        p = self.pending.get(dst) if dst is not None else None
        if dst is None or (p is not None and len(p.conns) >= 2):
            writer.close()  # not SOCKS5 as XEP-0065 uses it, or a third connection
            self._done_waiting(ip)
            return
        if p is None:
            p = self.pending[dst] = Pending()
            p.timer = asyncio.get_running_loop().call_later(self.wait, self._drop, dst)
        p.conns.append((reader, writer, ip))

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> Optional[str]:
        ver, n = await reader.readexactly(2)
        if ver != 5:
            return None  # not SOCKS5 (an HTTP request...): closed at once
        methods = await reader.readexactly(n)
        if 0 not in methods:
            writer.write(b"\x05\xff")
            return None
        writer.write(b"\x05\x00")
        ver, cmd, _rsv, atyp = await reader.readexactly(4)
        if ver != 5 or cmd != 1 or atyp != 3:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            return None
        (length,) = await reader.readexactly(1)
        addr = await reader.readexactly(length)
        await reader.readexactly(2)  # the port: 0
        dst = addr.decode("ascii", "replace").lower()
        if len(dst) != 40 or any(c not in "0123456789abcdef" for c in dst):
            writer.write(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
            return None
        writer.write(b"\x05\x00\x00\x03" + bytes([length]) + addr + b"\x00\x00")
        await writer.drain()
        return dst

    async def _pipe(self, r1: asyncio.StreamReader, w1: asyncio.StreamWriter,
                    r2: asyncio.StreamReader, w2: asyncio.StreamWriter) -> None:
        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(CHUNK)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()  # a slow reader slows its sender: no buffering here
            except ConnectionError:
                pass
            finally:
                dst.close()
        try:
            await asyncio.gather(copy(r1, w2), copy(r2, w1))
        finally:
            w1.close()
            w2.close()
