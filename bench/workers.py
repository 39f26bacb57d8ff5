"""One worker against two: the same one-to-one load on ``xmppd run --workers 1`` and ``2``.

    .venv/bin/python bench/workers.py                 # 3 interleaved runs, medians
    .venv/bin/python bench/workers.py --runs 1 --step-seconds 5
    .venv/bin/python bench/workers.py --phase logins  # logins/s instead
    .venv/bin/python bench/workers.py --per-worker-rate 6000 --step-seconds 15
                                                      # CPU at equal load per worker

Uses the servers and the load generator of ``bench/compare.py``: the same
accounts (``register_bulk``), 1,000 users sending chat messages to random
others, the rate stepped up until p99 delivery latency exceeds 200 ms or a
message is lost. With two workers the kernel spreads the connections over both
(SO_REUSEPORT), so about half of the messages cross from one worker to the
other through the private Redis the master starts.

Prints, for each worker count, the rate that held (median of the runs), the
server's CPU time per delivered message (all worker processes and Redis
together) and the ratio two/one.

``--per-worker-rate R`` measures instead what a second worker costs where the
cores do not suffice to show it: N workers get a fixed N x R msgs/s (one step),
and the table gives the server CPU per delivery. If two workers use X times the
CPU of one per delivery at the same load per worker, two workers with a core
each would hold about 2/X of one worker's rate (as long as the CPU is the limit).

Placement: ``--server-cpu`` and ``--loadgen-cpu`` (``taskset`` lists); by
default nothing is pinned, because two workers need both cores of a two-core
machine, and then the load generator competes with them for CPU: on such a
machine the ratio understates what two workers do with two cores of their own.

``--cpu-quota Q`` shows the scaling as throughput on such a machine: a server
with N workers runs in a cgroup that gives all its processes (master, workers,
Redis) N x Q CPUs (:mod:`cpuquota`), so one worker gets a core of Q CPUs and two
workers two such cores, and the load generator keeps the rest of the machine. Each
worker also gets a group of Q CPUs of its own inside (a core each, as on a machine with
a core per worker); ``--shared-quota`` leaves them one pool of N x Q instead, which lets
one worker run on into the other's share while the other waits for the next period::

    .venv/bin/python bench/workers.py --cpu-quota 0.5 --start-rate 6000 --factor 1.2 --refine 3

Near saturation a worker trades latency for CPU (bigger batches), so the rate that holds
depends on the latency bound: ``--p99-bound-ms`` changes it (default 200 ms).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import cpuquota  # noqa: E402
import loadgen  # noqa: E402

PAIR = "xmppd-1x2"


class Workers(compare.Xmppd):
    def __init__(self, base: Path, args: argparse.Namespace, workers: int,
                 name: Optional[str] = None) -> None:
        self.name = name or "xmppd-w%d" % workers
        self.workers = workers
        super().__init__(base, args)
        # N workers: N cores of Q CPUs each, for all the server's processes together
        self.quota = (cpuquota.CpuQuota("xmppd-bench-%d-%s" % (os.getpid(), self.name),
                                        workers * args.cpu_quota)
                      if args.cpu_quota else None)

    def write_config(self) -> None:
        import yaml
        super().write_config()
        path = self.base / "xmppd.yml"
        cfg = yaml.safe_load(path.read_text())
        cfg["worker_cpu_affinity"] = {"auto": "auto", "true": True,
                                      "false": False}[self.args.worker_cpu_affinity]
        path.write_text(yaml.safe_dump(cfg))

    def command(self) -> list[str]:
        cmd = super().command() + ["--workers", str(self.workers)]
        return self.quota.prefix() + cmd if self.quota is not None else cmd

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        # the master: the load generator counts its children (workers, Redis) too
        self.pid = self.proc.pid
        time.sleep(1.0)  # the workers find each other through Redis
        if self.quota is not None and self.workers > 1 and not self.args.shared_quota:
            pids = worker_pids(self.pid)
            if len(pids) != self.workers:
                self.stop()
                raise RuntimeError("%s: %d worker processes, not %d: cannot give each a core"
                                   % (self.name, len(pids), self.workers))
            self.quota.split(pids, self.args.cpu_quota)

    def stop(self) -> None:
        super().stop()
        if self.quota is not None:
            self.quota.unsplit()


def worker_pids(master: int) -> list[int]:
    """The worker processes ``xmppd run --workers N`` forked (not its Redis)."""
    out = []
    for pid in loadgen.children(master):
        try:
            cmdline = Path("/proc/%d/cmdline" % pid).read_bytes()
        except FileNotFoundError:
            continue
        if b"redis" not in cmdline:
            out.append(pid)
    return out


def cpu_per_delivery(res: dict[str, Any]) -> Optional[float]:
    """At the highest rate that held (CPU per message falls as batches grow with load)."""
    held = [s for s in res.get("steps", []) if s.get("held")]
    if not held:
        return None
    return max(held, key=lambda s: s["rate"]).get("server_cpu_us_per_delivery")


def run_fixed(srv: Workers, args: argparse.Namespace) -> dict[str, Any]:
    """One step at ``workers x per_worker_rate`` msgs/s on a fresh server."""
    rate = args.per_worker_rate * srv.workers
    compare.log("%s: one2one at %d msgs/s: starting a fresh server" % (srv.name, rate))
    srv.start()
    try:
        return compare.loadgen(srv, args, "one2one", [
            "--users", str(args.users), "--start-rate", str(rate), "--max-rate", str(rate),
            "--refine", "0", "--step-seconds", str(args.step_seconds),
            *compare.p99_bound(args), *compare.by_process(args)])
    except Exception as e:  # keep going: one failing run must not hide the others
        compare.log("%s: failed: %s" % (srv.name, e))
        return {"phase": "one2one", "error": str(e)}
    finally:
        srv.stop()


def run_one(srv: Workers, args: argparse.Namespace) -> dict[str, Any]:
    """One run of the phase (or the fixed step) on a fresh server; with a CPU quota, how
    long the server waited for CPU time in it."""
    waited = srv.quota.throttled_seconds() if srv.quota is not None else 0.0
    res = (run_fixed(srv, args) if args.per_worker_rate
           else compare.run_phase(srv, args, args.phase))
    if srv.quota is not None:
        res["cpu_quota_cores"] = srv.quota.cores
        res["quota_per_worker"] = srv.workers > 1 and not args.shared_quota
        res["throttled_s"] = round(srv.quota.throttled_seconds() - waited, 1)
    return res


def run_pair(pair: list[Workers], args: argparse.Namespace) -> dict[str, Any]:
    """The control: two independent one-worker servers, each with its own load generator
    at ``per_worker_rate``, side by side on the same machine. The same load per process as
    two workers, but nothing crosses between them: what it costs above one worker alone
    is the machine's (two busy processes and two load generators sharing its cores)."""
    compare.log("2 independent servers: one2one at %d msgs/s each" % args.per_worker_rate)
    with concurrent.futures.ThreadPoolExecutor(len(pair)) as pool:
        results = list(pool.map(lambda srv: run_fixed(srv, args), pair))
    steps = [r["steps"][0] for r in results if r.get("steps")]
    if len(steps) != len(pair) or not all("server_cpu_s" in s for s in steps):
        return {"phase": "one2one", "error": "a server of the pair failed", "pair": results}
    cpu = sum(s["server_cpu_s"] for s in steps)
    delivered = sum(s["deliveries"] for s in steps)
    step = {"rate": sum(s["rate"] for s in steps), "deliveries": delivered,
            "server_cpu_s": round(cpu, 2),
            "server_cpu_us_per_delivery": round(cpu * 1e6 / max(1, delivered), 1),
            "p99_ms": max(s["p99_ms"] for s in steps),
            "lost": sum(s["lost"] for s in steps)}
    return {"phase": "one2one", "steps": [step], "pair": results}


def round_ratios(results: dict[str, Any], one: str, two: str) -> list[float]:
    """CPU per delivery of ``two`` over ``one`` in each round (the machine's load drifts
    between rounds more than within one)."""
    def us(key: str) -> list[Optional[float]]:
        return [r["steps"][0].get("server_cpu_us_per_delivery") if r.get("steps") else None
                for r in results["runs"].get(key, [])]
    return [b / a for a, b in zip(us(one), us(two), strict=False) if a and b]


def held_ratios(results: dict[str, Any], phase: str, one: str, two: str) -> list[float]:
    """The rate that held by ``two`` over that of ``one`` in each round: the machine's
    speed drifts between rounds more than within one."""
    def held(key: str) -> list[Optional[float]]:
        return [compare.headline(phase, r) for r in results["runs"].get(key, [])]
    return [b / a for a, b in zip(held(one), held(two), strict=False) if a and b]


def print_fixed(results: dict[str, Any], counts: list[int], args: argparse.Namespace) -> None:
    print("| workers | msgs/s | server CPU us/delivery (median) | runs | p99 ms (median) |")
    print("|---|---|---|---|---|")
    cpu: dict[str, float] = {}
    rows = [("xmppd-w%d" % n, str(n), n) for n in counts]
    if args.control:
        rows.append((PAIR, "2 x 1 (independent)", 2))
    for key, label, n in rows:
        steps = [r["steps"][0] for r in results["runs"].get(key, []) if r.get("steps")]
        us = [s["server_cpu_us_per_delivery"] for s in steps if "server_cpu_us_per_delivery" in s]
        p99 = [s["p99_ms"] for s in steps]
        if us:
            cpu[key] = statistics.median(us)
        print("| %s | %d | %s | %s | %s |" % (
            label, args.per_worker_rate * n, compare.fmt(cpu.get(key)),
            ", ".join("%.1f" % u for u in us), compare.fmt(statistics.median(p99)) if p99 else "-"))
    one, two = ("xmppd-w%d" % n for n in (counts + [0, 0])[:2])
    if len(counts) == 2 and one in cpu and two in cpu:
        x = cpu[two] / cpu[one]
        print("\nCPU per delivery, %d workers / %d worker at the same load per worker: %.2fx"
              % (counts[1], counts[0], x))
        print("with a core each, %d workers would hold about %.2fx one worker's rate "
              "(if the CPU is the limit)" % (counts[1], counts[1] / counts[0] / x))
        per_round = round_ratios(results, one, two)
        if per_round:
            print("round by round (each round runs the setups one after the other): %s; "
                  "median %.2fx" % (", ".join("%.2f" % r for r in per_round),
                                    statistics.median(per_round)))
        if PAIR in cpu and counts == [1, 2]:
            c = cpu[two] / cpu[PAIR]
            print("2 workers / 2 independent servers (the cost of clustering alone): %.2fx; "
                  "the machine's own share: %.2fx" % (c, cpu[PAIR] / cpu[one]))
            print("with a core each and the load generator elsewhere, 2 workers would hold "
                  "about %.2fx one worker's rate" % (2 / c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--phase", default="one2one", choices=("one2one", "logins"),
                    help="logins: connect, SCRAM-SHA-1, bind, presence at 50 in flight")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--start-rate", type=float, default=1000)
    ap.add_argument("--step-seconds", type=float, default=10)
    ap.add_argument("--factor", type=float, default=1.5)
    ap.add_argument("--refine", type=int, default=2)
    ap.add_argument("--worker-cpu-affinity", choices=("auto", "true", "false"), default="auto",
                    help="the servers' worker_cpu_affinity (auto: pinned when each worker "
                         "can own a CPU)")
    ap.add_argument("--server-cpu", default=None)
    ap.add_argument("--loadgen-cpu", default=None)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--per-worker-rate", type=float, default=None,
                    help="one fixed step of N x this msgs/s for N workers: CPU per delivery")
    ap.add_argument("--control", action="store_true",
                    help="with --per-worker-rate and --workers 1,2: also two independent "
                         "one-worker servers side by side, to separate what the machine "
                         "costs from what clustering costs")
    ap.add_argument("--cpu-quota", type=float, default=None, metavar="Q",
                    help="run a server of N workers in a cgroup of N x Q CPUs (all its "
                         "processes): cores of Q CPUs, the rest for the load generator")
    ap.add_argument("--shared-quota", action="store_true",
                    help="with --cpu-quota: the workers share the N x Q CPUs as one pool "
                         "(by default each gets Q of its own)")
    ap.add_argument("--p99-bound-ms", type=float, default=None,
                    help="the latency bound of a step that holds (default: the load "
                         "generator's, 200 ms)")
    ap.add_argument("--by-process", action="store_true",
                    help="report the latency of messages that cross between workers apart "
                         "from the others")
    ap.add_argument("--phase-timeout", type=float, default=1800)
    ap.add_argument("--out", help="JSON file (default bench/results/workers-TIMESTAMP.json)")
    args = ap.parse_args()
    args.muc_archive = False
    args.one2one_users = args.users
    args.one2one_start = args.start_rate
    args.logins = args.users
    counts = [int(x) for x in args.workers.split(",")]

    base = Path(tempfile.mkdtemp(prefix="xmppd-workers-"))
    base.chmod(0o755)
    results: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                               "runs": {}}
    servers = [Workers(base, args, n) for n in counts]
    pair = ([Workers(base, args, 1, "%s-%s" % (PAIR, c)) for c in "ab"]
            if args.control and args.per_worker_rate else [])
    try:
        for srv in pair:
            srv.setup_accounts(args.users + 20)
        for srv in servers:
            srv.setup_accounts(args.users + 20)
        # one SCRAM cache for all: the accounts are the same on every server
        first = servers[0]
        first.start()
        try:
            compare.loadgen(first, args, "prime", ["--users", str(args.users + 20)], pinned=False)
        finally:
            first.stop()
        for srv in servers[1:] + pair:
            shutil.copy(base / ("scram-cache-%s.json" % first.name),
                        base / ("scram-cache-%s.json" % srv.name))
        for _ in range(args.runs):
            for srv in servers:
                results["runs"].setdefault(srv.name, []).append(run_one(srv, args))
            if pair:
                results["runs"].setdefault(PAIR, []).append(run_pair(pair, args))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for srv in servers + pair:
            if srv.quota is not None:
                srv.quota.remove()

    if args.per_worker_rate:
        print()
        print_fixed(results, counts, args)
        print("JSON: %s" % compare.write_results(results, args.out, "workers"))
        return

    print()
    if args.cpu_quota:
        print("each worker: a core of %.2f CPUs (a cgroup of N x %.2f CPUs for a server of "
              "N workers, Redis included)\n" % (args.cpu_quota, args.cpu_quota))
    unit = "msgs/s held" if args.phase == "one2one" else "logins/s"
    print("| workers | %s (median) | runs | server CPU us/delivery | p99 ms |" % unit)
    print("|---|---|---|---|---|")
    medians: dict[int, Optional[float]] = {}
    for n in counts:
        lst = results["runs"]["xmppd-w%d" % n]
        vals = [v for v in (compare.headline(args.phase, r) for r in lst) if v is not None]
        med = statistics.median(vals) if vals else None
        medians[n] = med
        cpus = [c for c in (cpu_per_delivery(r) for r in lst) if c is not None]
        p99 = [r.get("p99_ms") for r in lst if r.get("p99_ms") is not None]
        print("| %d | %s | %s | %s | %s |" % (
            n, compare.fmt(med), ", ".join(compare.fmt(v) for v in vals),
            compare.fmt(statistics.median(cpus)) if cpus else "-",
            compare.fmt(statistics.median(p99)) if p99 else "-"))
    if len(counts) == 2 and all(medians.values()):
        a, b = (medians[n] for n in counts)
        assert a and b
        print("\n%d workers / %d worker: %.2fx" % (counts[1], counts[0], b / a))
        per_round = held_ratios(results, args.phase, *("xmppd-w%d" % n for n in counts))
        if per_round:
            print("round by round (each round runs the setups one after the other): %s; "
                  "median %.2fx, %d of %d rounds at or above 1.8x"
                  % (", ".join("%.2f" % r for r in per_round), statistics.median(per_round),
                     sum(r >= 1.8 for r in per_round), len(per_round)))
    print("JSON: %s" % compare.write_results(results, args.out, "workers"))


if __name__ == "__main__":
    main()
