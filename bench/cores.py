"""Are this machine's CPUs cores of their own? A pure-Python loop alone, then two at once.

Usage: .venv/bin/python bench/cores.py [--rounds 10] [--seconds 3]

Each round runs the loop on CPU 0 alone, then on CPU 0 and CPU 1 at the same time (one
process each, pinned), and prints how fast each of the pair ran compared with the loop
alone. On a machine whose CPUs are independent cores the ratio stays near 1.0; where two
virtual CPUs share a physical core (SMT siblings on the host) or a busy neighbour shares
the caches, each of the pair runs slower. ``bench/workers.py`` compares one worker with
two on such CPUs: whatever slows two busy processes here is charged to the second worker.
The medians of the ratios are printed at the end; the loop's own speed varies from round
to round on a shared machine, so only rounds measured close together are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def loop_rate(seconds: float) -> float:
    """Iterations per second of a loop of dictionary stores (the interpreter's daily work)."""
    n = 0
    d: dict[int, int] = {}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for i in range(1000):
            d[i & 63] = n + i
        n += 1
    return n / seconds


def pinned(cpu: int, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--child", str(cpu), "--seconds",
                             str(seconds)], stdout=subprocess.PIPE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        os.sched_setaffinity(0, {args.child})
        print(loop_rate(args.seconds), flush=True)
        return
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two CPUs")
    ratios: list[float] = []
    for r in range(1, args.rounds + 1):
        alone = float(pinned(0, args.seconds).communicate()[0])
        pair = [pinned(cpu, args.seconds) for cpu in (0, 1)]
        both = [float(p.communicate()[0]) for p in pair]
        ratios += [b / alone for b in both]
        print("round %2d: alone %.0f/s, together %.0f/s and %.0f/s: %.2f and %.2f of alone"
              % (r, alone, both[0], both[1], both[0] / alone, both[1] / alone), flush=True)
    print("median: each of two busy CPUs runs the loop at %.2f of one CPU alone "
          "(%d ratios, quartiles %.2f-%.2f)" % (
              statistics.median(ratios), len(ratios),
              *statistics.quantiles(ratios, n=4)[::2]))


if __name__ == "__main__":
    main()
