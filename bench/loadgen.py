"""XMPP load generator: many authenticated client connections in one asyncio process.

Speaks XMPP over raw sockets (plain TCP, STARTTLS or Direct TLS) with its own
SCRAM-SHA-1 client, so it measures any server the same way: xmppd, Prosody,
ejabberd. Stanzas are pre-serialized; the body of every test message carries
the send time, and delivery latency is measured when a connection reads it
back. Server-independent: after login, incoming bytes are only scanned for the
body markers, never parsed.

Phases (one per invocation; the result is one JSON object on stdout):

  prime     log every user in up to the SCRAM challenge and cache the salted
            password (PBKDF2 is slow; the cache keeps it off the measured clock)
  one2one   N users send chat messages to random others; the rate is stepped up
            until p99 latency exceeds the bound or a message is lost
  memory    server RSS (from /proc/PID/status) before and after N idle
            authenticated connections, at each checkpoint
  logins    connect, SCRAM-SHA-1, bind, initial presence (and a ping round
            trip, which all servers answer after the presence is processed);
            logins/s at a fixed concurrency, with p50/p99
  fanout    N users join one XEP-0045 room; groupchat messages are sent at a
            stepped rate; deliveries/s (messages x occupants) that held

Usage: python bench/loadgen.py --port 5222 --host localhost one2one --users 1000
(see --help of each phase). Users are PREFIX0..PREFIXn-1 with one password.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import resource
import secrets
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

STREAM_HEADER = ("<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
                 "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
MUC_NS = "http://jabber.org/protocol/muc"

FEATURES_END = re.compile(rb"</(?:stream:)?features>|<(?:stream:)?features\s*/>")
STARTTLS_OK = re.compile(rb"<proceed\b")
CHALLENGE = re.compile(rb"<challenge\b[^>]*>([^<]*)</challenge>")
SUCCESS = re.compile(rb"<success\b[^>]*?(?:/>|>([^<]*)</success>)")
FAILURE = re.compile(rb"<failure\b.*?(?:/>|</failure>)", re.S)
STREAM_ERROR = re.compile(rb"<stream:error>.*?</stream:error>", re.S)
MARK = re.compile(rb"B:(\d+):(\d+):E")
MARK_KEEP = 64  # a marker is shorter than this
BOUNCE = re.compile(rb"<message\b[^>]*\btype=['\"]error['\"]")


def iq_done(iq_id: str) -> re.Pattern[bytes]:
    return re.compile(rb"<iq\b([^>]*\bid=['\"]" + re.escape(iq_id.encode()) +
                      rb"['\"][^>]*?)(?:/>|>(.*?)</iq>)", re.S)


BIND_DONE = iq_done("bind1")
PING_DONE = iq_done("ping1")
CONFIG_DONE = iq_done("cfg1")
SELF_PRESENCE = re.compile(rb"<status\b[^>]*\bcode=['\"]110['\"]")
ROOM_CREATED = re.compile(rb"<status\b[^>]*\bcode=['\"]201['\"]")
PRESENCE_ERROR = re.compile(rb"<presence\b[^>]*type=['\"]error['\"].*?</presence>", re.S)


def now_us() -> int:
    return time.perf_counter_ns() // 1000


class LoginError(Exception):
    pass


# -- SCRAM-SHA-1 client -------------------------------------------------------------

class ScramCache:
    """Salted passwords by (password, salt, iterations), persisted as JSON."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.data: dict[str, str] = {}
        self.dirty = False
        if path and os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    @staticmethod
    def key(password: str, salt: bytes, iterations: int) -> str:
        return "%s:%s:%d" % (hashlib.sha1(password.encode()).hexdigest()[:16],
                             base64.b64encode(salt).decode(), iterations)

    def get(self, password: str, salt: bytes, iterations: int) -> Optional[bytes]:
        v = self.data.get(self.key(password, salt, iterations))
        return bytes.fromhex(v) if v else None

    def put(self, password: str, salt: bytes, iterations: int, salted: bytes) -> None:
        self.data[self.key(password, salt, iterations)] = salted.hex()
        self.dirty = True

    def save(self) -> None:
        if self.path and self.dirty:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
            self.dirty = False


class Scram:
    def __init__(self, user: str, password: str, cache: ScramCache,
                 pool: Optional[ThreadPoolExecutor]) -> None:
        self.user = user
        self.password = password
        self.cache = cache
        self.pool = pool
        self.cnonce = secrets.token_urlsafe(18)
        self.first_bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), self.cnonce)
        self.server_sig = b""

    def initial(self) -> bytes:
        return base64.b64encode(("n,," + self.first_bare).encode())

    async def salted(self, server_first: str) -> tuple[bytes, dict[str, str]]:
        attrs = dict(p.split("=", 1) for p in server_first.split(","))
        if not attrs["r"].startswith(self.cnonce):
            raise LoginError("SCRAM nonce mismatch")
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        salted = self.cache.get(self.password, salt, iterations)
        if salted is None:
            if self.pool is not None:
                salted = await asyncio.get_running_loop().run_in_executor(
                    self.pool, hashlib.pbkdf2_hmac, "sha1", self.password.encode(), salt,
                    iterations)
            else:
                salted = hashlib.pbkdf2_hmac("sha1", self.password.encode(), salt, iterations)
            self.cache.put(self.password, salt, iterations, salted)
        return salted, attrs

    def final(self, salted: bytes, server_first: str, attrs: dict[str, str]) -> bytes:
        without_proof = "c=biws,r=" + attrs["r"]
        auth_message = ",".join((self.first_bare, server_first, without_proof)).encode()
        client_key = hmac.digest(salted, b"Client Key", "sha1")
        stored_key = hashlib.sha1(client_key).digest()
        signature = hmac.digest(stored_key, auth_message, "sha1")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha1")
        self.server_sig = hmac.digest(server_key, auth_message, "sha1")
        return base64.b64encode((without_proof + ",p=" + base64.b64encode(proof).decode()).encode())

    def verify(self, success_b64: bytes) -> None:
        data = base64.b64decode(success_b64.strip() or b"")
        if not data.startswith(b"v="):
            raise LoginError("SCRAM: no server signature")
        if base64.b64decode(data[2:]) != self.server_sig:
            raise LoginError("SCRAM: wrong server signature")


# -- connections ------------------------------------------------------------------

class Stats:
    """Shared receive-side counters of one phase step."""

    __slots__ = ("received", "latencies", "seen", "track", "bounced", "crossing",
                 "crossing_latencies", "local_latencies")

    def __init__(self) -> None:
        self.received = 0
        self.latencies: list[int] = []
        self.seen: dict[int, int] = {}
        self.track = False
        self.bounced = 0  # error replies (they carry the marker back, counted as seen)
        # --by-process: the messages between clients of two server processes, and
        # their latencies (also in latencies)
        self.crossing: Optional[set[int]] = None
        self.crossing_latencies: list[int] = []
        self.local_latencies: list[int] = []

    def reset(self) -> None:
        self.received = 0
        self.latencies = []
        self.seen = {}
        self.bounced = 0
        if self.crossing is not None:
            self.crossing = set()
        self.crossing_latencies = []
        self.local_latencies = []


class Client(asyncio.Protocol):
    """One client connection: pattern waits during login, marker scanning after."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.transport: Optional[asyncio.Transport] = None
        self.buf = bytearray()
        self.waiter: Optional[asyncio.Future[None]] = None
        self.loaded = False  # after login: scan for markers only
        self.closed = False
        self.jid = ""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.loaded:
            self._scan(data)
            return
        self.buf += data
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def eof_received(self) -> Optional[bool]:
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(LoginError("connection closed by the server: %r" % bytes(self.buf[-300:])))

    def _scan(self, data: bytes) -> None:
        buf = self.buf
        if buf:
            buf += data
            data = bytes(buf)
        last = 0
        t = now_us()
        stats = self.stats
        lat = stats.latencies
        n = 0
        crossing = stats.crossing
        for m in MARK.finditer(data):
            lat.append(t - int(m.group(1)))
            if stats.track:
                seq = int(m.group(2))
                stats.seen[seq] = stats.seen.get(seq, 0) + 1
                if crossing is not None:
                    (stats.crossing_latencies if seq in crossing
                     else stats.local_latencies).append(lat[-1])
            last = m.end()
            n += 1
        stats.received += n
        if n and b"type='error'" in data:
            stats.bounced += len(BOUNCE.findall(data))
        rest = len(data) - last
        if rest > MARK_KEEP:
            last = len(data) - MARK_KEEP
        self.buf = bytearray(data[last:]) if last < len(data) else bytearray()

    # login helpers
    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def wait_data(self, deadline: float) -> None:
        """Wait until more bytes arrive (or the deadline passes)."""
        if self.closed:
            raise LoginError("connection closed: %r" % bytes(self.buf[-300:]))
        left = deadline - time.monotonic()
        if left <= 0:
            raise LoginError("timeout; got %r" % bytes(self.buf[-300:]))
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self.waiter, left)
        except TimeoutError:
            pass
        finally:
            self.waiter = None

    async def expect(self, pattern: re.Pattern[bytes], timeout: float = 60.0) -> re.Match[bytes]:
        """Wait for ``pattern`` in the input; consume the input up to its end."""
        deadline = time.monotonic() + timeout
        while True:
            data = bytes(self.buf)
            m = pattern.search(data)
            if m is not None:
                del self.buf[:m.end()]
                return m
            for bad in (FAILURE, STREAM_ERROR):
                b = bad.search(data)
                if b is not None:
                    raise LoginError("server refused: %s" % b.group(0)[:300].decode(errors="replace"))
            try:
                await self.wait_data(deadline)
            except LoginError as e:
                raise LoginError("waiting for %r: %s" % (pattern.pattern[:40], e)) from None

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            try:
                self.transport.write(b"</stream:stream>")
            except Exception:
                pass
            self.transport.close()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host: str = args.host
        self.stats = Stats()
        self.cache = ScramCache(args.scram_cache)
        self.pool = ThreadPoolExecutor(max(1, args.pbkdf2_threads)) if args.pbkdf2_threads else None
        self.ssl_ctx: Optional[ssl.SSLContext] = None
        if args.tls != "none":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.ssl_ctx = ctx
        self.sources = ["127.0.0.%d" % (i + 1) for i in range(args.source_ips)] \
            if args.source_ips > 1 else [None]
        self._src = 0

    def user(self, i: int) -> str:
        return "%s%d" % (self.args.prefix, i)

    async def connect(self) -> Client:
        loop = asyncio.get_running_loop()
        src = self.sources[self._src % len(self.sources)]
        self._src += 1
        _, c = await loop.create_connection(
            lambda: Client(self.stats), self.args.connect, self.args.port,
            ssl=self.ssl_ctx if self.args.tls == "direct" else None,
            server_hostname=self.host if self.args.tls == "direct" else None,
            local_addr=(src, 0) if src else None)
        return c

    async def open_stream(self, c: Client) -> bytes:
        c.send((STREAM_HEADER % self.host).encode())
        m = await c.expect(FEATURES_END)
        return m.string[:m.end()]  # type: ignore[no-any-return]

    async def login(self, i: int, resource_: str = "bench", stop_after_challenge: bool = False,
                    presence: bool = True) -> Client:
        """Connect, SCRAM-SHA-1, bind, initial presence, ping round trip."""
        user = self.user(i)
        c = await self.connect()
        try:
            feats = await self.open_stream(c)
            if self.args.tls == "starttls":
                c.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                await c.expect(STARTTLS_OK)
                loop = asyncio.get_running_loop()
                assert c.transport is not None and self.ssl_ctx is not None
                c.transport = await loop.start_tls(c.transport, c, self.ssl_ctx,  # type: ignore
                                                   server_hostname=self.host)
                c.buf.clear()
                feats = await self.open_stream(c)
            if b"SCRAM-SHA-1<" not in feats:
                raise LoginError("SCRAM-SHA-1 not offered: %r" % feats[:400])
            scram = Scram(user, self.args.password, self.cache, self.pool)
            c.send(b"<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
                   % (SASL_NS.encode(), scram.initial()))
            m = await c.expect(CHALLENGE)
            server_first = base64.b64decode(m.group(1)).decode()
            salted, attrs = await scram.salted(server_first)
            if stop_after_challenge:
                c.close()
                return c
            c.send(b"<response xmlns='%s'>%s</response>"
                   % (SASL_NS.encode(), scram.final(salted, server_first, attrs)))
            m = await c.expect(SUCCESS)
            scram.verify(m.group(1) or b"")
            c.buf.clear()
            await self.open_stream(c)
            c.send(b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                   b"<resource>%s</resource></bind></iq>" % resource_.encode())
            m = await c.expect(BIND_DONE)
            if b"result" not in m.group(1):
                raise LoginError("bind failed: %r" % m.group(0)[:300])
            jid = re.search(rb"<jid>([^<]+)</jid>", m.group(0))
            c.jid = jid.group(1).decode() if jid else "%s@%s/%s" % (user, self.host, resource_)
            if presence:
                c.send(b"<presence/>")
            c.send(b"<iq type='get' id='ping1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                   % self.host.encode())
            await c.expect(PING_DONE)
            c.buf.clear()
            c.loaded = True
            return c
        except BaseException:
            c.close()
            raise

    async def many(self, indexes: list[int], concurrency: int, **kw: Any) -> tuple[list[Client], list[int]]:
        """Log in ``indexes`` with at most ``concurrency`` logins in flight; return clients
        (in order) and per-login durations in microseconds."""
        out: list[Optional[Client]] = [None] * len(indexes)
        durs: list[int] = []
        it = iter(enumerate(indexes))
        errors: list[BaseException] = []

        async def worker() -> None:
            for pos, i in it:
                if errors:
                    return
                t = now_us()
                for attempt in range(3):
                    try:
                        out[pos] = await self.login(i, **kw)
                        break
                    except (LoginError, OSError) as e:
                        if attempt == 2 or isinstance(e, LoginError) and "refused" in str(e):
                            errors.append(e)
                            return
                        await asyncio.sleep(0.2)
                durs.append(now_us() - t)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if errors:
            for c in out:
                if c is not None:
                    c.close()
            raise LoginError("login failed for some user: %s" % errors[0])
        return [c for c in out if c is not None], durs

    def close_all(self, clients: list[Client]) -> None:
        for c in clients:
            c.close()


# -- measurement helpers -----------------------------------------------------------

def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q / 100.0 * (len(values) - 1)))))
    return values[k] / 1000.0  # ms


def rss_kib(pid: int) -> int:
    total = 0
    for p in [pid] + children(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pid: Optional[int], user_only: bool = False) -> float:
    """User + system CPU time of a process and its children (0 without a pid)."""
    if not pid:
        return 0.0
    total = 0
    for p in [pid] + children(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + (0 if user_only else int(fields[12]))
        except (FileNotFoundError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []
    out = list(kids)
    for k in kids:
        out += children(k)
    return out


def server_processes(clients: list[Client], port: int) -> list[int]:
    """The server process (pid) holding the other end of each client's connection, from
    ``ss`` (the server must run on this machine as the same user); 0 where not seen."""
    import subprocess
    out = subprocess.run(["ss", "-tnpH", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, check=False).stdout
    by_port: dict[int, int] = {}
    for line in out.splitlines():
        m = re.search(r":(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)", line)
        if m:
            by_port[int(m.group(1))] = int(m.group(2))
    out_pids = []
    for c in clients:
        peer = c.transport.get_extra_info("sockname") if c.transport is not None else None
        out_pids.append(by_port.get(peer[1], 0) if peer else 0)
    return out_pids


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


async def run_rate(bench: Bench, clients: list[Client], make: Any, per_message: int,
                   args: argparse.Namespace) -> dict[str, Any]:
    """Stepped-rate sender shared by one2one and fanout.

    ``make(seq, ts, rng)`` returns (client, bytes); every message must produce
    ``per_message`` deliveries. Steps go up by ``factor`` until p99 exceeds the
    bound, a delivery is missing, or the sender cannot keep the rate; then ``refine``
    more steps bisect between the best rate that held and the lowest that failed (or
    step down by ``factor`` while none has held: the start was too high).
    """
    stats = bench.stats
    stats.track = True
    rng = random.Random(1)
    rate = float(args.start_rate)
    steps = []
    best: Optional[dict[str, Any]] = None
    failed: Optional[float] = None  # lowest rate that did not hold
    refine = args.refine
    seq = 0
    loop = asyncio.get_running_loop()
    while rate <= args.max_rate:
        stats.reset()
        sent = 0
        start = loop.time()
        end = start + args.step_seconds
        lag_max = 0.0
        tick = 0.005
        nxt = start
        first_seq = seq
        cpu0 = cpu_seconds(args.server_pid)
        ucpu0 = cpu_seconds(args.server_pid, True)
        own0 = sum(os.times()[:2])
        while True:
            t = loop.time()
            lag_max = max(lag_max, t - nxt)
            if t >= end:
                break
            due = int((t - start) * rate) - sent
            if due > 0:
                ts = now_us()
                for _ in range(due):
                    c, data = make(seq, ts, rng)
                    c.transport.write(data)
                    seq += 1
                sent += due
            nxt = t + tick
            await asyncio.sleep(tick)
        elapsed = loop.time() - start
        expected = sent * per_message
        # drain: wait for the in-flight deliveries
        drain_end = loop.time() + args.drain_seconds
        while stats.received < expected and loop.time() < drain_end:
            await asyncio.sleep(0.05)
        cpu = cpu_seconds(args.server_pid) - cpu0
        own = sum(os.times()[:2]) - own0
        ucpu = cpu_seconds(args.server_pid, True) - ucpu0
        missing = 0
        dup = 0
        for s in range(first_seq, seq):
            n = stats.seen.get(s, 0)
            if n < per_message:
                missing += per_message - n
            elif n > per_message:
                dup += n - per_message
        lat = stats.latencies
        p50, p99 = pct(lat, 50), pct(lat, 99)
        achieved = sent / elapsed
        step: dict[str, Any] = {
                "rate": round(rate), "sent": sent, "achieved_rate": round(achieved, 1),
                "deliveries": stats.received, "expected": expected, "lost": missing,
                "duplicates": dup, "bounced": stats.bounced,
                "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                "max_ms": round(pct(lat, 100), 2), "sender_lag_max_ms": round(lag_max * 1000, 1),
                # near 100: the load generator itself is the limit
                "loadgen_cpu_percent": round(100 * own / max(1e-6, loop.time() - start), 1)}
        if stats.crossing is not None:
            # --by-process: the latency of messages that crossed between two server
            # processes, and of those that did not
            cl, local = stats.crossing_latencies, stats.local_latencies
            if not cl:
                log("    no message crossed between server processes (one process)")
            else:
                step.update(crossing_share=round(len(cl) / max(1, len(lat)), 3),
                            crossing_p50_ms=round(pct(cl, 50), 2),
                            crossing_p99_ms=round(pct(cl, 99), 2),
                            local_p50_ms=round(pct(local, 50), 2),
                            local_p99_ms=round(pct(local, 99), 2))
                log("    crossing %.0f%%: p50 %.1f ms p99 %.1f ms; local p50 %.1f ms p99 %.1f ms"
                    % (100 * step["crossing_share"], step["crossing_p50_ms"],
                       step["crossing_p99_ms"], step["local_p50_ms"], step["local_p99_ms"]))
        if args.server_pid:
            # server CPU per delivery: robust to other load on the machine
            step["server_cpu_s"] = round(cpu, 2)
            step["server_cpu_us_per_delivery"] = round(cpu * 1e6 / max(1, stats.received), 1)
            step["server_user_cpu_us_per_delivery"] = round(ucpu * 1e6 / max(1, stats.received), 1)
        kept_up = sent >= 0.95 * rate * elapsed - 2  # whole messages per tick
        ok = missing == 0 and p99 <= args.p99_bound_ms and kept_up
        step["held"] = ok
        if not kept_up:
            step["note"] = "load generator could not keep the rate"
        steps.append(step)
        log("  step %6d/s: sent %d (%.0f/s) deliveries %d/%d lost %d p50 %.1f ms p99 %.1f ms "
            "loadgen CPU %.0f%%%s %s"
            % (rate, sent, achieved, stats.received, expected, missing, p50, p99,
               step["loadgen_cpu_percent"],
               " server CPU %.1f us/delivery (user %.1f)" % (
                   step["server_cpu_us_per_delivery"], step["server_user_cpu_us_per_delivery"])
               if args.server_pid else "", "held" if ok else "FAILED"))
        if ok:
            if best is None or rate > best["rate"]:
                best = step
        else:
            failed = rate if failed is None else min(failed, rate)
        if failed is None:
            rate *= args.factor
        else:
            if refine <= 0:
                break
            refine -= 1
            if best is None:
                # not even the first step held: the start was too high, step down
                rate = failed / args.factor
            else:
                # bisect between the best rate that held and the lowest that failed
                rate = (best["rate"] + failed) / 2
        # let the server settle (and a backlog drain) between steps
        settle_end = loop.time() + args.drain_seconds
        while stats.received < expected and loop.time() < settle_end:
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.pause_seconds)
    stats.track = False
    return {"steps": steps, "best": best}


# -- phases -------------------------------------------------------------------------

async def phase_prime(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    t = time.monotonic()
    idx = list(range(args.offset, args.offset + args.users))
    await bench.many(idx, args.concurrency, stop_after_challenge=True)
    bench.cache.save()
    return {"phase": "prime", "users": args.users, "cached": len(bench.cache.data),
            "seconds": round(time.monotonic() - t, 1)}


async def phase_one2one(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    n = args.users
    clients, _ = await bench.many(list(range(args.offset, args.offset + n)), args.concurrency)
    bench.cache.save()
    log("one2one: %d users logged in" % n)
    bare = [("%s@%s" % (bench.user(args.offset + i), bench.host)).encode() for i in range(n)]
    pre = b"<message type='chat' to='"
    mid = b"'><body>B:"
    post = b":E</body></message>"
    pad = b"x" * args.body_pad
    if pad:
        post = b":E " + pad + b"</body></message>"
    heads = [pre + b for b in bare]
    owner: list[int] = []
    if args.by_process:
        owner = server_processes(clients, args.port)
        counts: dict[int, int] = {}
        for pid in owner:
            counts[pid] = counts.get(pid, 0) + 1
        log("one2one: clients per server process %s" % dict(sorted(counts.items())))
        bench.stats.crossing = set()

    def make(seq: int, ts: int, rng: random.Random) -> tuple[Client, bytes]:
        a = rng.randrange(n)
        b = rng.randrange(n - 1)
        if b >= a:
            b += 1
        if owner and owner[a] != owner[b]:
            crossing = bench.stats.crossing
            assert crossing is not None
            crossing.add(seq)
        return clients[a], b"".join((heads[b], mid, str(ts).encode(), b":", str(seq).encode(), post))

    await asyncio.sleep(1.0)
    res = await run_rate(bench, clients, make, 1, args)
    bench.close_all(clients)
    best = res["best"]
    return {"phase": "one2one", "users": n, "messages_per_s": best["rate"] if best else 0,
            "p50_ms": best["p50_ms"] if best else None, "p99_ms": best["p99_ms"] if best else None,
            **res}


async def phase_memory(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    if not args.server_pid:
        raise SystemExit("memory: --server-pid is required")
    pid = args.server_pid
    checkpoints = sorted(int(x) for x in args.checkpoints.split(","))
    # warm up code paths and caches, then take the baseline with no connection
    warm, _ = await bench.many(list(range(args.offset, args.offset + 20)), 10)
    bench.close_all(warm)
    await asyncio.sleep(args.settle)
    base = rss_kib(pid)
    log("memory: baseline RSS %d KiB" % base)
    clients: list[Client] = []
    points = []
    t0 = time.monotonic()
    for cp in checkpoints:
        idx = list(range(args.offset + len(clients), args.offset + cp))
        more, _ = await bench.many(idx, args.concurrency)
        clients += more
        bench.cache.save()
        await asyncio.sleep(args.settle)
        r = rss_kib(pid)
        per = (r - base) / cp
        points.append({"connections": cp, "rss_kib": r, "kib_per_connection": round(per, 2)})
        log("memory: %d connections: RSS %d KiB, %.1f KiB per connection" % (cp, r, per))
    bench.close_all(clients)
    return {"phase": "memory", "baseline_rss_kib": base, "points": points,
            "kib_per_connection": points[-1]["kib_per_connection"],
            "login_seconds": round(time.monotonic() - t0, 1)}


async def phase_logins(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    idx = list(range(args.offset, args.offset + args.users))
    cpu0 = cpu_seconds(args.server_pid)
    own0 = sum(os.times()[:2])
    t = time.monotonic()
    clients, durs = await bench.many(idx, args.concurrency)
    elapsed = time.monotonic() - t
    cpu = cpu_seconds(args.server_pid) - cpu0
    own = sum(os.times()[:2]) - own0
    bench.cache.save()
    bench.close_all(clients)
    rate = len(clients) / elapsed
    out = {"phase": "logins", "logins": len(clients), "concurrency": args.concurrency,
           "seconds": round(elapsed, 3), "logins_per_s": round(rate, 1),
           "p50_ms": round(pct(durs, 50), 2), "p99_ms": round(pct(durs, 99), 2),
           # near 100: the load generator itself is the limit
           "loadgen_cpu_percent": round(100 * own / max(1e-6, elapsed), 1)}
    if args.server_pid:
        out["server_cpu_percent"] = round(100 * cpu / max(1e-6, elapsed), 1)
        out["server_cpu_us_per_login"] = round(cpu * 1e6 / max(1, len(clients)), 1)
    log("logins: %d in %.2f s = %.0f/s, p50 %.1f ms, p99 %.1f ms, loadgen CPU %.0f%%%s"
        % (len(clients), elapsed, rate, pct(durs, 50), pct(durs, 99), out["loadgen_cpu_percent"],
           ", server CPU %.0f%% (%.0f us/login)" % (out["server_cpu_percent"],
                                                     out["server_cpu_us_per_login"])
           if args.server_pid else ""))
    return out


async def join_room(bench: Bench, c: Client, room: str, nick: str, owner: bool) -> None:
    c.loaded = False
    c.buf.clear()
    c.send(b"<presence to='%s/%s'><x xmlns='%s'><history maxstanzas='0'/></x></presence>"
           % (room.encode(), nick.encode(), MUC_NS.encode()))
    deadline = time.monotonic() + 60
    while SELF_PRESENCE.search(c.buf) is None:
        e = PRESENCE_ERROR.search(c.buf)
        if e is not None:
            raise LoginError("join refused: %r" % e.group(0)[:400])
        await c.wait_data(deadline)
    created = ROOM_CREATED.search(c.buf) is not None
    if owner and created:
        c.send(b"<iq type='set' id='cfg1' to='%s'><query xmlns='%s#owner'>"
               b"<x xmlns='jabber:x:data' type='submit'/></query></iq>"
               % (room.encode(), MUC_NS.encode()))
        m2 = await c.expect(CONFIG_DONE)
        if b"result" not in m2.group(1):
            raise LoginError("room configuration refused: %r" % m2.group(0)[:300])
    c.buf.clear()
    c.loaded = True


async def phase_fanout(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    n = args.users
    clients, _ = await bench.many(list(range(args.offset, args.offset + n)), args.concurrency)
    bench.cache.save()
    room = "%s@%s" % (args.room, args.muc_host or "conference." + bench.host)
    await join_room(bench, clients[0], room, "n0", True)
    sem = asyncio.Semaphore(20)

    async def join(i: int) -> None:
        async with sem:
            await join_room(bench, clients[i], room, "n%d" % i, False)

    await asyncio.gather(*(join(i) for i in range(1, n)))
    log("fanout: %d occupants in %s" % (n, room))
    await asyncio.sleep(2.0)  # let the join presences drain
    head = b"<message type='groupchat' to='" + room.encode() + b"'><body>B:"
    post = b":E</body></message>"

    def make(seq: int, ts: int, rng: random.Random) -> tuple[Client, bytes]:
        return clients[rng.randrange(n)], b"".join((head, str(ts).encode(), b":",
                                                    str(seq).encode(), post))

    res = await run_rate(bench, clients, make, n, args)
    bench.close_all(clients)
    best = res["best"]
    return {"phase": "fanout", "occupants": n,
            "messages_per_s": best["rate"] if best else 0,
            "deliveries_per_s": best["rate"] * n if best else 0,
            "p50_ms": best["p50_ms"] if best else None, "p99_ms": best["p99_ms"] if best else None,
            **res}


PHASES = {"prime": phase_prime, "one2one": phase_one2one, "memory": phase_memory,
          "logins": phase_logins, "fanout": phase_fanout}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="localhost", help="XMPP domain")
    ap.add_argument("--connect", default="127.0.0.1", help="address to connect to")
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("--tls", choices=("none", "starttls", "direct"), default="none")
    ap.add_argument("--prefix", default="u", help="user names are PREFIX0, PREFIX1...")
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--offset", type=int, default=0, help="first user index")
    ap.add_argument("--scram-cache", help="JSON file of salted passwords (kept across runs)")
    ap.add_argument("--pbkdf2-threads", type=int, default=0,
                    help="compute PBKDF2 in N threads (0: inline)")
    ap.add_argument("--source-ips", type=int, default=1,
                    help="spread connections over 127.0.0.1..N (more ephemeral ports)")
    ap.add_argument("--server-pid", type=int, help="for memory: the server process")
    ap.add_argument("--concurrency", type=int, default=50, help="logins in flight")
    ap.add_argument("--json", help="also write the result to this file")
    ap.add_argument("--no-uvloop", action="store_true")
    sub = ap.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("prime")
    p.add_argument("--users", type=int, default=10000)
    for name, users, start, mx in (("one2one", 1000, 250, 100000), ("fanout", 200, 5, 2000)):
        p = sub.add_parser(name)
        p.add_argument("--users", type=int, default=users)
        p.add_argument("--start-rate", type=float, default=start, help="messages/s of the first step")
        p.add_argument("--factor", type=float, default=1.5, help="rate multiplier per step")
        p.add_argument("--refine", type=int, default=2,
                       help="after the first failure, bisect this many more steps (step "
                       "down by --factor while none has held)")
        p.add_argument("--max-rate", type=float, default=mx)
        p.add_argument("--step-seconds", type=float, default=10.0)
        p.add_argument("--drain-seconds", type=float, default=5.0)
        p.add_argument("--pause-seconds", type=float, default=1.0)
        p.add_argument("--p99-bound-ms", type=float, default=200.0)
        if name == "one2one":
            p.add_argument("--body-pad", type=int, default=0, help="extra body bytes")
            p.add_argument("--by-process", action="store_true",
                           help="report the latency of messages between clients of two server "
                                "processes apart (finds them with ss; server on this machine)")
        else:
            p.add_argument("--room", default="bench")
            p.add_argument("--muc-host", help="default: conference.HOST")
    p = sub.add_parser("memory")
    p.add_argument("--checkpoints", default="5000,10000")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before reading RSS")
    p = sub.add_parser("logins")
    p.add_argument("--users", type=int, default=3000)
    return ap


def main() -> None:
    args = parser().parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not args.no_uvloop:
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
    bench = Bench(args)
    result = asyncio.run(PHASES[args.phase](bench, args))
    result["server_port"] = args.port
    result["tls"] = args.tls
    out = json.dumps(result)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    print(out, flush=True)


if __name__ == "__main__":
    main()
