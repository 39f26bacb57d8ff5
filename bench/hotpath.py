"""In-process cost of xmppd's per-message path, without sockets.

Usage: .venv/bin/python bench/hotpath.py [--users 1000] [--messages 50000] [--batch 1]

Builds a real Server (modules mod_disco and mod_ping, as in bench/compare.py)
with N bound, available client sessions on fake transports, then feeds chat
messages to random users into the senders' ``data_received`` exactly as the
event loop would (``--batch`` stanzas per read) and measures CPU microseconds
per delivered message: parse, stamp ``from``, route, serialize, write. Runs
are repeated and the median is printed; a profile of one run with
``--profile``. This isolates the Python work from kernel and load generator
costs, so before/after figures are stable on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import random
import statistics
import tempfile
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, Optional

from xmppd.c2s.listener import C2SConnection
from xmppd.c2s.stream import BOUND
from xmppd.config import parse_config
from xmppd.jid import JID
from xmppd.server import Server


class FakeTransport:
    __slots__ = ("written", "closing")

    def __init__(self) -> None:
        self.written = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data.count(b"<message")

    def writelines(self, data: Any) -> None:
        for d in data:
            self.write(d)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


async def build(users: Iterable[int], tmp: Path, node: Optional[str] = None,
                backend: Any = None) -> tuple[Server, dict[int, C2SConnection]]:
    """A started server (cluster node ``node`` on ``backend`` if given) with the users
    numbered ``users`` bound and available, each on a fake transport."""
    cfg = parse_config({
        "hosts": ["localhost"], "loglevel": "warning", "data_dir": str(tmp / (node or "data")),
        "listen": [{"port": 15299, "ip": "127.0.0.1", "module": "ejabberd_c2s",
                    "starttls": False, "starttls_required": False}],
        "modules": {"mod_disco": {}, "mod_ping": {}},
    }, base_dir=tmp)
    server = Server(cfg, node=node, backend=backend)
    await server.start(listen=False)
    listen = cfg.listen[0]
    conns: dict[int, C2SConnection] = {}
    for i in users:
        conn = C2SConnection(server, listen, False)
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        conn.data_received(HEADER)
        st = conn.stream
        # what SASL and bind would leave behind
        st.auth_jid = JID("u%d" % i, "localhost", None, prepped=True)
        st.conn.framing.reset()
        conn.data_received(HEADER)
        st.state = BOUND
        st.jid = JID("u%d" % i, "localhost", "bench", prepped=True)
        st.jid_str = str(st.jid)
        server.sessions.add(st)
        conn.data_received(b"<presence/>")
        conns[i] = conn
    flush_writes()
    return server, conns


def payloads(users: int, n: int, batch: int, seed: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    out = []
    for k in range(0, n, batch):
        a = rng.randrange(users)
        parts = []
        for j in range(batch):
            b = rng.randrange(users - 1)
            b += b >= a
            parts.append(b"<message type='chat' to='u%d@localhost' id='m%d'><body>B:%d:%d:E</body>"
                         b"</message>" % (b, k + j, time.perf_counter_ns() // 1000, k + j))
        out.append((a, b"".join(parts)))
    return out


try:  # write batching: the event loop flushes after each turn (one read here)
    from xmppd.c2s.listener import flush_writes
except ImportError:  # code from before write batching
    def flush_writes() -> None:
        pass


def delivered(conns: dict[int, C2SConnection]) -> int:
    return sum(c.transport.written for c in conns.values())  # type: ignore[union-attr]


def run_once(conns: dict[int, C2SConnection], data: list[tuple[int, bytes]]) -> float:
    gc.collect()
    t = time.process_time()
    for a, chunk in data:
        conns[a].data_received(chunk)
        flush_writes()
    return time.process_time() - t


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        server, conns = await build(range(args.users), Path(d))
        data = payloads(args.users, args.messages, args.batch, 7)
        before = delivered(conns)
        run_once(conns, data[: len(data) // 10])  # warm up
        times = []
        prof: Optional[cProfile.Profile] = None
        for _ in range(args.runs):
            times.append(run_once(conns, data))
        got = delivered(conns) - before
        expected = args.messages * args.runs + len(data[: len(data) // 10]) * args.batch
        if got != expected:
            raise SystemExit("delivered %d of %d" % (got, expected))
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            run_once(conns, data)
            prof.disable()
        med = statistics.median(times)
        print("%d users, %d messages per run, %d per read: best %.2f us/message, median %.2f "
              "(runs: %s)" % (args.users, args.messages, args.batch,
                              min(times) / args.messages * 1e6, med / args.messages * 1e6,
                              ", ".join("%.2f" % (t / args.messages * 1e6) for t in times)))
        if prof is not None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--batch", type=int, default=1, help="stanzas per data_received")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--profile", action="store_true")
    run(main_async(ap.parse_args()))


def run(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop (as ``xmppd run``) where it is installed."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main)


if __name__ == "__main__":
    main()
