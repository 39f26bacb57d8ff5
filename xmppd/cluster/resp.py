"""A lean Redis connection for the hand-over path (stream writes and reads).

redis-py's asyncio pipeline spends 200-300 µs of Python on each batch (command
objects, retry wrappers, response callbacks), and a node hands stanzas over in
hundreds of small batches a second. This connection only packs commands into
RESP, writes them in one go and gathers the replies with hiredis' parser; it
costs about a third of that. Everything else (directory, pub/sub, heartbeats)
keeps using redis-py.

One connection serves one user (the writer task, a queue reader) that waits
for each call before the next; replies are matched to calls in order, also
those of a call that was cancelled. A call made with :meth:`RespConnection.call`
gets its replies in a callback, run where they are read: a queue reader that
handles what it read there saves the turns of the event loop that waking a task
takes, and under load each turn is a whole round of client reads. A lost
connection fails the calls that wait with :class:`ConnectionError`, a reply
that does not come within ``timeout`` with :class:`TimeoutError` (the
connection is closed); the next call connects again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import hiredis

log = logging.getLogger(__name__)

Arg = Union[bytes, str, int]
# what a call made with RespConnection.call gets: its replies, or why there are none
Replied = Callable[[Union[list[Any], Exception]], None]
REPLY_TIMEOUT = 10.0  # seconds; a blocking XREAD asks for at most 1


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out: list[bytes] = []
    pack_into(out, args)
    return b"".join(out)


def pack_into(out: list[bytes], args: Sequence[Arg]) -> None:
    """Append the parts of one command in RESP to ``out`` (big values are not copied)."""
    out.append(b"*%d\r\n" % len(args))
    for a in args:
        if not isinstance(a, bytes):
            a = a.encode() if isinstance(a, str) else b"%d" % a
        out += (b"$%d\r\n" % len(a), a, b"\r\n")


class RespError(Exception):
    """Redis answered a command with an error."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.reader = hiredis.Reader()
        # (replies expected, replies so far, callback), in the order of the writes
        self.waiting: deque[tuple[int, list[Any], Replied]] = deque()
        self.lost: Optional[Exception] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not waiting:
                continue  # nothing asked for it
            n, got, fut = waiting[0]
            got.append(reply)
            if len(got) == n:
                waiting.popleft()
                _answer(fut, got)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = ConnectionError("redis connection lost: %s" % (exc or "closed"))
        while self.waiting:
            _answer(self.waiting.popleft()[2], self.lost)


def _answer(to: Replied, res: Union[list[Any], Exception]) -> None:
    try:
        to(res)
    except Exception:  # noqa: BLE001 - the reader must go on
        log.exception("redis: a reply's callback failed")


class RespConnection:
    """Pipelined commands over one connection to Redis."""

    def __init__(self, *, host: str = "localhost", port: int = 6379, db: int = 0,
                 password: Optional[str] = None, unix_socket_path: Optional[str] = None,
                 timeout: Optional[float] = None, **_ignored: Any) -> None:
        self.host, self.port, self.db, self.password = host, port, db, password
        self.unix_socket_path = unix_socket_path
        self.timeout = REPLY_TIMEOUT if timeout is None else timeout
        self._proto: Optional[_Protocol] = None

    async def _open(self) -> _Protocol:
        """A connected protocol object (its transport set)."""
        loop = asyncio.get_running_loop()
        if self.unix_socket_path:
            opening = loop.create_unix_connection(_Protocol, self.unix_socket_path)
        else:
            opening = loop.create_connection(_Protocol, self.host, self.port)
        _t, proto = await asyncio.wait_for(opening, self.timeout)
        return proto

    async def _connect(self) -> _Protocol:
        proto = await self._open()
        hello: list[list[Arg]] = []
        if self.password:
            hello.append(["AUTH", self.password])
        if self.db:
            hello.append(["SELECT", self.db])
        if hello:
            try:
                await self._send(proto, hello)
            except BaseException:
                if proto.transport is not None:
                    proto.transport.close()
                raise
        return proto

    async def _ready(self) -> _Protocol:
        proto = self._proto
        if proto is None or proto.lost is not None:
            proto = self._proto = await self._connect()
        return proto

    async def _send(self, proto: _Protocol, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def replied(res: Union[list[Any], Exception]) -> None:
            if not fut.done():  # (a cancelled call's replies are read and dropped)
                if isinstance(res, Exception):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

        if not self._submit(proto, commands, replied):
            raise ConnectionError("redis connection lost")
        return await fut

    def call(self, commands: Sequence[Sequence[Arg]], replied: Replied) -> bool:
        """Send ``commands`` in one write if connected (else False: :meth:`connect`
        first); ``replied`` gets their replies (error replies among them, as
        :class:`RespError`) or the exception that ended the call, in the callback
        that read them."""
        proto = self._proto
        return proto is not None and self._submit(proto, commands, replied)

    def _submit(self, proto: _Protocol, commands: Sequence[Sequence[Arg]],
                replied: Replied) -> bool:
        """Write ``commands``; ``replied`` is called once, with the replies or why there
        are none. No reply within ``timeout`` ends the connection."""
        transport = proto.transport
        if proto.lost is not None or transport is None:
            return False
        timer: Optional[asyncio.TimerHandle] = None
        answered = False

        def answer(res: Union[list[Any], Exception]) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            if timer is not None:
                timer.cancel()
            if not isinstance(res, Exception):
                for r in res:
                    if isinstance(r, hiredis.ReplyError):
                        res = RespError(str(r))
                        break
            replied(res)

        proto.waiting.append((len(commands), [], answer))
        parts: list[bytes] = []
        for c in commands:
            pack_into(parts, c)
        transport.write(b"".join(parts))
        timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, proto, answer)
        return True

    def _expire(self, proto: _Protocol, answer: Replied) -> None:
        """Redis did not answer (stopped, or far too busy): give this connection up,
        the calls behind this one fail with it, and the next call connects again; the
        callers retry (hand-overs) or read again (queue readers)."""
        err = TimeoutError("redis did not answer within %g s" % self.timeout)
        proto.lost = err  # at once: closing completes on a later turn
        answer(err)
        if proto.transport is not None:
            proto.transport.close()

    async def connect(self) -> None:
        """Connect (again) if not connected."""
        await self._ready()

    async def execute(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send ``commands`` in one write; their replies, in order (an error reply raises
        :class:`RespError` once all replies are in)."""
        return await self._send(await self._ready(), commands)

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()


def stream_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an XREAD reply for one stream: ``[(id, {field: value})]``."""
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    if not reply:
        return out
    for _key, entries in reply:
        for entry_id, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
            out.append((entry_id, fields))
    return out
