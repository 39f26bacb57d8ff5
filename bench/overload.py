"""Overload without loss: offer more one-to-one messages than xmppd can serve, then wait.

    .venv/bin/python bench/overload.py                       # 2 workers, 36,000 msgs/s, 10 s
    .venv/bin/python bench/overload.py --workers 1 --rate 50000

The load generator of ``bench/compare.py`` sends ``--rate`` messages/s for
``--seconds`` from 1,000 users to random others, then waits up to ``--drain``
seconds for every message to come out. A message comes out delivered, or bounced
back to its sender with an error (the server could not take it: a bounded queue
is full). Anything else is lost. Prints the three counts and writes JSON.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
from workers import Workers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=36000, help="messages/s offered")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--drain", type=float, default=120, help="seconds to wait for the rest")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--phase-timeout", type=float, default=1800)
    ap.add_argument("--out", help="JSON file (default bench/results/overload-TIMESTAMP.json)")
    ap.add_argument("--keep", help="keep the servers' directories (logs) here")
    args = ap.parse_args()
    args.muc_archive = False
    args.server_cpu = args.loadgen_cpu = None  # two workers need both cores
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="xmppd-overload-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    try:
        srv = Workers(base, args, args.workers)
        srv.setup_accounts(args.users + 20)
        srv.start()
        try:
            compare.loadgen(srv, args, "prime", ["--users", str(args.users + 20)], pinned=False)
            res = compare.loadgen(srv, args, "one2one", [
                "--users", str(args.users), "--start-rate", str(args.rate),
                "--max-rate", str(args.rate), "--step-seconds", str(args.seconds),
                "--drain-seconds", str(args.drain), "--refine", "0"], pinned=False)
        finally:
            srv.stop()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    step = res["steps"][0]
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "workers": args.workers,
           "offered_per_s": args.rate, "seconds": args.seconds, "sent": step["sent"],
           "came_out": step["deliveries"], "bounced": step.get("bounced", 0),
           "lost": step["lost"], "duplicates": step["duplicates"], "p99_ms": step["p99_ms"],
           "max_ms": step["max_ms"]}
    print("%d worker(s), %d msgs/s offered for %d s: sent %d, delivered %d, bounced %d, "
          "lost %d, duplicates %d (latency p99 %.0f ms, max %.0f ms)"
          % (args.workers, args.rate, args.seconds, out["sent"],
             out["came_out"] - out["bounced"], out["bounced"], out["lost"], out["duplicates"],
             out["p99_ms"], out["max_ms"]))
    print("JSON: %s" % compare.write_results(out, args.out, "overload"))


if __name__ == "__main__":
    main()
