"""What durable acks cost: messages/s and p99 latency with the journal on and off.

Usage: .venv/bin/python bench/durability.py [--messages 5000] [--runs 5] [--db sqlite|pgsql]

Two xmppd processes on loopback, one with ``mod_stream_mgmt: {durable_acks: true}`` (the
default: a message is acknowledged once its group commit is durable) and one with
``durable_acks: false`` (acknowledged once handled in memory). In each run a sender with
stream management sends ``--messages`` chat messages to an online recipient with stream
management (a window of at most 200 unacknowledged messages, an ack request every 10),
and the recipient acknowledges each. Reported per mode, median of the runs:

- messages/s from the first send to the last message received;
- p99 delivery latency (sent -> received by the recipient);
- p99 ack latency (sent -> the server's <a/> covering it: the "sent" tick).

Runs alternate between the two servers so both see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.procs import PostgresServer, XmppdServer  # noqa: E402
from helpers.smclient import SMClient  # noqa: E402

WINDOW = 200


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


async def one_run(port: int, n: int, run: int) -> dict[str, float]:
    recv = await SMClient(port, "bob", "pw", f"r{run}").connect()
    send = await SMClient(port, "alice", "pw", f"s{run}").connect()
    await send.wait_acked()
    sent_at: list[float] = [0.0] * n
    acked_at: list[float] = [0.0] * n
    got_at: list[float] = [0.0] * n
    base = send.out  # stanzas sent before the first message
    done = asyncio.Event()

    async def receive() -> None:
        count = 0
        while count < n:
            el = await recv.inbox.get()
            if el.tag != "{jabber:client}message":
                continue
            i = int(el.get("id", "r-m-1").split("-")[-1])
            got_at[i] = time.perf_counter()
            count += 1
        done.set()

    seen = 0

    def on_ack() -> None:
        nonlocal seen
        now = time.perf_counter()
        top = min(n, send.server_h - base)
        while seen < top:
            acked_at[seen] = now
            seen += 1

    task = asyncio.ensure_future(receive())
    start = time.perf_counter()
    for i in range(n):
        while len(send.unacked) >= WINDOW:
            send.acked_event.clear()
            await send.request_ack()
            await asyncio.wait_for(send.acked_event.wait(), 30)
            on_ack()
        sent_at[i] = time.perf_counter()
        await send.send(f"<message to='bob@localhost' type='chat' id='{run}-m-{i}'>"
                        f"<body>benchmark message number {i}</body></message>")
        if i % 10 == 9:
            await send.request_ack()
    while send.server_h - base < n:
        send.acked_event.clear()
        await send.request_ack()
        await asyncio.wait_for(send.acked_event.wait(), 30)
        on_ack()
    await asyncio.wait_for(done.wait(), 60)
    end = max(got_at)
    await task
    await send.close()
    await recv.close()
    return {
        "msgs_per_s": n / (end - start),
        "p99_delivery_ms": p99([g - s for g, s in zip(got_at, sent_at, strict=True)]) * 1000,
        "p99_ack_ms": p99([a - s for a, s in zip(acked_at, sent_at, strict=True)]) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", choices=("sqlite", "pgsql"), default="sqlite")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xmppd-durability-"))
    pg = None
    if args.db == "pgsql":
        pg = PostgresServer()
        pg.start()
    servers: dict[str, XmppdServer] = {}
    try:
        for mode, durable in (("durable", True), ("in-memory", False)):
            srv = XmppdServer(tmp / mode, db=args.db, pg=pg, config={"loglevel": "warning"},
                              modules={"mod_stream_mgmt": {"durable_acks": durable},
                                       "mod_offline": {}})
            srv.register("alice", "pw")
            srv.register("bob", "pw")
            servers[mode] = srv.start()
        results: dict[str, list[dict[str, float]]] = {m: [] for m in servers}
        for run in range(args.runs):
            for mode, srv in servers.items():
                res = asyncio.run(one_run(srv.c2s, args.messages, run))
                results[mode].append(res)
                print(f"run {run + 1} {mode:9s} " + "  ".join(
                    f"{k} {v:8.1f}" for k, v in res.items()), flush=True)
        print(f"\n{args.messages} messages, {args.db}, median of {args.runs} runs:")
        summary: dict[str, dict[str, Any]] = {}
        for mode, rs in results.items():
            summary[mode] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            print(f"  acks {mode:9s}: {summary[mode]['msgs_per_s']:8.0f} messages/s   "
                  f"p99 delivery {summary[mode]['p99_delivery_ms']:6.1f} ms   "
                  f"p99 ack {summary[mode]['p99_ack_ms']:6.1f} ms")
        d, m = summary["durable"], summary["in-memory"]
        print(f"  durable acks cost {100 * (1 - d['msgs_per_s'] / m['msgs_per_s']):.0f}% "
              f"throughput, +{d['p99_ack_ms'] - m['p99_ack_ms']:.1f} ms p99 ack latency")
    finally:
        for srv in servers.values():
            srv.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
