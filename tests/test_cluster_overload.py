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
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import run
from helpers.nodes import hand_over, two_backends, until
from helpers.procs import RedisServer
from helpers.raw import C, RawClient
from helpers.web import BoshClient, WSClient, web_listeners
from test_cluster import make_cluster

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
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """More hand-overs waiting than the high mark: the node stops reading its clients
    (they are slowed down, nothing bounces), and reads again below the low mark."""
    import xmppd.cluster.redis as cr

    monkeypatch.setattr(cr, "BACKLOG_HIGH", 50)
    monkeypatch.setattr(cr, "BACKLOG_LOW", 10)
    got: list[bytes] = []

    async def main() -> tuple[list[bool], list[bool]]:
        async with two_backends(redis_server.port, lambda p: None, got.extend) as (a, _b):
            changes: list[bool] = []
            a.on_backlog = changes.append
            await asyncio.sleep(1.5)  # a sees b alive
            futs = [hand_over(a, "b@test", b"D0 x@localhost/r\n<message/>") for _ in range(200)]
            held_at_once = list(changes)
            results = await asyncio.gather(*futs)  # type: ignore[arg-type]
            assert all(results)  # Redis took every one: none bounced
            await until(lambda: len(got) >= 200, 5)
            return held_at_once, changes

    held_at_once, changes = asyncio.run(main())
    assert held_at_once == [True]
    assert changes == [True, False]
    assert len(got) == 200  # and every one reached the other node


def test_held_reads_hold_websocket_bosh_and_tcp_clients(
        make_server: Any, redis_server: RedisServer, tmp_path: Path) -> None:
    """Redis stalls (CLIENT PAUSE WRITE: hand-overs wait, keys do not expire) while a
    WebSocket client floods a user on the other node: past the high mark the node stops
    reading its clients over every transport, and once Redis takes writes again all
    the messages arrive and the held requests are answered."""
    flood = 21_000  # more than BACKLOG_HIGH (20,000) hand-overs
    made: list[Any] = []

    def web_on_the_first(**kw: Any) -> Any:
        srv = make_server(**kw)
        if not made:
            web_listeners(srv)  # WebSocket and BOSH on node0
        made.append(srv)
        return srv

    node0, node1 = make_cluster(web_on_the_first, redis_server, tmp_path, n=2,
                                users=("alice", "bob", "carol", "dave"))
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port)

    def ping(i: str) -> str:
        return (f"<iq xmlns='jabber:client' type='get' id='{i}' to='localhost'>"
                "<ping xmlns='urn:xmpp:ping'/></iq>")

    def is_result(i: str) -> Any:
        return lambda e: e.tag == C + "iq" and e.get("id") == i

    async def main() -> tuple[int, bool, bool, bool]:
        bob = RawClient(node1.c2s_tls, tls=True)
        await bob.login("bob", "pw", "raw")
        ws = WSClient(f"ws://127.0.0.1:{node0.http}/ws")
        await ws.login("alice", "pw")
        tcp = RawClient(node0.c2s_tls, tls=True)
        await tcp.login("carol", "pw")
        bosh = BoshClient(f"http://127.0.0.1:{node0.http}/bosh")
        await bosh.login("dave", "pw")
        await asyncio.sleep(0.5)  # node0 sees bob on node1
        admin.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
        try:
            assert ws.ws is not None
            for n in range(flood):
                await ws.ws.send_str(f"<message xmlns='jabber:client' to='bob@localhost/raw' "
                                     f"type='chat' id='f{n}'><body>{n}</body></message>")
            assert await until(lambda: "pausing reading from clients" in node0.log, 30), \
                "node0 never held its clients"
            await ws.send(ping("ws"))
            await tcp.send(ping("tcp"))
            await bosh.send(ping("bosh"))
            waits = [asyncio.ensure_future(c.recv_until(is_result(i), 60))
                     for c, i in ((ws, "ws"), (tcp, "tcp"), (bosh, "bosh"))]
            await asyncio.sleep(1.0)
            held = [not w.done() for w in waits]
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        answered = all(el is not None for el in await asyncio.gather(*waits))
        got = 0
        while got < flood:
            el = await bob.recv(30)
            if el.tag == C + "message":
                got += 1
        for c in (ws, tcp, bob):
            await c.close()
        return got, all(held), answered, "resuming reading from clients" in node0.log

    got, held, answered, resumed = run(main())
    assert held, "a client was still read while the node held its reads"
    assert answered and resumed
    assert got == flood  # nothing bounced, nothing lost


def test_a_stalled_redis_releases_held_reads_and_hand_overs_go_on(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis stops answering writes: the writer's call times out, so the node counts
    Redis as failing and lets its clients be read again (local traffic goes on) instead
    of holding them until Redis answers; the hand-overs are retried, none is lost."""
    import xmppd.cluster.redis as cr
    import xmppd.cluster.resp as resp

    monkeypatch.setattr(cr, "BACKLOG_HIGH", 50)
    monkeypatch.setattr(cr, "BACKLOG_LOW", 10)
    monkeypatch.setattr(resp, "REPLY_TIMEOUT", 0.5)
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port)
    got: list[bytes] = []

    async def main() -> list[bool]:
        async with two_backends(redis_server.port, lambda p: None, got.extend) as (a, _b):
            changes: list[bool] = []
            a.on_backlog = changes.append
            await asyncio.sleep(1.5)  # a sees b alive
            admin.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
            try:
                for n in range(200):
                    a.send("b@test", b"D0 x@localhost/r\n<message id='%d'/>" % n)
                await until(lambda: changes == [True, False], 3)
                during = list(changes)  # before Redis answers again
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
            await until(lambda: len(set(got)) >= 200, 10)
            return during

    during = asyncio.run(main())
    assert during == [True, False]  # held, then released while Redis did not answer
    assert len(set(got)) == 200  # every hand-over arrived after all


def test_writes_go_out_without_waiting_for_replies_and_keep_their_order(
        redis_server: RedisServer) -> None:
    """While Redis does not answer (CLIENT PAUSE WRITE), the writer sends the next batches
    anyway (up to MAX_IN_FLIGHT), not one per reply; once Redis answers, every stanza
    arrives, in the order it was handed over, and each sender hears it was taken."""
    import xmppd.cluster.redis as cr

    admin = redis.Redis(host="127.0.0.1", port=redis_server.port)
    got: list[bytes] = []

    async def main() -> tuple[int, list[bool]]:
        async with two_backends(redis_server.port, lambda p: None, got.extend) as (a, _b):
            await asyncio.sleep(1.5)  # a sees b alive
            admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
            futs = []
            most = 0
            for n in range(6):  # six batches, more than one write interval apart
                futs.append(hand_over(a, "b@test", b"D0 x@localhost/r\n<message id='%d'/>" % n))
                await asyncio.sleep(cr.WRITE_LINGER * 3)
                most = max(most, a._in_flight)
            taken = await asyncio.gather(*futs)
            await until(lambda: len(got) >= 6, 5)
            return most, list(taken)

    most, taken = asyncio.run(main())
    assert most == cr.MAX_IN_FLIGHT  # sent without waiting for the replies, up to the bound
    assert taken == [True] * 6
    assert got == [b"D0 x@localhost/r\n<message id='%d'/>" % n for n in range(6)]
