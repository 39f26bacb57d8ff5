"""The reader of a node's own queue (xmppd/cluster/reader.py) and the callback calls of
the lean Redis connection it uses, on a real redis-server: entries are handled where
their reply is read, deleted with the next read, a backlog in chunks, and what must be
stored first is waited for before Redis forgets it."""

from __future__ import annotations

import asyncio
from typing import Any, Optional, Union

import redis
from helpers.nodes import until
from helpers.procs import RedisServer

from xmppd.cluster.entries import pack_entry
from xmppd.cluster.reader import YIELD_EVERY, QueueReader
from xmppd.cluster.resp import RespConnection, RespError


def _conn(redis_server: RedisServer) -> RespConnection:
    return RespConnection(host="127.0.0.1", port=redis_server.port)


def _add(redis_server: RedisServer, key: str, payloads: list[bytes]) -> None:
    field, value = pack_entry(payloads)
    redis.Redis(host="127.0.0.1", port=redis_server.port).xadd(key, {field: value})


def _length(redis_server: RedisServer, key: str) -> int:
    return int(redis.Redis(host="127.0.0.1", port=redis_server.port).xlen(key))


def test_a_call_gets_its_replies_or_its_error_in_the_callback(redis_server: RedisServer) -> None:
    async def main() -> tuple[bool, list[Union[list[Any], Exception]]]:
        c = _conn(redis_server)
        got: list[Union[list[Any], Exception]] = []
        before = c.call([["PING"]], got.append)  # not connected yet: nothing sent
        await c.connect()
        c.call([["SET", "rd:k", "v"], ["GET", "rd:k"]], got.append)
        c.call([["INCR", "rd:k"]], got.append)  # an error reply
        c.call([["BLPOP", "rd:nothing", "5"]], got.append)  # waits: the connection goes
        await until(lambda: len(got) == 2, 5)
        c.close()
        await until(lambda: len(got) == 3, 5)
        return before, got

    before, got = asyncio.run(main())
    assert before is False
    assert got[0] == [b"OK", b"v"]
    assert isinstance(got[1], RespError) and "not an integer" in str(got[1])
    assert isinstance(got[2], ConnectionError)


def test_the_reader_hands_entries_over_where_it_reads_them(redis_server: RedisServer) -> None:
    key = "rd:q1"
    _add(redis_server, key, [b"one"])
    _add(redis_server, key, [b"two", b"three"])

    async def main() -> tuple[list[bytes], list[Optional[asyncio.Task[Any]]], int]:
        seen: list[bytes] = []
        tasks: list[Optional[asyncio.Task[Any]]] = []

        def deliver(payloads: list[bytes]) -> None:
            seen.extend(payloads)
            tasks.append(asyncio.current_task())

        reader = QueueReader(_conn(redis_server), key.encode(), deliver, lambda: 0.0)
        reader.start()
        await until(lambda: len(seen) == 3, 5)
        _add(redis_server, key, [b"four"])  # a blocking read is waiting for it
        await until(lambda: len(seen) == 4, 5)
        # the entries handled are deleted with the next read
        await until(lambda: _length(redis_server, key) == 0, 5)
        left = _length(redis_server, key)
        await reader.stop()
        return seen, tasks, left

    seen, tasks, left = asyncio.run(main())
    assert seen == [b"one", b"two", b"three", b"four"]
    # handed over in the connection's callback: no task woken for it, no turn of the loop
    assert tasks == [None, None]
    assert left == 0


def test_what_a_busy_node_reads_at_once_is_handled_in_the_callback(
        redis_server: RedisServer) -> None:
    """Eight writes of the other node, 512 stanzas each (its biggest), read together after
    a long turn: still handled where they are read, in one call. Chunked, each part would
    wait a turn, and the next read for the last part (the crossing fell behind)."""
    key = "rd:q3"
    payloads = [b"w%d" % i for i in range(8 * 512)]
    for i in range(0, len(payloads), 512):
        _add(redis_server, key, payloads[i:i + 512])

    async def main() -> tuple[list[int], list[Optional[asyncio.Task[Any]]], list[bytes]]:
        sizes: list[int] = []
        tasks: list[Optional[asyncio.Task[Any]]] = []
        seen: list[bytes] = []

        def deliver(batch: list[bytes]) -> None:
            sizes.append(len(batch))
            tasks.append(asyncio.current_task())
            seen.extend(batch)

        reader = QueueReader(_conn(redis_server), key.encode(), deliver, lambda: 0.0)
        reader.start()
        await until(lambda: len(seen) == len(payloads), 5)
        await reader.stop()
        return sizes, tasks, seen

    sizes, tasks, seen = asyncio.run(main())
    assert sizes == [len(payloads)]
    assert tasks == [None]
    assert seen == payloads


def test_a_backlog_is_handled_in_chunks(redis_server: RedisServer) -> None:
    key = "rd:q2"
    payloads = [b"p%d" % i for i in range(2 * YIELD_EVERY + 200)]
    _add(redis_server, key, payloads)

    async def main() -> tuple[list[int], list[bytes]]:
        sizes: list[int] = []
        seen: list[bytes] = []

        def deliver(batch: list[bytes]) -> None:
            sizes.append(len(batch))
            seen.extend(batch)

        reader = QueueReader(_conn(redis_server), key.encode(), deliver, lambda: 0.0)
        reader.start()
        await until(lambda: len(seen) == len(payloads), 5)
        await until(lambda: _length(redis_server, key) == 0, 5)
        await reader.stop()
        return sizes, seen

    sizes, seen = asyncio.run(main())
    assert sizes == [YIELD_EVERY, YIELD_EVERY, 200]
    assert seen == payloads
    assert _length(redis_server, key) == 0


def test_what_must_be_stored_first_stays_in_redis_until_it_is(redis_server: RedisServer) -> None:
    key = "rd:q3"
    _add(redis_server, key, [b"journalled"])

    async def main() -> tuple[int, bool]:
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seen: list[bytes] = []

        def deliver(batch: list[bytes]) -> list[asyncio.Future[None]]:
            seen.extend(batch)
            return [stored]

        reader = QueueReader(_conn(redis_server), key.encode(), deliver, lambda: 0.0)
        reader.start()
        await until(lambda: bool(seen), 5)
        await asyncio.sleep(0.3)
        waiting = _length(redis_server, key)
        stored.set_result(None)
        gone = await until(lambda: _length(redis_server, key) == 0, 5)
        await reader.stop()
        return waiting, gone

    waiting, gone = asyncio.run(main())
    assert waiting == 1  # not deleted while the store had not taken it
    assert gone          # deleted with the read after it had


def test_stopping_deletes_what_was_handled(redis_server: RedisServer) -> None:
    key = "rd:q5"
    _add(redis_server, key, [b"x"])

    async def main() -> tuple[int, int]:
        seen: list[bytes] = []
        # a long wait after the read: the entry is handled, its delete not yet sent
        reader = QueueReader(_conn(redis_server), key.encode(), seen.extend, lambda: 30.0)
        reader.start()
        await until(lambda: bool(seen), 5)
        handled = _length(redis_server, key)
        await reader.stop()
        return handled, _length(redis_server, key)

    assert asyncio.run(main()) == (1, 0)


def test_the_reader_waits_between_reads_when_told(redis_server: RedisServer) -> None:
    key = "rd:q4"

    async def main() -> list[list[bytes]]:
        reads: list[list[bytes]] = []
        reader = QueueReader(_conn(redis_server), key.encode(),
                             lambda batch: reads.append(batch), lambda: 0.5)
        reader.start()
        _add(redis_server, key, [b"a"])
        await until(lambda: bool(reads), 5)
        # these come while the reader waits: one read takes both
        _add(redis_server, key, [b"b"])
        _add(redis_server, key, [b"c"])
        await until(lambda: len(reads) == 2, 5)
        await reader.stop()
        return reads

    assert asyncio.run(main()) == [[b"a"], [b"b", b"c"]]
