"""Real processes for tests: xmppd itself and PostgreSQL, on loopback only.

Every process is stopped by its process id.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]


_given: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one handed out before in this test run: servers are
    configured before they start, and the kernel may offer a port twice meanwhile."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port


def wait_port(port: int, timeout: float = 20.0, proc: Optional[subprocess.Popen[Any]] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


class PostgresServer:
    """A throw-away PostgreSQL cluster (initdb, pg_ctl) owned by this test run."""

    def __init__(self, base: Optional[Path] = None) -> None:
        # its own directory: pytest's temporary tree is private to root
        self.base = base or Path(tempfile.mkdtemp(prefix="xmppd-pg-"))
        self.port = free_port()
        self.datadir = self.base / "pgdata"
        self.sockdir = self.base / "pgsock"
        self.bindir = self._bindir()
        self.pid: Optional[int] = None
        self._n = 0

    @staticmethod
    def _bindir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if found:
            return found[-1].parent
        pg_ctl = shutil.which("pg_ctl")
        if pg_ctl:
            return Path(pg_ctl).resolve().parent
        raise RuntimeError("PostgreSQL is not installed (make services installs it)")

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + cmd
        return cmd

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockdir, "postgres")
        subprocess.run(self._as_owner([str(self.bindir / "initdb"), "-D", str(self.datadir),
                                       "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(self._as_owner([
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.base / "pg.log"),
            "-w", "-o", f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                        f"-c fsync=off -c max_connections=200", "start"]),
            check=True, stdout=subprocess.DEVNULL)
        self.pid = int((self.datadir / "postmaster.pid").read_text().split()[0])

    def create_database(self) -> str:
        self._n += 1
        name = f"xmppd_test_{os.getpid()}_{self._n}"
        subprocess.run([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "-q", "-c", f"CREATE DATABASE {name}"],
                       check=True, stdout=subprocess.DEVNULL)
        return name

    def stop(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGINT)  # fast shutdown
        except ProcessLookupError:
            self.pid = None
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    """A private redis-server on a loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make services installs it)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class XmppdServer:
    """xmppd in its own process with a generated configuration."""

    def __init__(self, base: Path, *, hosts: tuple[str, ...] = ("localhost",),
                 db: str = "sqlite", pg: Optional[PostgresServer] = None,
                 config: Optional[dict[str, Any]] = None,
                 modules: Optional[dict[str, Any]] = None,
                 listen_extra: Optional[dict[str, Any]] = None) -> None:
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.hosts = hosts
        self.c2s = free_port()
        self.c2s_tls = free_port()
        self.s2s = free_port()
        self.http = free_port()
        self.config_path = base / "xmppd.yml"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path = base / "xmppd.log"
        # accounts registered while the server is down, created by one register_bulk
        # (one process instead of one per account) before the next start or ctl command
        self._pending: dict[str, list[tuple[str, str]]] = {}
        cfg: dict[str, Any] = {
            "hosts": list(hosts),
            "loglevel": "info",
            "data_dir": str(base / "data"),
            "listen": [
                {"port": self.c2s, "ip": "127.0.0.1", "module": "ejabberd_c2s",
                 "starttls_required": True, "max_stanza_size": 65536, **(listen_extra or {})},
                {"port": self.c2s_tls, "ip": "127.0.0.1", "module": "ejabberd_c2s", "tls": True,
                 "max_stanza_size": 65536, **(listen_extra or {})},
                {"port": self.s2s, "ip": "127.0.0.1", "module": "ejabberd_s2s_in"},
                {"port": self.http, "ip": "127.0.0.1", "module": "ejabberd_http"},
            ],
            "shutdown_timeout": 2,
            "modules": modules if modules is not None else {
                "mod_disco": {"server_info": [{"name": "abuse-addresses",
                                               "urls": ["mailto:abuse@localhost"]}]},
                "mod_ping": {}, "mod_version": {}, "mod_time": {},
            },
        }
        if db == "pgsql":
            assert pg is not None
            cfg.update({"sql_type": "pgsql", "sql_server": "127.0.0.1", "sql_port": pg.port,
                        "sql_database": pg.create_database(), "sql_username": "postgres",
                        "sql_password": "", "sql_pool_size": 4})
        if config:
            cfg.update(config)
        self.config = cfg
        self.write_config()

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "xmppd", *args]

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.flush_registrations()
        return self._ctl(*args, check=check)

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(self.cmd("ctl", "--config", str(self.config_path), *args),
                             capture_output=True, text=True, timeout=300)
        if check and res.returncode != 0:
            raise RuntimeError(f"ctl {args} failed ({res.returncode}): {res.stderr}")
        return res

    def register(self, user: str, password: str, host: str = "localhost") -> None:
        if self.proc is None:
            self._pending.setdefault(host, []).append((user, password))
        else:
            self.ctl("register", user, host, password)

    def flush_registrations(self) -> None:
        """Create the accounts registered while the server was down (``register_bulk``)."""
        pending, self._pending = self._pending, {}
        for host, pairs in pending.items():
            path = self.base / f"accounts-{host}.txt"
            path.write_text("".join(f"{u} {pw}\n" for u, pw in pairs), encoding="utf-8")
            out = self._ctl("register_bulk", str(path), host).stdout
            if f"{len(pairs)} accounts registered" not in out:
                raise RuntimeError(f"register_bulk on {host}: {out.strip()}")

    def start(self) -> "XmppdServer":
        self.flush_registrations()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd("run", "--config", str(self.config_path)),
                                     stdout=log, stderr=subprocess.STDOUT, cwd=str(self.base))
        log.close()
        wait_port(self.c2s, proc=self.proc)
        wait_port(self.c2s_tls, proc=self.proc)
        deadline = time.monotonic() + 10
        while not (Path(self.config["data_dir"]) / "xmppd.ctl").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("admin channel did not open")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
