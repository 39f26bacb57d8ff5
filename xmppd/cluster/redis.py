"""The Redis cluster backend: a shared session directory and a queue per node.

Keys (all prefixed ``xmppd:``):

- ``node:<node>``: a heartbeat string with a TTL; a node without one is dead;
- ``nodes``: the set of node names seen;
- ``dir:<node>``: a hash ``full JID -> "priority|available|since"`` of the node's
  sessions, refreshed with a TTL so the entries of a dead node vanish on their own;
- channel ``dirchg``: directory changes, so every node keeps a local replica and
  routing reads it without a network round trip;
- stream ``q:<node>``: payloads handed to the node (see :mod:`.envelope`), one
  per entry or, when a write batch holds several for the node, all of them in one
  entry (see :mod:`.entries`). The node reads its stream with a
  :class:`.reader.QueueReader` and deletes an entry once it has handled it; when a
  node dies, one survivor claims its stream and routes what is left there.

Writes go through one writer task, in order, in pipelines, up to MAX_IN_FLIGHT
of them sent before the first is answered (the replies are handled where they
are read). A hand-over that fails is retried with back-off; after the last retry
the sender is told. The stream writes and reads, hundreds of small batches a
second, go over lean connections of their own (:mod:`.resp`); the rest uses
redis-py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Optional, Union

from ..jid import JID, JIDError
from .base import SessionEntry
from .entries import pack_entry, split_entries
from .polled import PolledConnection
from .reader import QueueReader, forget, handle_in_chunks
from .resp import RespConnection, stream_entries

log = logging.getLogger(__name__)

PREFIX = "xmppd:"
RETRIES = 5
LINGER = 0.010        # seconds the queue reader waits after a read, with 3+ nodes
WRITE_LINGER = 0.010  # seconds between two writes of the writer, at least
WRITE_BATCH = 512     # operations per write at most
MAX_IN_FLIGHT = 4     # writes sent whose replies have not come yet, at most
MAX_PENDING = 100_000
BACKLOG_HIGH = 20_000  # hand-overs waiting for Redis: stop reading from clients...
BACKLOG_LOW = 5_000    # ...until this few are left


def _encode(e: SessionEntry) -> str:
    return "%d|%d|%.6f|%s" % (e.priority, 1 if e.available else 0, e.since,
                              ",".join(sorted(e.flags)))


def _decode(node: str, full: str, value: str) -> Optional[SessionEntry]:
    try:
        prio, avail, since, flags = value.split("|")
        return SessionEntry(JID.parse(full), node, int(prio), avail == "1", float(since),
                            frozenset(f for f in flags.split(",") if f))
    except (ValueError, JIDError):
        return None


class RedisBackend:
    def __init__(self, node: str, *, host: str = "localhost", port: int = 6379, db: int = 0,
                 password: str = "", unix_socket: Optional[str] = None,
                 heartbeat: float = 1.0, ttl: float = 5.0) -> None:
        self.node = node
        self._conn_args: dict[str, Any] = {"db": db, "password": password or None,
                                           "decode_responses": False}
        if unix_socket:
            self._conn_args["unix_socket_path"] = unix_socket
        else:
            self._conn_args.update(host=host, port=port)
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.hops = 0  # hop count of the payload being handled (see envelope)
        self._r: Any = None
        self._w: Optional[RespConnection] = None  # the writer's lean connection (see resp)
        self._local: dict[JID, SessionEntry] = {}
        self._by_full: dict[JID, SessionEntry] = {}
        # by bare JID: read by the session registry for every stanza (see base)
        self.remote_by_bare: dict[JID, dict[JID, SessionEntry]] = {}
        self._alive: set[str] = {node}
        # what the writer sends next: ("xadd", node, payload, attempt, done) for
        # hand-overs, ("pub", entry) and ("unpub", jid) for the directory
        self._ops: deque[tuple[Any, ...]] = deque()
        # the writer waits for ops, or (MAX_IN_FLIGHT sent) for a reply
        self._wake: Optional[asyncio.Future[None]] = None
        self._in_flight = 0  # writes sent, not yet answered...
        self._in_flight_ops = 0  # ...and the operations in them
        self._tasks: list[asyncio.Task[Any]] = []
        self._reader: Optional[QueueReader] = None
        self._polled = PolledConnection()  # the reader's connection (replaced at start)
        self._deliver: Callable[[list[bytes]], Any] = lambda payloads: None
        self.on_conflict: Callable[[SessionEntry], None] = lambda e: None
        self.on_node_down: Callable[[str], Any] = lambda n: None
        self.on_send_failed: Callable[[str, bytes], None] = lambda n, p: None
        self.on_nodes_changed: Callable[[], None] = lambda: None
        # a stanza about to be handed over -> what to call once Redis took it (or None)
        self.on_handing: Optional[Callable[[Any], Optional[Callable[[bool], None]]]] = None
        self._beating: Optional[_Heartbeat] = None
        # overload: clients are read again once the hand-overs have gone out
        self.on_backlog: Callable[[bool], None] = lambda held: None
        self._held = False
        self._writes_ok = True
        self._last_write = 0.0  # time.monotonic() of the writer's last write

    # -- lifecycle -------------------------------------------------------------
    async def start(self, deliver: Callable[[list[bytes]], Any]) -> None:
        import redis.asyncio as aioredis

        self._deliver = deliver
        self._r = aioredis.Redis(**self._conn_args)
        self._w = RespConnection(**self._conn_args)
        r = self._r
        await r.ping()
        self._pubsub = r.pubsub()
        await self._pubsub.subscribe(PREFIX + "dirchg")
        # a previous incarnation of this node left sessions that no longer exist
        await r.delete(self._dir_key(self.node))
        await self._beat()
        await r.sadd(PREFIX + "nodes", self.node)
        await self._publish_change("J", "", None)
        await self._load_directory()
        self._tasks = [asyncio.ensure_future(t) for t in (
            self._writer(), self._listen(), self._watch_nodes())]
        from ..c2s.listener import set_between_reads
        conn = self._polled = PolledConnection(**self._conn_args)
        self._reader = QueueReader(conn, (PREFIX + "q:" + self.node).encode(), deliver,
                                   self._linger)
        self._reader.start()
        set_between_reads(self.between_reads)
        self._beating = _Heartbeat(self, asyncio.get_running_loop())
        self._beating.start()
        log.info("cluster: node %s joined (%d other nodes alive)", self.node, len(self._alive) - 1)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        reader, self._reader = self._reader, None
        if reader is not None:
            from ..c2s.listener import set_between_reads
            set_between_reads(None)
            await reader.stop()
        beating, self._beating = self._beating, None
        if beating is not None:
            # stopped before the node key is deleted, or it would set it again
            await asyncio.get_running_loop().run_in_executor(None, beating.stop)
        r = self._r
        if r is None:
            return
        try:
            await self._flush_ops()
            await r.delete(self._dir_key(self.node), PREFIX + "node:" + self.node)
            await r.srem(PREFIX + "nodes", self.node)
            await self._publish_change("L", "", None)
        except Exception as e:  # noqa: BLE001 - leaving anyway
            log.info("cluster: leaving without cleanup: %s", e)
        try:
            await self._pubsub.aclose()
            await r.aclose()
        except Exception:  # noqa: BLE001
            pass
        if self._w is not None:
            self._w.close()
        self._r = None

    # -- the seam ------------------------------------------------------------
    def publish(self, entry: SessionEntry) -> None:
        old = self._local.get(entry.jid)
        entry.since = old.since if old is not None else (entry.since or time.time())
        self._local[entry.jid] = entry
        self._enqueue(("pub", entry))

    def unpublish(self, jid: JID) -> None:
        if self._local.pop(jid, None) is not None:
            self._enqueue(("unpub", jid))

    def remote_sessions(self, bare: JID) -> list[SessionEntry]:
        d = self.remote_by_bare.get(bare)
        return list(d.values()) if d else []

    def remote_session(self, full: JID) -> Optional[SessionEntry]:
        return self._by_full.get(full)

    def send(self, node: str, payload: bytes,
             done: Optional[Callable[[bool], None]] = None) -> None:
        """Queue ``payload`` for ``node``; ``done(taken)`` is called once Redis took it
        (True) or the backend gave it up (False, after ``on_send_failed``)."""
        if node not in self._alive:
            self.on_send_failed(node, payload)
            if done is not None:
                done(False)
            return
        self._enqueue(("xadd", node, payload, 0, done))

    def broadcast(self, payload: bytes) -> None:
        """Hand ``payload`` to every other live node."""
        for node in self._alive:
            if node != self.node:
                self.send(node, payload)

    def nodes(self) -> list[str]:
        return sorted(self._alive)

    def all_remote(self) -> list[SessionEntry]:
        return list(self._by_full.values())

    # -- internals -------------------------------------------------------------
    def _linger(self) -> float:
        """How long the queue reader waits after a read of few entries. With one other
        node, not at all: its writer batches already (one entry per write, at most one
        write every WRITE_LINGER), and waiting would only add to every crossing's latency.
        With more, the wait gathers their entries into one read."""
        return LINGER if len(self._alive) > 2 else 0.0

    def _dir_key(self, node: str) -> str:
        return PREFIX + "dir:" + node

    def _enqueue(self, op: tuple[Any, ...]) -> None:
        q = self._ops
        n = len(q) + self._in_flight_ops  # waiting for Redis, sent or not
        if n >= MAX_PENDING and op[0] == "xadd":
            self._give_up(op)
            return
        q.append(op)
        if self._wake is not None:  # (per stanza that crosses: no call while the writer works)
            self._wake_writer()
        if n >= BACKLOG_HIGH and not self._held and self._writes_ok:
            # more is coming in than goes out: slow the senders down (TCP pushes
            # back on them) instead of letting the queue overflow into bounces
            self._set_held(True)

    def _wake_writer(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    def _set_held(self, held: bool) -> None:
        self._held = held
        # the hold is what an operator should see (it slows every client of the node)
        log.log(logging.WARNING if held else logging.INFO,
                "cluster: %d hand-overs waiting; %s reading from clients",
                len(self._ops) + self._in_flight_ops, "pausing" if held else "resuming")
        self.on_backlog(held)

    def _give_up(self, op: tuple[Any, ...]) -> None:
        self.on_send_failed(op[1], op[2])
        if op[4] is not None:
            op[4](False)

    async def claim(self, key: str, seconds: float) -> bool:
        px = None if seconds == float("inf") else max(1, int(seconds * 1000))
        return bool(await self._r.set(PREFIX + "claim:" + key, self.node, nx=True, px=px))

    async def release(self, key: str) -> None:
        await self._r.delete(PREFIX + "claim:" + key)

    async def _publish_change(self, op: str, full: str, entry: Optional[SessionEntry]) -> None:
        value = _encode(entry) if entry is not None else ""
        await self._r.publish(PREFIX + "dirchg", f"{op}\t{self.node}\t{full}\t{value}")

    def _beat_into(self, pipe: Any) -> Any:
        """The heartbeat's commands (on a pipeline of the asyncio or the blocking client);
        the reply's second item is 1 if others had taken this node for dead meanwhile."""
        pipe.set(PREFIX + "node:" + self.node, str(time.time()), px=int(self.ttl * 1000))
        pipe.sadd(PREFIX + "nodes", self.node)
        pipe.expire(self._dir_key(self.node), int(self.ttl * 3))
        return pipe

    async def _beat(self) -> None:
        await self._beat_into(self._r.pipeline(transaction=False)).execute()

    async def _load_directory(self) -> None:
        r = self._r
        nodes = [n.decode() for n in await r.smembers(PREFIX + "nodes")]
        alive = await self._check_alive(nodes)
        if alive - self._alive:
            # every live node from the start, also those without sessions: before the
            # watch's first look a new node took itself for alone (it owned every room)
            self._alive |= alive
            self.on_nodes_changed()
        for node in alive:
            if node == self.node:
                continue
            entries = await r.hgetall(self._dir_key(node))
            for full, value in entries.items():
                e = _decode(node, full.decode(), value.decode())
                if e is not None:
                    self._add_remote(e)

    async def _check_alive(self, nodes: list[str]) -> set[str]:
        if not nodes:
            return {self.node}
        vals = await self._r.mget([PREFIX + "node:" + n for n in nodes])
        alive = {n for n, v in zip(nodes, vals, strict=True) if v is not None}
        alive.add(self.node)
        return alive

    def _add_remote(self, e: SessionEntry) -> None:
        if e.node not in self._alive:
            # a node we took for dead (it stalled) publishes again: rooms move back
            log.info("cluster: node %s is back", e.node)
            self._alive.add(e.node)
            self.on_nodes_changed()
        old = self._by_full.get(e.jid)
        if old is not None and old.node != e.node:
            self._remove_remote(old.jid)
        self._by_full[e.jid] = e
        self.remote_by_bare.setdefault(e.jid.bare, {})[e.jid] = e
        mine = self._local.get(e.jid)
        if mine is not None and (mine.since, self.node) < (e.since, e.node):
            self.on_conflict(mine)  # a newer login elsewhere replaces ours

    def _remove_remote(self, jid: JID) -> None:
        e = self._by_full.pop(jid, None)
        if e is None:
            return
        d = self.remote_by_bare.get(jid.bare)
        if d is not None:
            d.pop(jid, None)
            if not d:
                del self.remote_by_bare[jid.bare]

    def _drop_node(self, node: str) -> None:
        for jid in [j for j, e in self._by_full.items() if e.node == node]:
            self._remove_remote(jid)
        if node in self._alive:
            self._alive.discard(node)
            self.on_nodes_changed()

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        ops = self._ops
        w = self._w
        assert w is not None
        while True:
            if not ops or self._in_flight >= MAX_IN_FLIGHT:
                # nothing to write, or Redis is behind (then the hand-overs wait here,
                # and hold the clients): a new op or a reply wakes the writer
                self._wake = loop.create_future()
                await self._wake
                continue
            wait = self._pause_left()
            if wait > 0 and len(ops) < WRITE_BATCH:
                # at most one write every WRITE_LINGER: each write wakes Redis, its
                # reply wakes this node and the entry wakes the reading node, and on
                # a busy machine those wake-ups cost more than the stanzas themselves
                # (when idle, a lone write goes at once; a backlog goes without a pause)
                await asyncio.sleep(wait)
                if not ops:  # (sent between client reads meanwhile)
                    continue
            batch = self._take()
            if not self._send(w, batch):
                try:  # not connected (yet, or any more): connect, or retry later
                    await w.connect()
                except Exception as e:  # noqa: BLE001 - Redis unreachable
                    self._written(batch, e)
                    continue
                if not self._send(w, batch):
                    self._written(batch, ConnectionError("redis connection lost"))

    def _pause_left(self) -> float:
        """Seconds until the writer may write again (at most one write every
        WRITE_LINGER); zero or less: now."""
        return self._last_write + WRITE_LINGER - time.monotonic()

    def _take(self) -> list[tuple[Any, ...]]:
        ops = self._ops
        if len(ops) <= WRITE_BATCH:
            batch = list(ops)
            ops.clear()
            return batch
        return [ops.popleft() for _ in range(WRITE_BATCH)]

    def _send(self, w: RespConnection, batch: list[tuple[Any, ...]]) -> bool:
        """Write ``batch`` if connected; the reply is handled where it is read, and the
        next write need not wait for it."""
        self._last_write = time.monotonic()
        if not w.call(self._commands(batch), functools.partial(self._replied, batch)):
            return False
        self._in_flight += 1
        self._in_flight_ops += len(batch)
        return True

    def between_reads(self) -> None:
        """Between two client reads of a long turn of the event loop: what waits for the
        writer goes now if its pause is over (it would wait for the turn's end, and the
        reading node for the end of its own next turn), and what the queue reader's
        connection has read is handled (see :mod:`.polled`)."""
        if self._ops and self._in_flight < MAX_IN_FLIGHT and self._pause_left() <= 0:
            w = self._w
            if w is not None:
                batch = self._take()
                if not self._send(w, batch):
                    self._ops.extendleft(reversed(batch))
                    self._wake_writer()  # (the writer connects)
        if self._reader is not None:
            self._polled.poll()

    def _replied(self, batch: list[tuple[Any, ...]], res: Union[list[Any], Exception]) -> None:
        self._in_flight -= 1
        self._in_flight_ops -= len(batch)
        self._wake_writer()
        self._written(batch, res if isinstance(res, Exception) else None)

    async def _flush_ops(self) -> None:
        """At stop: what the writer has not sent yet goes now, and is waited for."""
        batch = list(self._ops)
        self._ops.clear()
        w = self._w
        if not batch or w is None:
            return
        try:
            await w.execute(self._commands(batch))
        except Exception as e:  # noqa: BLE001 - Redis unreachable: retry hand-overs
            self._written(batch, e)
            return
        self._written(batch, None)

    def _commands(self, batch: list[tuple[Any, ...]]) -> list[list[Any]]:
        cmds: list[list[Any]] = []
        to_node: dict[str, list[bytes]] = {}
        for op in batch:
            kind = op[0]
            if kind == "xadd":
                to_node.setdefault(op[1], []).append(op[2])
            elif kind == "pub":
                e = op[1]
                value = _encode(e)
                cmds.append(["HSET", self._dir_key(self.node), str(e.jid), value])
                cmds.append(["PUBLISH", PREFIX + "dirchg", f"P\t{self.node}\t{e.jid}\t{value}"])
            elif kind == "unpub":
                cmds.append(["HDEL", self._dir_key(self.node), str(op[1])])
                cmds.append(["PUBLISH", PREFIX + "dirchg", f"U\t{self.node}\t{op[1]}\t"])
        for node, payloads in to_node.items():
            # one stream entry for what this batch hands to a node: one command to
            # pack and one entry to read instead of one per stanza
            cmds.append([b"XADD", (PREFIX + "q:" + node).encode(), b"*", *pack_entry(payloads)])
        return cmds

    def _written(self, batch: list[tuple[Any, ...]], error: Optional[Exception]) -> None:
        """Redis took ``batch`` (``error`` None), or did not: then the hand-overs are
        retried with back-off, and given up after the last retry."""
        if error is not None:
            log.warning("cluster: redis write failed (%s); retrying", error)
            self._writes_ok = False
            if self._held:  # never hold clients while Redis is away: local traffic goes on
                self._set_held(False)
            loop = asyncio.get_running_loop()
            for op in batch:
                if op[0] == "xadd":
                    attempt = op[3] + 1
                    if attempt > RETRIES:
                        self._give_up(op)
                        continue
                    loop.call_later(0.05 * 2 ** attempt, self._enqueue,
                                    ("xadd", op[1], op[2], attempt, op[4]))
                else:
                    loop.call_later(0.5, self._enqueue, op)
            return
        self._writes_ok = True
        if self._held and len(self._ops) + self._in_flight_ops < BACKLOG_LOW:
            self._set_held(False)
        for op in batch:
            if op[0] == "xadd" and op[4] is not None:
                op[4](True)

    async def _listen(self) -> None:
        while True:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except Exception as e:  # noqa: BLE001
                log.warning("cluster: pubsub error %s", e)
                await asyncio.sleep(0.5)
                continue
            if msg is None or msg.get("type") != "message":
                continue
            try:
                op, node, full, value = msg["data"].decode().split("\t")
            except ValueError:
                continue
            if node == self.node:
                continue
            if op == "P":
                entry = _decode(node, full, value)
                if entry is not None:
                    self._add_remote(entry)
            elif op == "U":
                try:
                    self._remove_remote(JID.parse(full))
                except JIDError:
                    pass
            elif op == "J":
                if node not in self._alive:
                    self._alive.add(node)
                    self.on_nodes_changed()
            elif op == "L":
                self._drop_node(node)

    async def _consume(self, node: str) -> None:
        """Route what a dead node left in its queue (until it is empty)."""
        key = (PREFIX + "q:" + node).encode()
        conn = RespConnection(**self._conn_args)
        last = b"0"
        done: list[bytes] = []  # handled entries, deleted with the next read
        try:
            while True:
                try:
                    cmds: list[list[Any]] = [[b"XREAD", b"COUNT", b"500", b"STREAMS", key, last]]
                    if done:
                        cmds.insert(0, [b"XDEL", key, *done])
                    res = stream_entries((await conn.execute(cmds))[-1])
                    done = []
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001
                    log.warning("cluster: reading %s failed: %s", key.decode(), e)
                    await asyncio.sleep(0.5)
                    continue
                if not res:
                    # an empty stream stays: deleting it could lose what a lagging
                    # node adds in the meantime
                    return
                ids, payloads = split_entries(res)
                last = ids[-1]
                await handle_in_chunks(self._deliver, payloads)
                done = ids
        finally:
            await forget(conn, key, done)  # stopping: what was handled must not come back
            conn.close()

    async def _watch_nodes(self) -> None:
        """Which nodes are alive (their heartbeats are in the thread, see _Heartbeat)."""
        r = self._r
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                nodes = [n.decode() for n in await r.smembers(PREFIX + "nodes")]
                alive = await self._check_alive(nodes)
            except Exception as e:  # noqa: BLE001
                log.warning("cluster: reading the node set failed: %s", e)
                continue
            for node in alive - self._alive:
                self._alive.add(node)
                self.on_nodes_changed()
            for node in list(self._alive - alive):
                log.warning("cluster: node %s is gone", node)
                self._drop_node(node)
                await self._take_over(node)

    def _rejoin(self) -> None:
        """This node stalled and the others took it for dead (dropping its sessions):
        say it is back and publish its sessions again."""
        log.warning("cluster: taken for dead by the other nodes; joining again")
        task = asyncio.ensure_future(self._publish_change("J", "", None))
        self._tasks.append(task)
        for e in list(self._local.values()):
            self._enqueue(("pub", e))

    async def _take_over(self, node: str) -> None:
        """One survivor routes what a dead node left in its queue.

        Nodes whose view of the cluster lags may still hand stanzas to the dead
        node for a moment, so the survivor keeps draining its queue for a while.
        """
        r = self._r
        if not await r.set(PREFIX + "takeover:" + node, self.node, nx=True,
                           ex=int(self.ttl * 6) + 1):
            return
        # the directory first: a stalled node that sees itself gone from the set
        # publishes its sessions again, and they must not be deleted after that
        await r.delete(self._dir_key(node))
        await r.srem(PREFIX + "nodes", node)
        wait = self.on_node_down(node)
        if wait is not None:
            await wait  # the dead node's journal first: it holds the older messages
        task = asyncio.ensure_future(self._drain_dead(node))
        self._tasks.append(task)

    async def _drain_dead(self, node: str) -> None:
        deadline = time.monotonic() + self.ttl * 5
        while True:
            if node in self._alive:
                return  # it was only stalled and reads its queue again
            await self._consume(node)
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(self.heartbeat)


class _Heartbeat(threading.Thread):
    """The node's heartbeat, in a thread with its own Redis connection.

    A node busy with a backlog can hold its event loop for longer than the TTL;
    beating from the loop, it was then taken for dead, its sessions dropped and
    its queue drained by another node (messages bounced and delivered twice). The
    thread beats while the process lives and reaches Redis: only a dead, stopped
    (SIGSTOP) or cut-off node is taken for dead. What others hand to a busy node
    waits in its queue.
    """

    def __init__(self, backend: RedisBackend, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="xmppd-cluster-heartbeat", daemon=True)
        self.backend = backend
        self.loop = loop
        self._halt = threading.Event()

    def run(self) -> None:
        import redis

        b = self.backend
        r = redis.Redis(socket_timeout=max(1.0, b.ttl / 2), **b._conn_args)
        try:
            while not self._halt.wait(b.heartbeat):
                try:
                    res = b._beat_into(r.pipeline(transaction=False)).execute()
                except Exception as e:  # noqa: BLE001 - Redis away: try again
                    log.warning("cluster: heartbeat failed: %s", e)
                    continue
                if res[1] and not self._halt.is_set():
                    # re-added to the node set: a survivor had taken this node for dead
                    try:
                        self.loop.call_soon_threadsafe(b._rejoin)
                    except RuntimeError:  # the loop is closed: shutting down
                        return
        finally:
            r.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
