"""Several worker processes on one machine (``xmppd run --workers N``).

The master prepares what must happen once (data directory, certificates, schema),
starts a private Redis on a Unix socket when the configuration names none,
then runs N workers that share the listening ports (SO_REUSEPORT) and form a
cluster through Redis. It forwards SIGTERM and SIGINT, and restarts a worker
that dies.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .config import Config

log = logging.getLogger("xmppd.workers")


def affinity(setting: Any, workers: int) -> list[Optional[set[int]]]:
    """The CPUs each worker may run on (None: any). ``worker_cpu_affinity: auto`` pins
    worker i to the i-th CPU this process may use when there are as many workers as
    CPUs: each worker owns a core, and the scheduler does not move a busy worker onto
    the other's core (measured: lower latency at the same load; bench/RESULTS.md).
    ``true`` pins round-robin whatever the numbers, ``false`` never."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return [None] * workers
    if setting is False or (setting == "auto" and workers != len(cpus)) or len(cpus) < 2:
        return [None] * workers
    return [{cpus[i % len(cpus)]} for i in range(workers)]


def worker_count(value: Any) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    return int(value)


def _prepare(config: Config) -> None:
    from .modules import registry
    from .storage import database_from_config, migrate_sync
    from .tls import CertStore

    config.data_dir.mkdir(parents=True, exist_ok=True)
    CertStore(config.hosts, config.certfiles, config.data_dir, config.base_dir)
    registry()
    db = database_from_config(config)
    try:
        migrate_sync(db)
    finally:
        db.close()


def _start_redis(config: Config) -> tuple[Optional[subprocess.Popen[bytes]], Optional[str]]:
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    sock = config.data_dir / "redis.sock"
    if len(str(sock)) > 100:
        sock = Path(tempfile.gettempdir()) / f"xmppd-redis-{os.getpid()}.sock"
    if sock.exists():
        sock.unlink()
    proc = subprocess.Popen(
        [exe, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(config.data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            return None, None
        time.sleep(0.02)
    return proc, str(sock)


def run_workers(config: Config, workers: Any, config_path: Optional[str]) -> int:
    from .cli import run_server
    from .cluster import default_node_name

    n = worker_count(workers)
    if n <= 1:
        return run_server(config)
    _prepare(config)
    env = dict(os.environ)
    # one dialback secret for every worker of this start (s2s/manager.py)
    env.setdefault("XMPPD_DIALBACK_SECRET", secrets.token_hex(32))
    env["XMPPD_MASTER_PID"] = str(os.getpid())  # whom `xmppd ctl stop` signals (admin.py)
    redis_proc = None
    if config["sm_db_type"] != "redis":
        redis_proc, sock = _start_redis(config)
        if sock is None:
            print("xmppd: workers: more than one worker needs Redis: install redis-server "
                  "or set sm_db_type: redis with redis_server/redis_port", file=sys.stderr)
            return 2
        env["XMPPD_REDIS_SOCKET"] = sock
    base = config["node_name"] or default_node_name()
    path = str(config_path or config.source or "config/xmppd.yml")
    stopping = False
    pins = affinity(config["worker_cpu_affinity"], n)
    if pins[0] is not None:
        log.info("workers pinned to CPUs %s", ", ".join(str(min(c)) for c in pins if c))

    def spawn(i: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "xmppd", "run", "--config", path, "--workers", "1",
               "--node", f"{base}-w{i}", "--reuse-port"]
        if i:
            cmd.append("--no-ctl")
        # the worker's index: listeners that cannot share a port across workers (the
        # SOCKS5 proxy, mod_proxy65) take port + index
        proc = subprocess.Popen(cmd, env={**env, "XMPPD_WORKER": str(i)})
        cpus = pins[i]
        if cpus is not None:
            try:
                os.sched_setaffinity(proc.pid, cpus)
            except OSError as e:  # (the CPU went away, or a cpuset forbids it)
                log.warning("worker %d: cannot pin it to CPU %s: %s", i, min(cpus), e)
        return proc

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    procs = [spawn(i) for i in range(n)]
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info("started %d workers", n)
    try:
        while True:
            if stopping:
                break
            for i, p in enumerate(procs):
                rc = p.poll()
                if rc is not None and not stopping:
                    log.warning("worker %d exited with %s; restarting it", i, rc)
                    time.sleep(0.5)
                    procs[i] = spawn(i)
            time.sleep(0.2)
        deadline = time.monotonic() + config["shutdown_timeout"] + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            try:
                redis_proc.wait(5)
            except subprocess.TimeoutExpired:
                redis_proc.kill()
    return 0
