"""Message throughput over WebSocket (RFC 7395) next to plain TCP, same run.

Usage: .venv/bin/python bench/websocket.py [--messages 20000] [--runs 5]

One xmppd process (its own config, loopback ports) and, in this process, a
sender and a receiver per transport: the sender writes ``--messages`` chat
messages to the receiver's full JID as fast as the transport takes them, the
receiver counts them as they arrive. A run's figure is messages delivered per
second from the first write to the last arrival; each transport's figure is
the median of ``--runs`` runs, transports alternating. TCP is plain RFC 6120
(STARTTLS off), WebSocket is ws:// (no TLS), so both measure the server's
stream handling. The clients cost little, so the server is what is measured:
stanzas (TCP) and masked frames (WebSocket, one stanza each) are prepared
before the clock starts and written 100 at a time; receivers count
``</message>`` in the raw bytes. The server's CPU time per message is
reported too. Results are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import struct
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.procs import XmppdServer  # noqa: E402
from helpers.raw import RawClient, local  # noqa: E402

STANZA = ("<message xmlns='jabber:client' to='bob@localhost/{res}' type='chat' id='m{i}'>"
          "<body>Hello Bob, this is message number {i}.</body></message>")


class RawWebSocket(RawClient):
    """A minimal RFC 6455 client on a raw socket (text frames, masked)."""

    def __init__(self, port: int, path: str = "/ws") -> None:
        super().__init__(port)
        self.path = path

    async def connect(self) -> RawWebSocket:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write((f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Sec-WebSocket-Protocol: xmpp\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return self

    @staticmethod
    def frame(text: bytes) -> bytes:
        n = len(text)
        head = (bytes((0x81, 0x80 | n)) if n < 126 else
                struct.pack("!BBH", 0x81, 0x80 | 126, n) if n < 65536 else
                struct.pack("!BBQ", 0x81, 0x80 | 127, n))
        mask = os.urandom(4)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(text, "big") ^ key).to_bytes(n, "big")
        return head + mask + masked

    def _new_parser(self) -> None:
        return None

    async def send(self, data: Any) -> None:
        assert self.writer is not None
        self.writer.write(self.frame(data.encode() if isinstance(data, str) else data))
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> ET.Element:
        assert self.reader is not None
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        payload = await self.reader.readexactly(n)
        assert head[0] & 0x0F == 1, head  # a text frame
        return ET.fromstring(payload)  # noqa: S314 - our own server, in a benchmark

    async def login_ws(self, user: str, resource: str) -> None:
        await self.connect()
        for step in range(2):
            await self.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' "
                            "to='localhost' version='1.0'/>")
            await self.recv()
            await self.recv()
            if step == 0:
                res = await self.auth_scram(user, "pw")
                assert local(res.tag) == "success"
        await self.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns="
                        f"'urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource>"
                        f"</bind></iq>")
        await self.recv()


async def tcp_login(port: int, user: str, resource: str, tls: bool) -> RawClient:
    c = RawClient(port, tls=tls)
    await c.connect()
    await c.open()
    res = await c.auth_scram(user, "pw")
    assert local(res.tag) == "success"
    c._new_parser()
    await c.open()
    await c.bind(resource)
    return c


async def blast(rx: RawClient, tx: RawClient, chunks: list[bytes], n: int) -> float:
    """Write the chunks; return messages/s until the receiver counted n."""
    assert rx.reader is not None and tx.writer is not None
    reader, writer = rx.reader, tx.writer

    async def receive() -> None:
        seen, tail = 0, b""
        while seen < n:
            data = await reader.read(262144)
            if not data:
                raise ConnectionError("receiver closed")
            chunk = tail + data
            seen += chunk.count(b"</message>")
            tail = chunk[-9:]
    start = time.perf_counter()
    task = asyncio.ensure_future(receive())
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
    await asyncio.wait_for(task, 300)
    elapsed = time.perf_counter() - start
    await rx.close()
    await tx.close()
    return n / elapsed


def chunked(items: list[bytes], size: int = 100) -> list[bytes]:
    return [b"".join(items[i:i + size]) for i in range(0, len(items), size)]


async def run_tcp(srv: XmppdServer, n: int) -> float:
    rx = await tcp_login(srv.c2s, "bob", "tcp", False)
    tx = await tcp_login(srv.c2s, "alice", "tcp", False)
    return await blast(rx, tx, chunked([STANZA.format(res="tcp", i=i).encode()
                                        for i in range(n)]), n)


async def run_ws(srv: XmppdServer, n: int) -> float:
    rx, tx = RawWebSocket(srv.http), RawWebSocket(srv.http)
    await rx.login_ws("bob", "ws")
    await tx.login_ws("alice", "ws")
    return await blast(rx, tx, chunked([RawWebSocket.frame(STANZA.format(res="ws", i=i).encode())
                                        for i in range(n)]), n)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", help="run one transport (tcp, websocket, ...), e.g. to profile")
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    base = Path(tempfile.mkdtemp(prefix="xmppd-bench-ws-"))
    srv = XmppdServer(base, config={"loglevel": "warning"},
                      listen_extra={"starttls_required": False})
    handlers = {"/ws": "ejabberd_http_ws"}
    srv.config["listen"][3]["request_handlers"] = handlers
    srv.write_config()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    srv.start()
    cases: list[tuple[str, Any]] = [("tcp", lambda: run_tcp(srv, args.messages)),
                                    ("websocket", lambda: run_ws(srv, args.messages))]
    if args.only:
        cases = [c for c in cases if c[0] == args.only]
    results: dict[str, list[float]] = {name: [] for name, _ in cases}
    cpu: dict[str, list[float]] = {name: [] for name, _ in cases}
    try:
        asyncio.run(_warm_up(srv))
        for _ in range(args.runs):
            for name, fn in cases:
                before = cpu_seconds(srv.pid)
                results[name].append(asyncio.run(fn()))
                # server CPU per message (login and logout included, a small part)
                cpu[name].append((cpu_seconds(srv.pid) - before) / args.messages * 1e6)
    finally:
        srv.stop()
    print(f"messages per run: {args.messages}, runs: {args.runs} (medians)")
    print(f"  {'transport':14s} {'messages/s':>10s} {'server CPU us/msg':>18s}   runs (messages/s)")
    for name, values in results.items():
        print(f"  {name:14s} {statistics.median(values):10.0f} "
              f"{statistics.median(cpu[name]):18.1f}   "
              + " ".join(f"{v:.0f}" for v in values))
    if "tcp" in results and "websocket" in results:
        tcp, ws = statistics.median(results["tcp"]), statistics.median(results["websocket"])
        print(f"  websocket / tcp: {ws / tcp:.2f}")
    print(json.dumps({k: statistics.median(v) for k, v in results.items()}))


async def _warm_up(srv: XmppdServer) -> None:
    await run_tcp(srv, 500)
    await run_ws(srv, 500)


if __name__ == "__main__":
    main()
