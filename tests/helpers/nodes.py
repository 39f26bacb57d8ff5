"""Cluster backends in the test process, on a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from xmppd.cluster.redis import RedisBackend


@asynccontextmanager
async def two_backends(port: int, deliver_a: Callable[[list[bytes]], Any],
                       deliver_b: Callable[[list[bytes]], Any],
                       **kw: Any) -> AsyncIterator[tuple[RedisBackend, RedisBackend]]:
    """Nodes ``a@test`` and ``b@test``, started (stopped on the way out)."""
    a = RedisBackend("a@test", host="127.0.0.1", port=port, **kw)
    b = RedisBackend("b@test", host="127.0.0.1", port=port, **kw)
    await a.start(deliver_a)
    await b.start(deliver_b)
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def hand_over(backend: RedisBackend, node: str, payload: bytes) -> asyncio.Future[bool]:
    """``backend.send``, with a future of what its callback says (taken or given up)."""
    fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def done(taken: bool) -> None:
        if not fut.done():
            fut.set_result(taken)
    backend.send(node, payload, done)
    return fut


async def until(cond: Callable[[], bool], timeout: float) -> bool:
    """Wait for ``cond()`` (polled every 50 ms) at most ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()
