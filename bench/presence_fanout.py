"""Presence fan-out: deliveries per second when a user with N online contacts changes status.

Usage: .venv/bin/python bench/presence_fanout.py [--contacts 500] [--changes 20] [--runs 5]
                                                 [--no-tls | --in-process] [--keep]

Starts xmppd in its own process (a generated configuration on loopback, the
modules of config/xmppd.yml that take part in presence: mod_roster, mod_last,
mod_blocking, mod_client_state), registers a "star" user and N contacts, gives
them mutual subscriptions (written to the database before the start), logs
every contact in over STARTTLS with a raw-socket client that only counts the
presence stanzas it receives, then lets the star send ``--changes`` status
changes at once. One run lasts from the first byte the star sends until every
contact has received every change; deliveries/s = contacts x changes / time.
Prints every run and the median; also the server's resident memory before and
after the contacts logged in. Results are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import resource
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.procs import XmppdServer  # noqa: E402

from xmppd.config import load_config  # noqa: E402
from xmppd.presence.roster_store import ItemRow, RosterStore  # noqa: E402
from xmppd.presence.subscription import SubState  # noqa: E402
from xmppd.storage import database_from_config, migrate_sync  # noqa: E402

HOST = "localhost"
MODULES = {"mod_disco": {}, "mod_roster": {"versioning": True}, "mod_last": {},
           "mod_blocking": {}, "mod_client_state": {}}
HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
          b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
END = b"</presence>"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client:
    """Logs in (STARTTLS, PLAIN, bind, initial presence), then counts presence stanzas."""

    def __init__(self, port: int, user: str, tls: bool = True) -> None:
        self.port = port
        self.user = user
        self.tls = tls
        self.count = 0
        self.target = -1
        self.done = asyncio.Event()
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self._buf = b""

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError(f"{self.user}: closed while waiting for {marker!r}")
            self._buf += data
        i = self._buf.index(marker) + len(marker)
        out, self._buf = self._buf[:i], self._buf[i:]
        return out

    async def login(self, resource_: str = "bench") -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(HEADER)
        await self._until(b"</stream:features>")
        if self.tls:
            self.writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            await self._until(b"<proceed")
            await self._until(b"/>")
            await self.writer.start_tls(tls_context(), server_hostname=HOST)
            self._buf = b""
            self.writer.write(HEADER)
            await self._until(b"</stream:features>")
            cred = base64.b64encode(f"\0{self.user}\0secret".encode()).decode()
            self.writer.write(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{cred}</auth>".encode())
        else:
            await self._scram()
        got = await self._until(b">")
        if b"success" not in got:
            raise RuntimeError(f"{self.user}: authentication failed: {got!r}")
        self._buf = b""
        self.writer.write(HEADER)
        await self._until(b"</stream:features>")
        self.writer.write(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                          f"<resource>{resource_}</resource></bind></iq>".encode())
        await self._until(b"</iq>")
        self.writer.write(b"<presence/>")
        asyncio.ensure_future(self._count())

    async def _scram(self) -> None:
        """SCRAM-SHA-1 without channel binding (PLAIN is refused outside TLS)."""
        nonce = base64.b64encode(os.urandom(12)).decode()
        first = f"n={self.user},r={nonce}"
        self.writer.write(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>"
                          f"{base64.b64encode(('n,,' + first).encode()).decode()}</auth>".encode())
        got = (await self._until(b"</challenge>")).decode()
        server_first = base64.b64decode(got[got.index(">") + 1:got.rindex("<")]).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha1", b"secret", base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha1").digest()
        final = f"c=biws,r={attrs['r']}"
        sig = hmac.new(hashlib.sha1(client_key).digest(),
                       f"{first},{server_first},{final}".encode(), "sha1").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig, strict=True))).decode()
        self.writer.write(f"<response xmlns='{SASL}'>"
                          f"{base64.b64encode(f'{final},p={proof}'.encode()).decode()}"
                          f"</response>".encode())

    async def _count(self) -> None:
        tail = self._buf
        self._buf = b""
        self.count += tail.count(END)
        tail = tail[-len(END):]
        while True:
            data = await self.reader.read(262144)
            if not data:
                return
            chunk = tail + data
            self.count += chunk.count(END)
            tail = chunk[-(len(END) - 1):]
            if self.target >= 0 and self.count >= self.target:
                self.done.set()

    def expect(self, n: int) -> None:
        self.count = 0
        self.target = n
        self.done.clear()

    async def quiet(self, seconds: float = 1.0) -> None:
        """Wait until nothing has arrived for ``seconds``."""
        while True:
            before = self.count
            await asyncio.sleep(seconds)
            if self.count == before:
                return


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def setup_server(base: Path, contacts: int, tls: bool = True) -> XmppdServer:
    srv = XmppdServer(base, modules=MODULES, config={"loglevel": "warning"},
                      listen_extra=None if tls else {"starttls_required": False})
    users = base / "users.txt"
    users.write_text("star secret\n" + "".join(f"c{i} secret\n" for i in range(contacts)))
    srv.ctl("register_bulk", str(users), HOST)
    cfg = load_config(srv.config_path)
    db = database_from_config(cfg)
    migrate_sync(db)
    store = RosterStore(db)
    both = SubState("both")
    store.put_many_sync(HOST, "star", [
        ItemRow(f"c{i}@{HOST}", f"Contact {i}", ("Bench",), both, True, 1, None, None)
        for i in range(contacts)], 1)
    for i in range(contacts):
        store.put_many_sync(HOST, f"c{i}", [
            ItemRow(f"star@{HOST}", "Star", (), both, True, 1, None, None)], 1)
    db.close()
    return srv


async def bench(srv: XmppdServer, contacts: int, changes: int, runs: int,
                tls: bool = True) -> None:
    rss0 = rss_kib(srv.pid)
    sem = asyncio.Semaphore(50)

    async def connect(user: str) -> Client:
        async with sem:
            c = Client(srv.c2s, user, tls)
            await c.login()
            return c
    t = time.perf_counter()
    clients = await asyncio.gather(*(connect(f"c{i}") for i in range(contacts)))
    star = await connect("star")
    print(f"{contacts} contacts and the star logged in in {time.perf_counter() - t:.1f} s")
    await star.quiet()
    rss1 = rss_kib(srv.pid)
    print(f"server RSS: {rss0 / 1024:.1f} MiB before logins, {rss1 / 1024:.1f} MiB with "
          f"{contacts + 1} sessions ({(rss1 - rss0) / (contacts + 1):.1f} KiB per session)")
    rates = []
    for run in range(runs):
        for c in clients:
            c.expect(changes)
        batch = b"".join(
            f"<presence><show>{('away', 'xa', 'dnd', 'chat')[k % 4]}</show>"
            f"<status>run {run} change {k}</status></presence>".encode()
            for k in range(changes))
        t0 = time.perf_counter()
        star.writer.write(batch)
        await asyncio.gather(*(c.done.wait() for c in clients))
        elapsed = time.perf_counter() - t0
        rate = contacts * changes / elapsed
        rates.append(rate)
        print(f"run {run + 1}: {contacts * changes} deliveries in {elapsed * 1000:.0f} ms = "
              f"{rate:,.0f} deliveries/s ({elapsed / changes * 1000:.1f} ms per status change)")
        await star.quiet(1.0)
    print(f"median of {runs} runs: {statistics.median(rates):,.0f} deliveries/s "
          f"(a user with {contacts} online contacts changing status {changes} times per run)")
    print(f"server RSS after the runs: {rss_kib(srv.pid) / 1024:.1f} MiB")


class _NullConn:
    """A transport that swallows bytes: the in-process mode measures the server alone."""

    secure = True
    peer_ip = "127.0.0.1"

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def close(self) -> None:
        pass


async def in_process(config_path: Path, contacts: int, changes: int, runs: int) -> None:
    """Server-side cost of a delivery (routing, filters, serialization), without sockets."""
    from xmppd.c2s.stream import BOUND, C2SStream
    from xmppd.jid import JID
    from xmppd.server import Server
    from xmppd.stanza import PRESENCE
    from xmppd.xml import Element

    server = Server(load_config(config_path))
    await server.start(listen=False)
    sessions = []
    for user in [f"c{i}" for i in range(contacts)] + ["star"]:
        s = C2SStream(server, _NullConn(), server.config.listen[0])  # type: ignore[arg-type]
        s.jid = JID(user, HOST, "bench")
        s.jid_str, s.state, s.host = str(s.jid), BOUND, HOST
        s.vhost = server.hosts[HOST]
        server.sessions.add(s)
        server.hooks.fire_all("c2s/bound", s)
        sessions.append(s)
    await asyncio.sleep(0.5)   # rosters load
    for s in sessions:
        server.router.from_client(s, Element(PRESENCE))
    await asyncio.sleep(0.5)
    star = sessions[-1]
    per = []
    for run in range(runs):
        before = sum(s.conn.writes for s in sessions[:-1])  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for k in range(changes):
            server.router.from_client(star, Element(PRESENCE, {}, [
                Element("{jabber:client}show", {}, [("away", "xa", "dnd", "chat")[k % 4]])]))
        elapsed = time.perf_counter() - t0
        delivered = sum(s.conn.writes for s in sessions[:-1]) - before  # type: ignore[attr-defined]
        assert delivered == contacts * changes, delivered
        per.append(elapsed / delivered * 1e6)
        print(f"run {run + 1}: {delivered} deliveries, {per[-1]:.1f} us each "
              f"({delivered / elapsed:,.0f} deliveries/s without sockets)")
    print(f"median of {runs} runs: {statistics.median(per):.1f} us per delivery in the server "
          f"({1e6 / statistics.median(per):,.0f} deliveries/s without sockets)")
    await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=500)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-tls", action="store_true",
                    help="plain TCP (SCRAM): what TLS costs, by difference")
    ap.add_argument("--in-process", action="store_true",
                    help="run the server in this process with null transports: the server's "
                         "own cost per delivery, without sockets or clients")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.contacts * 2 + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    base = Path(tempfile.mkdtemp(prefix="xmppd-bench-fanout-"))
    print(f"setting up {args.contacts} contacts in {base} ...")
    srv = setup_server(base, args.contacts, not args.no_tls)
    if args.in_process:
        try:
            asyncio.run(in_process(srv.config_path, args.contacts, args.changes, args.runs))
        finally:
            if not args.keep:
                import shutil
                shutil.rmtree(base, ignore_errors=True)
        return
    srv.start()
    try:
        try:
            import uvloop  # the clients' side costs less CPU on uvloop, as the server's does
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(bench(srv, args.contacts, args.changes, args.runs, not args.no_tls))
    finally:
        srv.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
