"""A cluster node under overload: busy, not dead; slowed down, not bouncing.

Under a backlog a node's event loop can be held for seconds. Its heartbeat runs in a
thread, so the node stays in the cluster (what others hand it waits in its queue);
only a node that stops altogether is dropped. And when hand-overs pile up faster
than Redis takes them, the node stops reading its clients until the queue drains,
instead of bouncing what overflows.
"""

from __future__ import annotations

import asyncio
import time

import redis

from helpers.procs import RedisServer
from xmppd.cluster.redis import PREFIX, RedisBackend


def test_a_node_whose_loop_is_blocked_past_the_ttl_stays_alive(
        redis_server: RedisServer) -> None:
    watcher = redis.Redis(host="127.0.0.1", port=redis_server.port)

    async def main() -> tuple[bool, bool, bool]:
        busy = RedisBackend("busy@test", host="127.0.0.1", port=redis_server.port,
                            heartbeat=0.2, ttl=1.0)
        other = RedisBackend("other@test", host="127.0.0.1", port=redis_server.port,
                             heartbeat=0.2, ttl=1.0)
        await busy.start(lambda p: None)
        await other.start(lambda p: None)
        try:
            await asyncio.sleep(0.5)
            # both backends share this loop: hold it three times the TTL
            time.sleep(3.0)
            key_kept = watcher.get(PREFIX + "node:busy@test") is not None
            await asyncio.sleep(0.6)  # the watchers run again
            still_alive = "busy@test" in other.nodes()
            in_set = watcher.sismember(PREFIX + "nodes", "busy@test")
            return key_kept, still_alive, bool(in_set)
        finally:
            await other.stop()
            await busy.stop()

    key_kept, still_alive, in_set = asyncio.run(main())
    assert key_kept, "the heartbeat key expired while the loop was busy"
    assert still_alive and in_set
    # a stopped node leaves at once, and its heartbeat does not bring the key back
    time.sleep(0.5)
    assert watcher.get(PREFIX + "node:busy@test") is None
    assert not watcher.sismember(PREFIX + "nodes", "busy@test")


def test_a_long_hand_over_queue_holds_client_reads_until_it_drains(
        redis_server: RedisServer, monkeypatch: object) -> None:
    """More hand-overs waiting than the high mark: the node stops reading its clients
    (they are slowed down, nothing bounces), and reads again below the low mark."""
    import xmppd.cluster.redis as cr

    monkeypatch.setattr(cr, "BACKLOG_HIGH", 50)  # type: ignore[attr-defined]
    monkeypatch.setattr(cr, "BACKLOG_LOW", 10)  # type: ignore[attr-defined]
    got: list[bytes] = []

    async def main() -> tuple[list[bool], list[bool]]:
        a = RedisBackend("a@test", host="127.0.0.1", port=redis_server.port)
        b = RedisBackend("b@test", host="127.0.0.1", port=redis_server.port)
        changes: list[bool] = []
        a.on_backlog = changes.append
        await a.start(lambda p: None)
        await b.start(got.append)
        try:
            await asyncio.sleep(1.5)  # a sees b alive
            futs = [a.send("b@test", b"D0 x@localhost/r\n<message/>") for _ in range(200)]
            held_at_once = list(changes)
            results = await asyncio.gather(*futs)  # type: ignore[arg-type]
            assert all(results)  # Redis took every one: none bounced
            for _ in range(100):
                if len(got) >= 200:
                    break
                await asyncio.sleep(0.05)
            return held_at_once, changes
        finally:
            await b.stop()
            await a.stop()

    held_at_once, changes = asyncio.run(main())
    assert held_at_once == [True]
    assert changes == [True, False]
    assert len(got) == 200  # and every one reached the other node
