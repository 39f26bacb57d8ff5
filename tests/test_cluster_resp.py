"""The lean Redis connections of the hand-over path (xmppd/cluster/resp.py, and the queue
reader's polled one, xmppd/cluster/polled.py), on a real redis-server: replies in order,
errors, a lost connection, AUTH and SELECT; a polled connection's replies read between two
turns of the event loop."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from helpers.nodes import hand_over, two_backends, until
from helpers.procs import RedisServer

from xmppd.cluster.polled import PolledConnection
from xmppd.cluster.resp import RespConnection, RespError, pack, stream_entries

WORD = "s3cret"  # the private server's requirepass
# every test of a connection runs with both kinds
Conn = pytest.mark.parametrize("conn", [RespConnection, PolledConnection],
                               ids=["transport", "polled"])


def test_pack_is_resp() -> None:
    assert pack(["SET", b"k", 12]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


@Conn
def test_pipelined_replies_come_in_order(redis_server: RedisServer,
                                         conn: type[RespConnection]) -> None:
    async def main() -> list[object]:
        c = conn(host="127.0.0.1", port=redis_server.port)
        try:
            await c.execute([["DEL", "resp:s", "resp:n"]])
            return await c.execute([["INCR", "resp:n"], ["INCR", "resp:n"],
                                    ["XADD", "resp:s", "*", "p", b"one\x00\xff"],
                                    ["XADD", "resp:s", "*", "m", b"two"],
                                    ["XREAD", "COUNT", "10", "STREAMS", "resp:s", "0"]])
        finally:
            c.close()

    one, two, id1, id2, read = asyncio.run(main())
    assert (one, two) == (1, 2)
    assert stream_entries(read) == [(id1, {b"p": b"one\x00\xff"}), (id2, {b"m": b"two"})]
    # what redis-py reads is the same
    r = redis.Redis(host="127.0.0.1", port=redis_server.port)
    assert r.xread({"resp:s": "0"}) == [[b"resp:s", [(id1, {b"p": b"one\x00\xff"}),
                                                     (id2, {b"m": b"two"})]]]


@Conn
def test_an_error_reply_raises_and_the_connection_goes_on(redis_server: RedisServer,
                                                          conn: type[RespConnection]) -> None:
    async def main() -> tuple[str, list[object]]:
        c = conn(host="127.0.0.1", port=redis_server.port)
        try:
            with pytest.raises(RespError) as err:
                await c.execute([["SET", "resp:k", "word"], ["INCR", "resp:k"],
                                 ["SET", "resp:after", "1"]])
            return str(err.value), await c.execute([["GET", "resp:k"], ["GET", "resp:after"]])
        finally:
            c.close()

    msg, after = asyncio.run(main())
    assert "not an integer" in msg
    assert after == [b"word", b"1"]  # the other commands of the batch ran


@Conn
def test_a_cancelled_call_does_not_shift_the_replies(redis_server: RedisServer,
                                                     conn: type[RespConnection]) -> None:
    async def main() -> list[object]:
        c = conn(host="127.0.0.1", port=redis_server.port)
        try:
            await c.execute([["DEL", "resp:empty"]])
            blocked = asyncio.ensure_future(
                c.execute([["XREAD", "BLOCK", "300", "STREAMS", "resp:empty", "$"]]))
            await asyncio.sleep(0.05)
            blocked.cancel()
            # its reply (nil, after 300 ms) still comes first on the connection
            return await c.execute([["PING"], ["ECHO", "x"]])
        finally:
            c.close()

    assert asyncio.run(main()) == [b"PONG", b"x"]


@Conn
def test_a_lost_connection_fails_and_the_next_call_connects_again(
        conn: type[RespConnection]) -> None:
    srv = RedisServer().start()
    try:
        async def main() -> tuple[BaseException, list[object]]:
            c = conn(host="127.0.0.1", port=srv.port)
            await c.execute([["SET", "resp:x", "1"]])
            srv.stop()
            try:
                await c.execute([["GET", "resp:x"]])
            except (ConnectionError, OSError) as e:
                lost: BaseException = e
            else:
                raise AssertionError("a call on a dead server succeeded")
            srv.start()
            try:
                return lost, await c.execute([["SET", "resp:x", "2"], ["GET", "resp:x"]])
            finally:
                c.close()

        lost, again = asyncio.run(main())
        assert isinstance(lost, (ConnectionError, OSError))
        assert again == [b"OK", b"2"]
    finally:
        srv.stop()


@Conn
def test_password_and_database(conn: type[RespConnection]) -> None:
    srv = RedisServer().start()
    try:
        admin = redis.Redis(host="127.0.0.1", port=srv.port)
        admin.config_set("requirepass", WORD)
        admin = redis.Redis(host="127.0.0.1", port=srv.port, password=WORD, db=3)

        async def main() -> tuple[BaseException, list[object]]:
            wrong = conn(host="127.0.0.1", port=srv.port, password=WORD + "x")
            try:
                await wrong.execute([["PING"]])
            except RespError as e:
                refused: BaseException = e
            else:
                raise AssertionError("a wrong password was taken")
            finally:
                wrong.close()
            c = conn(host="127.0.0.1", port=srv.port, password=WORD, db=3)
            try:
                return refused, await c.execute([["SET", "resp:db", "three"]])
            finally:
                c.close()

        refused, ok = asyncio.run(main())
        assert "WRONGPASS" in str(refused) or "invalid" in str(refused)
        assert ok == [b"OK"]
        assert admin.get("resp:db") == b"three"  # in database 3
    finally:
        srv.stop()


def test_hand_overs_go_on_after_redis_restarts() -> None:
    """Redis goes away and comes back (empty: no persistence). A hand-over sent during the
    outage is retried; the writer and the queue reader connect again, and the payload
    arrives once (at its node, or at the node that took its queue over)."""
    srv = RedisServer().start()
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    try:
        async def main() -> tuple[bool, bool]:
            async with two_backends(srv.port, got_a.extend, got_b.extend,
                                    heartbeat=0.2) as (a, _b):
                await asyncio.sleep(0.5)
                before = hand_over(a, "b@test", b"D0 x@localhost/r\n<message id='before'/>")
                assert await before
                await until(lambda: bool(got_b), 2)
                srv.stop()
                during = hand_over(a, "b@test", b"D0 x@localhost/r\n<message id='during'/>")
                await asyncio.sleep(0.3)  # the first tries fail
                srv.start()
                taken = await asyncio.wait_for(during, 10)
                await until(lambda: len(got_a) + len(got_b) >= 2, 5)
                await asyncio.sleep(0.3)  # nothing comes twice
                return bool(got_b), taken

        first_arrived, taken = asyncio.run(main())
    finally:
        srv.stop()
    assert first_arrived and taken
    payloads = got_a + got_b
    assert sorted(payloads) == sorted([b"D0 x@localhost/r\n<message id='before'/>",
                                       b"D0 x@localhost/r\n<message id='during'/>"])


@Conn
def test_a_reply_that_does_not_come_times_out_and_the_next_call_connects_again(
        redis_server: RedisServer, conn: type[RespConnection]) -> None:
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port)

    async def main() -> tuple[BaseException, float, list[object]]:
        c = conn(host="127.0.0.1", port=redis_server.port, timeout=0.5)
        try:
            await c.execute([["PING"]])
            admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")  # writes wait
            t = time.monotonic()
            try:
                await c.execute([["SET", "resp:paused", "1"]])
            except TimeoutError as e:
                err: BaseException = e
            else:
                raise AssertionError("a write during the pause was answered")
            waited = time.monotonic() - t
            return err, waited, await c.execute([["ECHO", "reads go on"]])  # a new connection
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            c.close()

    err, waited, after = asyncio.run(main())
    assert "did not answer" in str(err) and 0.4 < waited < 5
    assert after == [b"reads go on"]


def test_a_polled_connection_reads_replies_between_turns(redis_server: RedisServer) -> None:
    """The queue reader's connection (polled.py): its replies are read by ``poll()`` while
    the event loop does not turn (as between two client reads of one turn)."""
    async def main() -> list[object]:
        c = PolledConnection(host="127.0.0.1", port=redis_server.port)
        await c.connect()
        got: list[object] = []
        try:
            assert c.call([["PING"], ["ECHO", "x"]], got.append)
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:  # (no await: no turn)
                c.poll()
                time.sleep(0.001)
            return got
        finally:
            c.close()

    assert asyncio.run(main()) == [[b"PONG", b"x"]]
