"""Group commit: many small writes, one transaction per batch.

``GroupCommit.submit(op)`` queues ``op(connection)`` and returns a future that
resolves with its result once the transaction holding it is committed. A batch
starts ``interval`` seconds after the first queued op (or at once when
``max_ops`` are queued); while one batch commits, the next one fills up, so
under load the batch size follows the commit latency. Batches commit one at a
time, in submission order, so an op never becomes durable before one
submitted earlier.

A failing op must not take its neighbours down: when a batch fails it is
retried one op per transaction and only the failing op's future gets the
exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from .engine import Database

log = logging.getLogger(__name__)

Op = Callable[[Connection], Any]


class GroupCommit:
    def __init__(self, db: Database, interval: float = 0.002, max_ops: int = 500) -> None:
        self.db = db
        self.interval = interval
        self.max_ops = max_ops
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._timer: Optional[asyncio.TimerHandle] = None
        self._running: Optional[asyncio.Task[None]] = None
        self._last: Optional[asyncio.Future[Any]] = None
        self.batches = 0
        self.ops = 0

    def submit(self, op: Op) -> asyncio.Future[Any]:
        """Queue ``op``; the future resolves after its batch is committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((op, fut))
        self._last = fut
        if self._running is None:
            if len(self._pending) >= self.max_ops:
                self._start()
            elif self._timer is None:
                self._timer = loop.call_later(self.interval, self._start)
        return fut

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])  # batches commit in order: the last one is enough

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is None and self._pending:
            self._running = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[:self.max_ops]
                del self._pending[:self.max_ops]
                ops = [op for op, _ in batch]
                try:
                    results = await self.db.run(_run_all(ops))
                except Exception:
                    log.exception("group commit of %d ops failed; retrying one by one", len(ops))
                    results = []
                    for op in ops:
                        try:
                            results.append(await self.db.run(op))
                        except Exception as e:  # noqa: BLE001 - handed to the op's future
                            results.append(_Failed(e))
                self.batches += 1
                self.ops += len(ops)
                log.debug("group commit %d: %d ops", self.batches, len(ops))
                for (_, fut), res in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(res, _Failed):
                        fut.set_exception(res.exc)
                    else:
                        fut.set_result(res)
                if self._pending and len(self._pending) < self.max_ops:
                    await asyncio.sleep(0)  # let the ops of this loop turn join the batch
        finally:
            self._running = None
            if self._pending and loop.is_running():
                self._start()


def _run_all(ops: list[Op]) -> Callable[[Connection], list[Any]]:
    return lambda conn: [op(conn) for op in ops]


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
