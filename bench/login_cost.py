"""In-process CPU cost of a login, without sockets.

Usage: .venv/bin/python bench/login_cost.py [--logins 2000] [--runs 5] [--concurrency 50]

Builds a real Server with the modules bench/compare.py gives xmppd (disco, ping,
roster, muc), creates the accounts in bulk, then logs users in as the logins
phase of bench/loadgen.py does (stream header, SCRAM-SHA-1, stream restart,
bind, initial presence, a ping round trip) on fake transports: bytes go into
``C2SConnection.data_received`` and come out of ``transport.write``, on the same
event loop (uvloop), with the same database thread. Each run logs in fresh users,
``--concurrency`` at a time, and prints the process CPU microseconds per login
(server and the small client side together: two HMACs and a few regular
expressions a login). The kernel's share of a real login (accept, reads, writes)
is not in it, so before/after figures of the server's Python work are steadier on
a busy machine than the real thing, though still noisy (10%).

Two measures that do not depend on the machine's load at all:
- ``--opcodes N``: one more run with a tracer counting the Python bytecodes each
  function executes; prints the bytecodes per login in all and the top N functions.
- under valgrind: ``valgrind --tool=callgrind python bench/login_cost.py --runs 1
  --iterations 1024 --logins 200`` and again with ``--logins 600``, with
  ``PYTHONHASHSEED=0``; the difference of the two instruction totals over the 800
  more logins is the instructions a login costs (the same count twice to 0.01%).

``--profile`` prints a cProfile of one more run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import gc
import hashlib
import hmac
import pstats
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, Optional

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hotpath import HEADER, FakeTransport, run  # noqa: E402

from xmppd.c2s.listener import C2SConnection  # noqa: E402
from xmppd.cli import tune_gc  # noqa: E402
from xmppd.config import parse_config  # noqa: E402
from xmppd.server import Server  # noqa: E402
from xmppd.storage.accounts import _row_values, make_credentials, users  # noqa: E402

ROOT = str(Path(__file__).resolve().parent.parent)
PASSWORD = "secret"
ITERATIONS = 4096
SASL_NS = b"urn:ietf:params:xml:ns:xmpp-sasl"
FEATURES_END = re.compile(rb"</stream:features>")
CHALLENGE = re.compile(rb"<challenge[^>]*>([^<]*)</challenge>")
SUCCESS = re.compile(rb"<success[^>]*>([^<]*)</success>")
BIND_DONE = re.compile(rb"<iq[^>]*id=['\"]bind1['\"][^>]*>")
PING_DONE = re.compile(rb"<iq[^>]*id=['\"]ping1['\"]")


class LoginTransport(FakeTransport):
    """Collects what the server writes; wakes the client waiting for it."""

    __slots__ = ("buf", "waiter")

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()
        self.waiter: Optional[asyncio.Future[None]] = None

    def write(self, data: bytes) -> None:
        self.buf += data
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def expect(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        while True:
            m = pattern.search(self.buf)
            if m is not None:
                out = pattern.search(bytes(self.buf))
                assert out is not None
                del self.buf[:m.end()]
                return out
            if b"<failure" in self.buf or b"<stream:error" in self.buf:
                raise RuntimeError("server refused: %r" % bytes(self.buf[-300:]))
            self.waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self.waiter, 10)
            self.waiter = None


async def login(server: Server, user: str, salted: bytes) -> C2SConnection:
    conn = C2SConnection(server, server.config.listen[0], False)
    t = LoginTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    conn.data_received(HEADER)
    await t.expect(FEATURES_END)
    cnonce = "bench-client-nonce-%s" % user
    first_bare = "n=%s,r=%s" % (user, cnonce)
    conn.data_received(b"<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
                       % (SASL_NS, base64.b64encode(("n,," + first_bare).encode())))
    server_first = base64.b64decode((await t.expect(CHALLENGE)).group(1)).decode()
    nonce = server_first.split(",")[0][2:]
    without_proof = "c=biws,r=" + nonce
    auth_message = ",".join((first_bare, server_first, without_proof)).encode()
    client_key = hmac.digest(salted, b"Client Key", "sha1")
    signature = hmac.digest(hashlib.sha1(client_key).digest(), auth_message, "sha1")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    conn.data_received(b"<response xmlns='%s'>%s</response>" % (SASL_NS, base64.b64encode(
        (without_proof + ",p=" + base64.b64encode(proof).decode()).encode())))
    await t.expect(SUCCESS)
    conn.data_received(HEADER)
    await t.expect(FEATURES_END)
    conn.data_received(b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                       b"<resource>bench</resource></bind></iq>")
    await t.expect(BIND_DONE)
    conn.data_received(b"<presence/>")
    conn.data_received(b"<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    await t.expect(PING_DONE)
    return conn


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = parse_config({
            "hosts": ["localhost"], "loglevel": "warning", "data_dir": str(tmp / "data"),
            "scram_iterations": args.iterations,
            "listen": [{"port": 15298, "ip": "127.0.0.1", "module": "ejabberd_c2s",
                        "starttls": False, "starttls_required": False,
                        "max_stanza_size": 65536}],
            "shaper_rules": {"max_user_sessions": 10},
            "modules": {"mod_disco": {}, "mod_ping": {}, "mod_roster": {},
                        "mod_muc": {"host": "conference.@HOST@"}},
        }, base_dir=tmp)
        server = Server(cfg)
        rounds = args.runs + 1 + (1 if args.profile else 0) + (1 if args.opcodes else 0)
        names = ["u%d" % i for i in range(args.logins * rounds)]
        await server.start(listen=False)
        # the accounts share one salt, so the client derives its key once (what a login
        # costs the server does not depend on the salt)
        creds = make_credentials(PASSWORD, args.iterations)
        rows = [_row_values("localhost", n, creds) for n in names]
        db = server.db
        assert db is not None
        db.run_sync(lambda conn: [conn.execute(insert(users), rows[i:i + 1000])
                                  for i in range(0, len(rows), 1000)])
        salted = hashlib.pbkdf2_hmac("sha1", PASSWORD.encode(), creds.sha1.salt,
                                     creds.sha1.iterations)
        tune_gc()  # as xmppd run does once started
        times = []
        for r in range(rounds):
            batch = names[r * args.logins:(r + 1) * args.logins]
            prof: Optional[cProfile.Profile] = None
            if args.opcodes and r == rounds - 1:
                counts = await count_opcodes(run_logins(server, batch, salted, args.concurrency))
                total = sum(counts.values())
                print("%.0f bytecodes per login (server and client); the top %d functions:"
                      % (total / len(batch), args.opcodes))
                for where, n in counts.most_common(args.opcodes):
                    print("%8.1f %5.1f%%  %s" % (n / len(batch), 100.0 * n / total, where))
                continue
            if args.profile and r == rounds - (2 if args.opcodes else 1):
                prof = cProfile.Profile()
                prof.enable()
            cpu = await run_logins(server, batch, salted, args.concurrency)
            if prof is not None:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(40)
            elif r > 0:  # the first round warms up
                times.append(cpu / len(batch) * 1e6)
        print("%d logins per run, %d at a time: median %.1f us/login, best %.1f (runs: %s)"
              % (args.logins, args.concurrency, statistics.median(times), min(times),
                 ", ".join("%.1f" % t for t in times)))
        await server.stop()


async def run_logins(server: Server, names: list[str], salted: bytes,
                     concurrency: int) -> float:
    """Log ``names`` in, ``concurrency`` at a time; the process CPU seconds it took."""
    todo = iter(names)

    async def worker() -> None:
        for user in todo:
            await login(server, user, salted)

    gc.collect()
    t = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - t


async def count_opcodes(work: Coroutine[Any, Any, float]) -> Counter[str]:
    """Run ``work`` with a tracer counting the bytecodes executed per function (in
    every thread: the database thread's too)."""
    counts: Counter[str] = Counter()
    root = ROOT + "/"

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        where = "%s:%d %s" % (code.co_filename.replace(root, ""), code.co_firstlineno,
                              code.co_name)

        def count(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[where] += 1
            return count
        return count

    sys.settrace(tracer)
    threading.settrace(tracer)
    try:
        await work
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logins", type=int, default=2000, help="logins per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--opcodes", type=int, default=0, metavar="N",
                    help="count the bytecodes of one more run; print the top N functions")
    ap.add_argument("--iterations", type=int, default=ITERATIONS,
                    help="SCRAM iterations of the accounts, 1024 or more (what a login "
                         "costs does not depend on them; fewer make the set-up quicker)")
    run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
