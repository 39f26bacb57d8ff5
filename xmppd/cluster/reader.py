"""Reading a node's own queue (the stream ``q:<node>``, see :mod:`.redis`).

The reader handles what it read in the connection's callback, where the reply
is read (:meth:`.resp.RespConnection.call`), and sends the next read from there.
A task that awaited the reply would only run on the next turn of the event loop,
after the rest of this turn's client reads, and its deliveries would go out a
turn later still: under load a stanza that crossed waited two or three rounds
of client reads more than one that did not. Handled this way, a stanza from
another node goes out with the same flush as one from a local client.

A read that brings more than :data:`YIELD_EVERY` stanzas (a backlog), or
stanzas that must be stored first (the journal), is finished in a task, which
gives clients and timers their turn in between. The next read waits until that
task is done, so the bound must be one that only a backlog exceeds: at 500, a
busy node's ordinary read (several writes of the other node, gathered during a
long turn) went in chunks of one turn each, the crossing stanzas fell behind the
local ones, and the reads grew, until their latency ran away (bench/RESULTS.md,
"A read handled in one go"). Handled entries are deleted with the next read, so
a node that dies meanwhile leaves them to a survivor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Optional, Union

from .entries import split_entries
from .resp import RespConnection, stream_entries

log = logging.getLogger(__name__)

READ_COUNT = 500     # stream entries per read at most
YIELD_EVERY = 5000   # stanzas handled between two turns of the event loop (a backlog)

Deliver = Callable[[list[bytes]], Optional[list[Awaitable[Any]]]]


async def handle_in_chunks(deliver: Deliver, payloads: list[bytes]) -> None:
    """Handle ``payloads`` :data:`YIELD_EVERY` at a time, with a turn of the event loop
    in between (a backlog read at once can hold a hundred thousand stanzas), and wait
    for what must be stored first."""
    pending: list[Awaitable[Any]] = []
    for i in range(0, len(payloads), YIELD_EVERY):
        if i:
            await asyncio.sleep(0)
        waits = _deliver(deliver, payloads[i:i + YIELD_EVERY])
        if waits:
            pending += waits
    await settle(pending)


async def settle(pending: list[Awaitable[Any]]) -> None:
    """Wait for the stanzas that must be stored here before Redis forgets them."""
    if pending:
        for res in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(res, Exception):
                log.warning("cluster: storing a handed-over stanza failed: %s", res)


async def forget(conn: RespConnection, key: bytes, ids: list[bytes]) -> None:
    """Delete handled entries when stopping, so they do not come back (best effort)."""
    if ids:
        try:
            await asyncio.wait_for(conn.execute([[b"XDEL", key, *ids]]), 2)
        except BaseException:  # noqa: BLE001 - best effort at shutdown
            pass


def _deliver(deliver: Deliver, payloads: list[bytes]) -> Optional[list[Awaitable[Any]]]:
    try:
        return deliver(payloads)
    except Exception:  # noqa: BLE001 - the entries are done with: the reader goes on
        log.exception("cluster: handling payloads failed")
        return None


class QueueReader:
    """Reads the stream ``key`` on its own connection and hands the payloads to
    ``deliver``; after a read of few entries it waits ``linger()`` seconds before
    the next (several writers' entries in one read), or none (0)."""

    def __init__(self, conn: RespConnection, key: bytes, deliver: Deliver,
                 linger: Callable[[], float]) -> None:
        self.conn = conn
        self.key = key
        self.deliver = deliver
        self.linger = linger
        self.last = b"0"
        self.done: list[bytes] = []  # handled entries, deleted with the next read
        self._read_cmd: list[Union[bytes, str, int]] = [
            b"XREAD", b"COUNT", READ_COUNT, b"BLOCK", b"1000", b"STREAMS", key]
        self._stopped = False
        self._task: Optional[asyncio.Task[None]] = None  # connecting, or a slow batch
        self._timer: Optional[asyncio.TimerHandle] = None

    def start(self) -> None:
        self._read()

    async def stop(self) -> None:
        """Stop reading; what was handled is deleted, so it does not come back at the
        next start (best effort: a survivor or the next start sees it again)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        await forget(self.conn, self.key, self.done)
        self.conn.close()

    def _later(self, work: Awaitable[None]) -> None:
        self._task = asyncio.ensure_future(work)

    def _read(self) -> None:
        self._timer = None
        if self._stopped:
            return
        cmds: list[list[Union[bytes, str, int]]] = [self._read_cmd + [self.last]]
        if self.done:
            cmds.insert(0, [b"XDEL", self.key, *self.done])
        if not self.conn.call(cmds, self._replied):
            self._later(self._connect())

    async def _connect(self) -> None:
        try:
            await self.conn.connect()
        except Exception as e:  # noqa: BLE001 - Redis away: try again
            log.warning("cluster: reading %s failed: %s", self.key.decode(), e)
            await asyncio.sleep(0.5)
        self._read()

    def _replied(self, res: Union[list[Any], Exception]) -> None:
        if self._stopped:
            return  # not handled: the entries stay for the next start (or a survivor)
        if isinstance(res, Exception):
            log.warning("cluster: reading %s failed: %s", self.key.decode(), res)
            self._timer = asyncio.get_running_loop().call_later(0.5, self._read)
            return
        self.done.clear()  # the XDEL went with this read
        entries = stream_entries(res[-1])
        if not entries:
            self._read()
            return
        ids, payloads = split_entries(entries)
        self.last = ids[-1]
        if len(payloads) > YIELD_EVERY:
            self._later(self._finish(ids, handle_in_chunks(self.deliver, payloads)))
            return
        waits = _deliver(self.deliver, payloads)
        if waits:
            self._later(self._finish(ids, settle(waits)))
            return
        self._handled(ids)

    async def _finish(self, ids: list[bytes], work: Awaitable[None]) -> None:
        await work
        self._handled(ids)

    def _handled(self, ids: list[bytes]) -> None:
        self.done.extend(ids)
        wait = self.linger() if len(ids) < READ_COUNT else 0.0
        if wait > 0:
            self._timer = asyncio.get_running_loop().call_later(wait, self._read)
        else:
            self._read()
