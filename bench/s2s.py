"""Message throughput through federation next to local delivery, same run.

Usage: .venv/bin/python bench/s2s.py [--messages 20000] [--runs 5]

Two xmppd processes on loopback (a.test and b.test, each told the other's s2s
port with ``s2s_hosts``). ``local``: alice@a.test sends ``--messages`` chat
messages to carol@a.test (one server). ``s2s``: alice@a.test sends them to
bob@b.test (a.test's outgoing stream, b.test's incoming stream; the s2s
streams are set up and authenticated by a warm-up message before the clock
starts, STARTTLS and dialback included). A run's figure is messages delivered
per second from the first write to the last arrival (receivers count
``</message>`` in the raw bytes); each case's figure is the median of ``--runs``
runs, cases alternating. Clients use plain TCP (c2s STARTTLS off) so that the
servers' stanza handling is measured; the s2s streams use TLS as deployed.
The CPU time of both servers per message is reported too. Results are
reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from helpers.procs import XmppdServer  # noqa: E402
from helpers.raw import RawClient, local  # noqa: E402
from websocket import blast, chunked, cpu_seconds  # noqa: E402

STANZA = ("<message xmlns='jabber:client' to='{to}' type='chat' id='m{i}'>"
          "<body>Hello, this is message number {i}.</body></message>")


async def login(port: int, host: str, user: str, resource: str) -> RawClient:
    c = RawClient(port, host=host)
    await c.connect()
    await c.open()
    res = await c.auth_scram(user, "pw")
    assert local(res.tag) == "success"
    c._new_parser()
    await c.open()
    await c.bind(resource)
    return c


async def run_case(a: XmppdServer, b: XmppdServer, case: str, n: int, k: int) -> float:
    if case == "local":
        rx = await login(a.c2s, "a.test", "carol", f"r{k}")
        to = f"carol@a.test/r{k}"
    else:
        rx = await login(b.c2s, "b.test", "bob", f"r{k}")
        to = f"bob@b.test/r{k}"
    tx = await login(a.c2s, "a.test", "alice", f"t{k}")
    # warm-up: the s2s streams exist (and stay: s2s_timeout is long) before the clock
    await tx.send(STANZA.format(to=to, i="warm"))
    await rx.recv_until(lambda e: e.get("id") == "mwarm", 30)
    return await blast(rx, tx, chunked([STANZA.format(to=to, i=i).encode()
                                        for i in range(n)]), n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    base = Path(tempfile.mkdtemp(prefix="xmppd-bench-s2s-"))
    a = XmppdServer(base / "a", hosts=("a.test",), config={"loglevel": "warning"},
                    listen_extra={"starttls_required": False}, modules={})
    b = XmppdServer(base / "b", hosts=("b.test",), config={"loglevel": "warning"},
                    listen_extra={"starttls_required": False}, modules={})
    a.config["s2s_hosts"] = {"b.test": {"host": "127.0.0.1", "port": b.s2s}}
    b.config["s2s_hosts"] = {"a.test": {"host": "127.0.0.1", "port": a.s2s}}
    a.write_config()
    b.write_config()
    a.register("alice", "pw", host="a.test")
    a.register("carol", "pw", host="a.test")
    b.register("bob", "pw", host="b.test")
    a.start()
    b.start()
    cases = ["local", "s2s"]
    results: dict[str, list[float]] = {c: [] for c in cases}
    cpu: dict[str, list[float]] = {c: [] for c in cases}
    try:
        for k in range(args.runs):
            for case in cases:
                before = cpu_seconds(a.pid) + cpu_seconds(b.pid)
                rate = asyncio.run(run_case(a, b, case, args.messages, k))
                used = cpu_seconds(a.pid) + cpu_seconds(b.pid) - before
                results[case].append(rate)
                cpu[case].append(used / args.messages * 1e6)
                print(f"run {k + 1} {case:5s} {rate:9.0f} msg/s  "
                      f"{used / args.messages * 1e6:6.1f} us CPU/msg (both servers)",
                      flush=True)
                time.sleep(0.5)
    finally:
        a.stop()
        b.stop()
    summary: dict[str, Any] = {
        case: {"median_msgs_per_s": round(statistics.median(results[case])),
               "median_server_cpu_us_per_msg": round(statistics.median(cpu[case]), 1),
               "runs": [round(r) for r in results[case]]}
        for case in cases}
    summary["messages"] = args.messages
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
