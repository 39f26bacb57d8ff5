"""In-process cost of a stanza crossing from one cluster node to another.

Usage: .venv/bin/python bench/crossing.py [--users 1000] [--messages 40000] [--per-turn 30]

Builds, in one process, one Server with all users (as ``bench/hotpath.py``)
and two Servers "a" and "b" with half of the users each, joined by the Redis
cluster backend (:class:`xmppd.cluster.redis.RedisBackend`) whose Redis is
replaced by an in-memory stream store: the backend's own code runs (queueing,
the writer's batches, packing, RESP encoding of the commands, the queue
reader, unpacking, hand-over to the session; the reader's callbacks run from a
task here), only the socket and Redis
itself are left out. The same chat messages to random users are fed to both
setups; with two nodes about half of them cross. The event loop gets a turn
every ``--per-turn`` messages (the writer and the reader run then, so that is
about the batch size); the linger waits are off.

Prints CPU microseconds per delivered message for one node and for two, and
the difference: what a crossing costs in Python per delivery (add Redis's own
CPU and the kernel's for the real thing). Runs alternate between the setups;
medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hotpath  # noqa: E402

from xmppd.c2s.listener import C2SConnection  # noqa: E402
from xmppd.cluster import redis as cluster_redis  # noqa: E402
from xmppd.cluster.reader import QueueReader  # noqa: E402
from xmppd.cluster.resp import pack_into  # noqa: E402


class MemoryStreams:
    """The few stream commands the backend sends, on in-memory lists."""

    def __init__(self) -> None:
        self.streams: dict[str, list[tuple[int, list[Any]]]] = {}
        self.seq = 0
        self.waiting: dict[str, asyncio.Future[None]] = {}

    def xadd(self, key: str, fields: list[Any]) -> bytes:
        self.seq += 1
        self.streams.setdefault(key, []).append((self.seq, fields))
        fut = self.waiting.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        return b"%d-0" % self.seq

    async def xread(self, key: str, last: bytes, count: int, block: bool) -> Any:
        after = int(last.split(b"-")[0])
        while True:
            entries = [e for e in self.streams.get(key, []) if e[0] > after][:count]
            if entries or not block:
                break
            fut = self.waiting[key] = asyncio.get_running_loop().create_future()
            await fut
        if not entries:
            return None
        return [[key.encode(), [[b"%d-0" % n, fields] for n, fields in entries]]]

    def xdel(self, key: str, ids: list[bytes]) -> int:
        gone = {int(i.split(b"-")[0]) for i in ids}
        self.streams[key] = [e for e in self.streams.get(key, []) if e[0] not in gone]
        return len(gone)


def _text(a: Any) -> str:
    return a.decode() if isinstance(a, bytes) else str(a)


class MemoryConnection:
    """Stands in for :class:`xmppd.cluster.resp.RespConnection`."""

    def __init__(self, store: MemoryStreams) -> None:
        self.store = store

    async def execute(self, commands: list[list[Any]]) -> list[Any]:
        parts: list[bytes] = []
        for c in commands:
            pack_into(parts, c)
        b"".join(parts)  # what the real connection writes
        out: list[Any] = []
        for c in commands:
            name, key = _text(c[0]), _text(c[1])
            if name == "XADD":
                out.append(self.store.xadd(key, list(c[3:])))
            elif name == "XDEL":
                out.append(self.store.xdel(key, [bytes(i) for i in c[2:]]))
            elif name == "XREAD":
                words = [_text(a) for a in c[:-1]]
                out.append(await self.store.xread(words[-1], bytes(c[-1]), int(words[2]),
                                                  "BLOCK" in words))
            else:
                out.append(1)
        return out

    def call(self, commands: list[list[Any]], replied: Any) -> bool:
        """The queue reader's calls: the replies go to ``replied`` (a blocking read
        answers once something is added)."""
        task = asyncio.ensure_future(self.execute(commands))
        task.add_done_callback(lambda t: t.cancelled() or replied(t.exception() or t.result()))
        return True

    async def connect(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryBackend(cluster_redis.RedisBackend):
    """The Redis backend with the in-memory stream store in place of Redis."""

    def __init__(self, node: str, store: MemoryStreams, nodes: set[str]) -> None:
        super().__init__(node)
        self.store = store
        self._alive = set(nodes)

    async def start(self, deliver: Any) -> None:
        self._deliver = deliver
        self._w = MemoryConnection(self.store)  # type: ignore[assignment]
        self._tasks = [asyncio.ensure_future(self._writer())]
        self._reader = QueueReader(MemoryConnection(self.store),  # type: ignore[arg-type]
                                   (cluster_redis.PREFIX + "q:" + self.node).encode(),
                                   deliver, lambda: 0.0)
        self._reader.start()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()


async def run_once(conns: dict[int, C2SConnection], data: list[tuple[int, bytes]],
                   per_turn: int) -> tuple[float, int]:
    gc.collect()
    before = hotpath.delivered(conns)
    t = time.process_time()
    for k, (a, chunk) in enumerate(data, 1):
        conns[a].data_received(chunk)
        hotpath.flush_writes()
        if k % per_turn == 0:
            await asyncio.sleep(0)
    expected = before + len(data)
    while hotpath.delivered(conns) < expected:
        await asyncio.sleep(0)
        hotpath.flush_writes()
    return time.process_time() - t, hotpath.delivered(conns) - before


async def main_async(args: argparse.Namespace) -> None:
    from xmppd.cli import tune_gc  # what ``xmppd run`` does before serving
    cluster_redis.LINGER = 0.0
    cluster_redis.WRITE_LINGER = 0.0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one, one_conns = await hotpath.build(range(args.users), tmp, "one")
        store = MemoryStreams()
        half = args.users // 2
        a_backend = MemoryBackend("a", store, {"a", "b"})
        b_backend = MemoryBackend("b", store, {"a", "b"})
        a, a_conns = await hotpath.build(range(half), tmp, "a", a_backend)
        b, b_conns = await hotpath.build(range(half, args.users), tmp, "b", b_backend)
        # each node's view of the other's sessions (the directory, without pub/sub)
        for src, dst in ((a_backend, b_backend), (b_backend, a_backend)):
            for entry in list(src._local.values()):
                dst._add_remote(entry)
        two_conns = {**a_conns, **b_conns}
        tune_gc()
        data = hotpath.payloads(args.users, args.messages, 1, 7)
        crossing = sum(1 for s, chunk in data if (s < half) != (
            int(chunk.split(b"to='u")[1].split(b"@")[0]) < half))
        times: dict[str, list[float]] = {"one": [], "two": []}
        setups = [s for s in (("one", one_conns), ("two", two_conns))
                  if args.only in (None, s[0])]
        for _name, conns in setups:
            await run_once(conns, data[:1000], args.per_turn)  # warm up
        for _ in range(args.runs):
            for name, conns in setups:
                cpu, n = await run_once(conns, data, args.per_turn)
                if n != len(data):
                    raise SystemExit("%s: delivered %d of %d" % (name, n, len(data)))
                times[name].append(cpu / n * 1e6)
        if args.profile:
            for name, conns in setups:
                prof = cProfile.Profile()
                prof.enable()
                await run_once(conns, data, args.per_turn)
                prof.disable()
                print("-- %s" % name)
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        med = {k: statistics.median(v) for k, v in times.items() if v}
        print("%d users, %d messages per run (%d cross), a turn of the loop every %d"
              % (args.users, args.messages, crossing, args.per_turn))
        for name, label in (("one", "one node"), ("two", "two nodes")):
            if name not in med:
                continue
            print("  %-9s %6.2f us/delivery (runs: %s)" % (
                label, med[name], ", ".join("%.2f" % t for t in times[name])))
        if len(med) == 2:
            diff = med["two"] - med["one"]
            print("  crossing: +%.2f us per delivery, %.2f us per crossing stanza; two/one "
                  "%.2fx" % (diff, diff * len(data) / max(1, crossing), med["two"] / med["one"]))
        for s in (one, a, b):
            await s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=40000)
    ap.add_argument("--per-turn", type=int, default=30,
                    help="messages fed between two turns of the event loop")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=("one", "two"),
                    help="run one setup only (for instruction counts under valgrind)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="a profile of one run of each setup: its N costliest functions")
    hotpath.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
