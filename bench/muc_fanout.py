"""MUC fan-out: one room of N occupants (raw socket clients), deliveries per second and latency.

Usage: .venv/bin/python bench/muc_fanout.py [--occupants 200] [--messages 300] [--runs 5]

Starts xmppd in its own process (SQLite, archive on, a plain-TCP client listener so the
figure is the server's fan-out and not TLS), logs N raw clients in, joins them all to one
room, then per run:

- burst: S senders send M messages in total as fast as the server takes them; deliveries
  per second = M x N / (time from the first send to the last delivery);
- paced: the same senders send at a fixed rate well below saturation; the latency of each
  delivery (send to receipt, one clock) gives p50 and p99.

Prints the median of the runs. Everything runs on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.procs import XmppdServer  # noqa: E402
from helpers.raw import RawClient  # noqa: E402

ROOM = "bench@conference.localhost"
STAMP = re.compile(rb"<body>(\d+) (\d+\.\d+)</body>")


class Occupant:
    def __init__(self, raw: RawClient) -> None:
        self.raw = raw
        self.reader = raw.reader
        self.writer = raw.writer
        self.got = 0
        self.latencies: list[float] = []
        self.last = 0.0
        self.record = False
        self.buf = b""

    async def pump(self) -> None:
        assert self.reader is not None
        while True:
            data = await self.reader.read(1 << 16)
            if not data:
                return
            now = time.perf_counter()
            data = self.buf + data
            cut = data.rfind(b"</message>")
            if cut < 0:
                self.buf = data
                continue
            self.buf = data[cut + 10:]
            for m in STAMP.finditer(data, 0, cut + 10):
                self.got += 1
                if self.record:
                    self.latencies.append(now - float(m.group(2)))
            self.last = now


async def login(port: int, user: str) -> RawClient:
    c = RawClient(port)
    await c.connect()
    await c.open()
    res = await c.auth_scram(user, "pw")
    assert res.tag.endswith("success"), res
    c._new_parser()
    await c.open()
    await c.bind("b")
    return c


async def join(c: RawClient, nick: str) -> None:
    await c.send(f"<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>"
                 f"<history maxstanzas='0'/></x></presence>")
    await c.recv_until(lambda e: e.tag.endswith("message") and e.find("{jabber:client}subject")
                       is not None, 30)


async def setup(port: int, n: int) -> list[Occupant]:
    first = await login(port, "u0")
    await join(first, "n0")
    await first.send(f"<iq type='set' to='{ROOM}' id='cfg'><query xmlns='http://jabber.org/protocol/"
                     f"muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_"
                     f"maxusers'><value>{n}</value></field></x></query></iq>")
    await first.recv_until(lambda e: e.get("id") == "cfg", 30)
    clients = [first]
    for i in range(1, n, 20):
        batch = await asyncio.gather(*(login(port, f"u{j}") for j in range(i, min(n, i + 20))))
        for j, c in enumerate(batch, i):
            await join(c, f"n{j}")
        clients.extend(batch)
    occs = []
    for c in clients:
        assert not c.pending or True
        occs.append(Occupant(c))
    return occs


async def send_all(senders: list[Occupant], total: int, rate: float, run: int) -> float:
    """Send ``total`` messages round-robin; ``rate`` messages/s (0: as fast as possible)."""
    t0 = time.perf_counter()
    for k in range(total):
        s = senders[k % len(senders)]
        assert s.writer is not None
        s.writer.write(b"<message to='%s' type='groupchat'><body>%d %.6f</body></message>" % (
            ROOM.encode(), run, time.perf_counter()))
        if rate:
            delay = t0 + (k + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        elif k % 20 == 19:
            await s.writer.drain()
    return t0


async def wait_delivered(occs: list[Occupant], expect: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while any(o.got < expect for o in occs):
        if time.perf_counter() > deadline:
            short = sum(expect - o.got for o in occs if o.got < expect)
            raise TimeoutError(f"{short} deliveries missing")
        await asyncio.sleep(0.01)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(port: int, n: int, messages: int, senders: int, rate: float,
                runs: int, pid: int) -> None:
    occs = await setup(port, n)
    # drain what the joins left (presences of later joiners) before counting
    for o in occs:
        o.raw.pending.clear()
    pumps = [asyncio.ensure_future(o.pump()) for o in occs]
    await asyncio.sleep(1.0)
    for o in occs:
        o.got = 0
    speakers = occs[:senders]
    burst, p50s, p99s, cpu = [], [], [], []
    expected = 0
    for run in range(runs):
        expected += messages
        c0 = cpu_seconds(pid)
        t0 = await send_all(speakers, messages, 0, run)
        await wait_delivered(occs, expected, 120)
        last = max(o.last for o in occs)
        burst.append(messages * n / (last - t0))
        cpu.append((cpu_seconds(pid) - c0) / (messages * n) * 1e6)
        for o in occs:
            o.latencies.clear()
            o.record = True
        paced = max(10, messages // 3)
        expected += paced
        await send_all(speakers, paced, rate, run)
        await wait_delivered(occs, expected, 120)
        lat = sorted(x for o in occs for x in o.latencies)
        for o in occs:
            o.record = False
        p50s.append(lat[len(lat) // 2] * 1000)
        p99s.append(lat[int(len(lat) * 0.99)] * 1000)
        print(f"run {run + 1}: burst {burst[-1]:,.0f} deliveries/s "
              f"(server CPU {cpu[-1]:.1f} us/delivery); paced {rate:.0f} msg/s "
              f"({rate * n:,.0f} deliveries/s): p50 {p50s[-1]:.2f} ms, p99 {p99s[-1]:.2f} ms",
              flush=True)
    print(f"\nMUC fan-out, {n} occupants, {senders} senders, median of {runs} runs:")
    print(f"  burst of {messages} messages: {statistics.median(burst):,.0f} deliveries/s, "
          f"server CPU {statistics.median(cpu):.1f} us per delivery")
    print(f"  paced at {rate:.0f} msg/s: p50 {statistics.median(p50s):.2f} ms, "
          f"p99 {statistics.median(p99s):.2f} ms")
    for p in pumps:
        p.cancel()
    for o in occs:
        await o.raw.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--occupants", type=int, default=200)
    ap.add_argument("--messages", type=int, default=300, help="messages per burst")
    ap.add_argument("--senders", type=int, default=5)
    ap.add_argument("--rate", type=float, default=20.0, help="paced messages per second")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="xmppd-bench-muc-"))
    srv = XmppdServer(base, modules={"mod_muc": {"max_users": max(200, args.occupants)}},
                      listen_extra={"starttls": False, "starttls_required": False},
                      config={"loglevel": "warning"})
    users = base / "users.txt"
    users.write_text("".join(f"u{i} pw\n" for i in range(args.occupants)))
    srv.ctl("register_bulk", str(users), "localhost")
    srv.start()
    try:
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(bench(srv.c2s, args.occupants, args.messages, args.senders, args.rate,
                          args.runs, srv.pid))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
