"""Media relayed through TURN: xmppd's ``ejabberd_stun`` listener next to coturn,
same load, same run.

Usage: .venv/bin/python bench/turn.py [--calls 10] [--pps 50] [--size 160]
       [--seconds 10] [--runs 3] [--only xmppd|coturn]

A call is two TURN clients, each with an allocation and a channel to the other's
relayed address, as two phones behind NATs that cannot reach each other: every
packet goes client A -> server (ChannelData) -> relay A -> relay B -> client B.
Each client sends ``--pps`` packets a second of ``--size`` bytes (an Opus audio
stream is about 50 packets of 100-200 bytes; video is more and bigger) for
``--seconds``. Reported per server: packets relayed end to end per second, the
server's CPU per packet (from /proc over the sending period), the share lost, and the
median and p99 of the time from send to arrival. The servers run one after the other
on loopback, each fresh; the figures are medians of ``--runs``. Results are reported,
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from compare import write_results  # noqa: E402
from helpers.procs import XmppdServer, wait_port  # noqa: E402
from websocket import cpu_seconds  # noqa: E402

from xmppd.stun import message as m  # noqa: E402
from xmppd.stun.credentials import turn_credentials  # noqa: E402

SECRET = "bench-turn-secret"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client(asyncio.DatagramProtocol):
    """One TURN client: its allocation, a channel to the peer, the packets it got."""

    def __init__(self, server: tuple[str, int], user: str, password: str) -> None:
        self.server = server
        self.user, self.password = user, password
        self.transport: Any = None
        self.waiting: dict[bytes, asyncio.Future[m.Message]] = {}
        self.key: Optional[bytes] = None
        self.auth: list[tuple[int, bytes]] = []
        self.relayed: tuple[str, int] = ("", 0)
        self.latencies: list[float] = []
        self.got = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if 0x40 <= data[0] < 0x80:      # ChannelData: a media packet
            self.got += 1
            if len(data) >= 12:
                self.latencies.append(time.perf_counter() - struct.unpack_from("!d", data, 4)[0])
            return
        msg = m.decode(data)
        if msg is not None:
            fut = self.waiting.pop(msg.tid, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def request(self, method: int, attrs: list[tuple[int, bytes]]) -> m.Message:
        tid = os.urandom(12)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[tid] = fut
        self.transport.sendto(m.encode(method, m.REQUEST, tid, attrs + self.auth, self.key),
                              self.server)
        return await asyncio.wait_for(fut, 5)

    async def allocate(self) -> None:
        want = [(m.REQUESTED_TRANSPORT, b"\x11\0\0\0")]
        first = await self.request(m.ALLOCATE, want)
        realm, nonce = first.get(m.REALM) or b"", first.get(m.NONCE) or b""
        self.key = m.long_term_key(self.user, realm.decode(), self.password)
        self.auth = [(m.USERNAME, self.user.encode()), (m.REALM, realm), (m.NONCE, nonce)]
        ok = await self.request(m.ALLOCATE, want)
        if ok.cls != m.SUCCESS:
            raise RuntimeError("allocation refused: %d" % m.error_code(ok.get(m.ERROR_CODE) or b""))
        self.relayed = m.read_xor_address(ok.get(m.XOR_RELAYED_ADDRESS) or b"", ok.tid)

    async def bind(self, peer: tuple[str, int]) -> None:
        ok = await self.request(m.CHANNEL_BIND, [
            (m.CHANNEL_NUMBER, b"\x40\x00\0\0"), (m.XOR_PEER_ADDRESS, m.xor_address(*peer, b""))])
        if ok.cls != m.SUCCESS:
            raise RuntimeError("channel refused: %d" % m.error_code(ok.get(m.ERROR_CODE) or b""))


async def one_run(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    user, password = turn_credentials(SECRET, "bench@localhost", int(time.time()) + 3600)
    clients: list[Client] = []
    for _ in range(2 * args.calls):
        c = Client(("127.0.0.1", port), user, password)
        await loop.create_datagram_endpoint(lambda c=c: c, local_addr=("127.0.0.1", 0))  # type: ignore[misc]
        await c.allocate()
        clients.append(c)
    for a, b in zip(clients[0::2], clients[1::2], strict=True):
        await a.bind(b.relayed)
        await b.bind(a.relayed)
    pad = b"\0" * max(0, args.size - 8)
    interval = 1.0 / args.pps
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    sent = 0
    tick = t0
    while tick - t0 < args.seconds:
        for c in clients:
            c.transport.sendto(struct.pack("!HHd", 0x4000, 8 + len(pad), time.perf_counter())
                               + pad, c.server)
        sent += len(clients)
        tick += interval
        await asyncio.sleep(max(0.0, tick - time.perf_counter()))
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    await asyncio.sleep(0.5)   # the last packets
    got = sum(c.got for c in clients)
    lat = sorted(x for c in clients for x in c.latencies)
    for c in clients:
        c.transport.close()
    return {"sent": sent, "relayed": got, "lost": round(1 - got / sent, 4) if sent else 0,
            "pps": round(got / elapsed), "cpu_us_per_packet": round(cpu / max(1, got) * 1e6, 1),
            "cpu_share": round(cpu / elapsed, 3),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None}


def start_xmppd(base: Path) -> tuple[Any, int, int]:
    port = free_udp_port()
    srv = XmppdServer(base, modules={"mod_stun_disco": {"secret": SECRET}})
    srv.config["listen"].append({"port": port, "ip": "127.0.0.1", "transport": "udp",
                                 "module": "ejabberd_stun", "use_turn": True,
                                 "turn_blacklist": [], "turn_ipv4_address": "127.0.0.1",
                                 "turn_max_allocations": 10_000})
    srv.config["loglevel"] = "warning"
    srv.write_config()
    srv.start()
    assert srv.proc is not None
    return srv, port, srv.proc.pid


def start_coturn(base: Path) -> tuple[Any, int, int]:
    exe = shutil.which("turnserver")
    if exe is None:
        raise SystemExit("coturn is not installed (make services installs it)")
    port = free_udp_port()
    proc = subprocess.Popen(
        [exe, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", "--use-auth-secret", f"--static-auth-secret={SECRET}",
         "--realm=localhost", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
         "--relay-threads=1", "--simple-log", f"--log-file={base / 'turn.log'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port, proc=proc)
    return proc, port, proc.pid


def stop(handle: Any) -> None:
    if isinstance(handle, XmppdServer):
        handle.stop()
        return
    handle.send_signal(signal.SIGTERM)
    try:
        handle.wait(5)
    except subprocess.TimeoutExpired:
        handle.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--pps", type=int, default=50, help="packets a second per client")
    ap.add_argument("--size", type=int, default=160, help="bytes per packet")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=("xmppd", "coturn"))
    ap.add_argument("--out")
    args = ap.parse_args()
    servers = [s for s in ("xmppd", "coturn") if args.only in (None, s)]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.runs):
            for name in servers:
                base = Path(d) / f"{name}-{r}"
                base.mkdir()
                handle, port, pid = (start_xmppd if name == "xmppd" else start_coturn)(base)
                try:
                    res = asyncio.run(one_run(port, pid, args))
                finally:
                    stop(handle)
                results[name].append(res)
                print(f"{name} run {r + 1}: {res}", flush=True)
    print(f"\n{args.calls} calls, {args.pps} packets/s of {args.size} bytes per client, "
          f"{args.seconds:g} s, medians of {args.runs}:")
    print(f"{'server':8} {'relayed/s':>10} {'lost':>7} {'CPU us/packet':>14} "
          f"{'CPU share':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in
               ("pps", "lost", "cpu_us_per_packet", "cpu_share", "p50_ms", "p99_ms")}
        print(f"{name:8} {med['pps']:>10.0f} {med['lost']:>7.2%} "
              f"{med['cpu_us_per_packet']:>14.1f} {med['cpu_share']:>10.2f} "
              f"{med['p50_ms']:>8.2f} {med['p99_ms']:>8.2f}")
    path = write_results({"args": vars(args), "results": results}, args.out, "turn")
    print("results:", path)


if __name__ == "__main__":
    main()
