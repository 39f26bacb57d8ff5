"""Reads that go to the database together: those asked for while a batch runs form
the next one (one thread hop and one query for a burst of logins, say)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Optional, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchedReads(Generic[K, V]):
    """``get(key)`` returns a future of ``read_many([keys])[key]`` (None when the key
    is not in the answer). At most ``max_in_flight`` batches run at once; a batch that
    fails fails every future in it."""

    def __init__(self, read_many: Callable[[list[K]], Awaitable[dict[K, V]]],
                 max_in_flight: int = 1) -> None:
        self.read_many = read_many
        self.max_in_flight = max_in_flight
        self._waiting: dict[K, list[asyncio.Future[Optional[V]]]] = {}
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, key: K) -> asyncio.Future[Optional[V]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Optional[V]] = loop.create_future()
        waiters = self._waiting.get(key)
        if waiters is None:
            self._waiting[key] = [fut]
        else:
            waiters.append(fut)
        if self._in_flight < self.max_in_flight and len(self._waiting) == 1:
            loop.call_soon(self._start)  # what the rest of this turn asks for joins
        return fut

    def _start(self) -> None:
        if not self._waiting or self._in_flight >= self.max_in_flight:
            return
        batch, self._waiting = self._waiting, {}
        self._in_flight += 1
        task = asyncio.ensure_future(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[K, list[asyncio.Future[Optional[V]]]]) -> None:
        try:
            found = await self.read_many(list(batch))
        except Exception as e:
            for futs in batch.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(e)
            return
        finally:
            self._in_flight -= 1
            if self._waiting:
                self._start()  # what came in meanwhile
        for key, futs in batch.items():
            value = found.get(key)
            for f in futs:
                if not f.done():
                    f.set_result(value)

    @property
    def busy(self) -> bool:
        """Keys wait or a batch runs."""
        return bool(self._waiting or self._tasks)

    async def drain(self) -> None:
        """Wait until no key waits and no batch runs."""
        while self.busy:
            if not self._tasks:
                await asyncio.sleep(0)  # a batch starts on the next turn
                continue
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
