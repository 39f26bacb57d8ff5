"""The client side of a cluster hand-over: CPU per Redis round trip, redis-py against
the lean connection of ``xmppd/cluster/resp.py``.

    .venv/bin/python bench/handover.py              # 3 runs of 3,000 round trips each
    .venv/bin/python bench/handover.py --batch 50   # stanzas packed per stream entry

Starts a private redis-server on a Unix socket and measures this process's CPU
time (not Redis') for the two round trips a crossing stanza takes: the writer's
XADD of a packed batch, and the reader's XDEL of what it handled with its next
XREAD. Prints the median of the runs for each client and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xmppd.cluster.entries import join_payloads  # noqa: E402
from xmppd.cluster.resp import RespConnection, stream_entries  # noqa: E402

PAYLOAD = (b"D0 u1@localhost/r\n<message type='chat' to='u1@localhost' "
           b"from='u2@localhost/r'><body>B:1764358000000000:123456:E</body></message>")


async def redis_py(sock: str, n: int, packed: bytes) -> tuple[float, float]:
    import redis.asyncio as aioredis

    r = aioredis.Redis(unix_socket_path=sock)
    await r.delete("bench:q")
    c = time.process_time()
    for _ in range(n):
        pipe = r.pipeline(transaction=False)
        pipe.xadd("bench:q", {b"m": packed})
        await pipe.execute()
    write = (time.process_time() - c) / n
    last, done = b"0", list[bytes]()
    c = time.process_time()
    for _ in range(n):
        pipe = r.pipeline(transaction=False)
        if done:
            pipe.xdel("bench:q", *done)
        pipe.xread({"bench:q": last}, count=1)
        res = (await pipe.execute())[-1]
        done = []
        for _key, entries in res:
            for entry_id, _fields in entries:
                done.append(entry_id)
                last = entry_id
    read = (time.process_time() - c) / n
    await r.aclose()
    return write, read


async def lean(sock: str, n: int, packed: bytes) -> tuple[float, float]:
    conn = RespConnection(unix_socket_path=sock)
    await conn.execute([["DEL", "bench:q"]])
    c = time.process_time()
    for _ in range(n):
        await conn.execute([["XADD", "bench:q", "*", b"m", packed]])
    write = (time.process_time() - c) / n
    last, done = b"0", list[bytes]()
    c = time.process_time()
    for _ in range(n):
        cmds: list[list[Any]] = [["XREAD", "COUNT", "1", "STREAMS", "bench:q", last]]
        if done:
            cmds.insert(0, ["XDEL", "bench:q", *done])
        res = stream_entries((await conn.execute(cmds))[-1])
        done = [entry_id for entry_id, _fields in res]
        last = done[-1] if done else last
    read = (time.process_time() - c) / n
    conn.close()
    return write, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--round-trips", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=10, help="stanzas per stream entry")
    args = ap.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (make services installs it)")
    try:
        import uvloop
        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    packed = join_payloads([PAYLOAD] * args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        sock = str(Path(tmp) / "redis.sock")
        proc = subprocess.Popen([exe, "--port", "0", "--unixsocket", sock, "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if Path(sock).exists():
                    break
                time.sleep(0.05)
            results: dict[str, list[tuple[float, float]]] = {"redis-py": [], "lean": []}
            for _ in range(args.runs):  # interleaved
                results["redis-py"].append(run(redis_py(sock, args.round_trips, packed)))
                results["lean"].append(run(lean(sock, args.round_trips, packed)))
        finally:
            proc.terminate()
            proc.wait()
    med = {k: (statistics.median(w for w, _ in v) * 1e6, statistics.median(r for _, r in v) * 1e6)
           for k, v in results.items()}
    print("client CPU per round trip (median of %d runs of %d, %d stanzas per entry):"
          % (args.runs, args.round_trips, args.batch))
    print("%-9s %12s %16s" % ("client", "XADD (µs)", "XDEL+XREAD (µs)"))
    for k, (w, r) in med.items():
        print("%-9s %12.1f %16.1f" % (k, w, r))
    print("lean / redis-py: XADD %.2fx, XDEL+XREAD %.2fx"
          % (med["lean"][0] / med["redis-py"][0], med["lean"][1] / med["redis-py"][1]))


if __name__ == "__main__":
    main()
