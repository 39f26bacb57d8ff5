"""Side-by-side benchmark: xmppd against Prosody and ejabberd on this machine.

    sudo .venv/bin/python bench/compare.py            # everything, once (about 15 minutes)
    sudo .venv/bin/python bench/compare.py --runs 3   # medians of three (about 45 minutes)
    .venv/bin/python bench/compare.py --quick          # smaller, shorter steps
    .venv/bin/python bench/compare.py --servers xmppd --phases one2one

Installs Prosody and ejabberd from Debian packages when missing (as root,
without letting the packages start their system services), writes each
server's configuration into a temporary directory (plain TCP on loopback, no
shapers or rate limits, listen backlog 4096, SCRAM-SHA-1 with 4096
iterations), creates the accounts in bulk, then for each server and each
phase starts a fresh server process pinned to CPU 0 (``taskset``), runs
``bench/loadgen.py`` pinned to CPU 1 and stops the server by its process id.
Prints one table with the three servers side by side and writes JSON to
``bench/results/``.

Accounts: xmppd with ``xmppd ctl register_bulk``; Prosody by writing its
account store (internal_hashed: salt, iteration count, StoredKey, ServerKey
per user, which is what ``prosodyctl adduser`` writes, without a process per
user); ejabberd with ``ejabberdctl import_prosody`` from that store.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import ScramCache  # noqa: E402

LOADGEN = ROOT / "bench" / "loadgen.py"
HOST = "localhost"
PASSWORD = "benchpass"
ITERATIONS = 4096
PROSODY_SALT = "bench-salt-4f9c2a"
SERVERS = ("xmppd", "prosody", "ejabberd")
PHASES = ("memory", "logins", "one2one", "fanout")


def log(msg: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: Optional[subprocess.Popen[Any]] = None,
              logfile: Optional[Path] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = logfile.read_text(errors="replace")[-3000:] if logfile and logfile.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open in {timeout} s")


def listener_pid(port: int) -> int:
    """The process that owns the listening TCP socket on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add("socket:[%s]" % parts[9])
        except FileNotFoundError:
            pass
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return int(pid)
                except OSError:
                    continue
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def stop_pid(pid: int, timeout: float = 20) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for dirpath, _dirs, filenames in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for n in filenames:
            os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)


def as_user(user: str) -> list[str]:
    """Run as a system user without PAM (runuser/su would reset the open-files limit)."""
    if os.geteuid() != 0:
        return []
    pw = pwd.getpwnam(user)
    return ["setpriv", "--reuid", user, "--regid", str(pw.pw_gid), "--init-groups",
            "env", "HOME=" + pw.pw_dir, "USER=" + user, "LOGNAME=" + user]


def taskset(cpu: Optional[str]) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None and shutil.which("taskset") else []


# -- installation ----------------------------------------------------------------

def ensure_installed(servers: list[str]) -> None:
    need = []
    if "prosody" in servers and not shutil.which("prosody"):
        need.append("prosody")
    if "ejabberd" in servers and not shutil.which("ejabberdctl"):
        need.append("ejabberd")
    if "ejabberd" in servers and not list(Path("/usr/lib/erlang/lib").glob("luerl-*")):
        need.append("erlang-luerl")  # for ejabberdctl import_prosody (the bulk account import)
    if not need:
        return
    if os.geteuid() != 0:
        raise SystemExit("compare: %s missing; run as root to install them from Debian packages"
                         % " and ".join(need))
    log("installing %s from Debian packages" % " ".join(need))
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        # keep the packages from starting their system services (and taking ports)
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        made_policy = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", *need], check=True, env=env)
    finally:
        if made_policy:
            policy.unlink()
    if shutil.which("systemctl"):
        for unit in ("prosody", "ejabberd"):
            subprocess.run(["systemctl", "disable", "--now", unit], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- servers ---------------------------------------------------------------------

class Server:
    name = ""
    user: Optional[str] = None  # system user the server runs as

    def __init__(self, base: Path, args: argparse.Namespace) -> None:
        self.base = base / self.name
        self.base.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.port = 0
        self.pid = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.logfile = self.base / "server.log"

    def version(self) -> str:
        return ""

    def known_salts(self) -> list[bytes]:
        """Salts of the accounts when the set-up chose them (saves the priming logins)."""
        return []

    def setup_accounts(self, n: int) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.port = free_port()
        self.write_config()
        if self.user and os.geteuid() == 0:
            chown_tree(self.base, self.user)
        out = open(self.logfile, "ab")
        self.proc = subprocess.Popen(taskset(self.args.server_cpu) + self.command(),
                                     stdout=out, stderr=subprocess.STDOUT, cwd=str(self.base),
                                     start_new_session=True)
        out.close()
        wait_port(self.port, 120, self.proc, self.logfile)
        self.pid = listener_pid(self.port)
        time.sleep(1.0)

    def stop(self) -> None:
        if self.pid:
            stop_pid(self.pid)
        if self.proc is not None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.pid = 0
        self.proc = None


class Xmppd(Server):
    name = "xmppd"

    def version(self) -> str:
        out = subprocess.run([sys.executable, "-c", "import xmppd; print(xmppd.__version__)"],
                             capture_output=True, text=True, cwd=str(ROOT))
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=str(ROOT)).stdout.strip()
        return "%s (%s)" % (out.stdout.strip(), rev)

    def write_config(self) -> None:
        import yaml
        cfg = {
            "hosts": [HOST],
            "loglevel": "warning",
            "data_dir": str(self.base / "data"),
            "scram_iterations": ITERATIONS,
            "listen": [{"port": self.port, "ip": "127.0.0.1", "module": "ejabberd_c2s",
                        "starttls": False, "starttls_required": False,
                        "max_stanza_size": 65536, "backlog": 4096}],
            "shaper_rules": {"max_user_sessions": 10},
            "shutdown_timeout": 1,
            # what the other two load too (a module this xmppd lacks is only a warning)
            "modules": {"mod_disco": {}, "mod_ping": {}, "mod_roster": {},
                        # no room archive by default: Prosody and ejabberd run without
                        # MAM here (--muc-archive turns xmppd's on)
                        "mod_muc": {"host": "conference.@HOST@", "access_create": "all",
                                    "max_users": 1000,
                                    "default_room_options": {"mam": self.args.muc_archive}}},
        }
        (self.base / "xmppd.yml").write_text(yaml.safe_dump(cfg))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "xmppd", "run", "--config", str(self.base / "xmppd.yml")]

    def setup_accounts(self, n: int) -> None:
        self.port = free_port()
        self.write_config()
        users = self.base / "users.txt"
        users.write_text("".join("u%d %s\n" % (i, PASSWORD) for i in range(n)))
        t = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "xmppd", "ctl", "--config",
                              str(self.base / "xmppd.yml"), "register_bulk", str(users), HOST],
                             capture_output=True, text=True, cwd=str(ROOT))
        if res.returncode != 0:
            raise RuntimeError("register_bulk failed: " + res.stderr)
        log("xmppd: %s in %.1f s" % (res.stdout.strip(), time.monotonic() - t))


def prosody_store_entry(salt: str) -> str:
    salted = hashlib.pbkdf2_hmac("sha1", PASSWORD.encode(), salt.encode(), ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha1")
    stored = hashlib.sha1(client_key).hexdigest()
    server = hmac.digest(salted, b"Server Key", "sha1").hex()
    return ('return {\n\t["iteration_count"] = %d;\n\t["salt"] = "%s";\n'
            '\t["server_key"] = "%s";\n\t["stored_key"] = "%s";\n};\n'
            % (ITERATIONS, salt, server, stored))


def write_prosody_accounts(data: Path, n: int) -> None:
    """Prosody's internal_hashed store: one Lua file per account."""
    acc = data / HOST.replace(".", "%2e").replace("-", "%2d") / "accounts"
    acc.mkdir(parents=True, exist_ok=True)
    # one salt for every account: the stored keys are computed once (PBKDF2 is
    # slow); the server does the same work per login whatever the salt
    entry = prosody_store_entry(PROSODY_SALT)
    for i in range(n):
        (acc / ("u%d.dat" % i)).write_text(entry)


class Prosody(Server):
    name = "prosody"
    user = "prosody"

    def version(self) -> str:
        return _deb_version("prosody")

    def known_salts(self) -> list[bytes]:
        return [PROSODY_SALT.encode()]

    def write_config(self) -> None:
        cfg = f"""-- generated by bench/compare.py
pidfile = "{self.base}/prosody.pid"
data_path = "{self.base}/data"
log = {{ warn = "{self.base}/prosody.log" }}
network_backend = "epoll"
network_settings = {{ tcp_backlog = 4096 }}
c2s_ports = {{ {self.port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
legacy_ssl_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false
s2s_require_encryption = false
allow_registration = false
authentication = "internal_hashed"
default_iteration_count = {ITERATIONS}
storage = "internal"
modules_enabled = {{ "roster", "saslauth", "disco", "ping" }}
modules_disabled = {{ "s2s" }}
VirtualHost "{HOST}"
Component "conference.{HOST}" "muc"
    restrict_room_creation = false
"""
        (self.base / "prosody.cfg.lua").write_text(cfg)

    def command(self) -> list[str]:
        return as_user("prosody") + ["prosody", "--config", str(self.base / "prosody.cfg.lua"), "-F"]

    def setup_accounts(self, n: int) -> None:
        t = time.monotonic()
        data = self.base / "data"
        shutil.rmtree(data, ignore_errors=True)
        write_prosody_accounts(data, n)
        log("prosody: %d accounts written in %.1f s" % (n, time.monotonic() - t))


class Ejabberd(Server):
    name = "ejabberd"
    user = "ejabberd"

    def version(self) -> str:
        return _deb_version("ejabberd")

    def known_salts(self) -> list[bytes]:
        return [PROSODY_SALT.encode()]  # imported from a Prosody store

    def write_config(self) -> None:
        node = "xmppdbench@localhost"  # mnesia's spool belongs to one node name
        (self.base / "spool").mkdir(exist_ok=True)
        (self.base / "logs").mkdir(exist_ok=True)
        if Path("/etc/ejabberd/inetrc").exists():
            shutil.copy("/etc/ejabberd/inetrc", self.base / "inetrc")
        (self.base / "ejabberdctl.cfg").write_text(
            f'ERLANG_NODE={node}\nPOLL=true\nERL_MAX_PORTS=32000\nERL_PROCESSES=250000\n'
            f'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 +S 1:1 +SDcpu 1:1"\n'
            f'EJABBERD_PID_PATH={self.base}/ejabberd.pid\n'
            f'EJABBERD_CONFIG_PATH={self.base}/ejabberd.yml\n')
        (self.base / "ejabberd.yml").write_text(f"""# generated by bench/compare.py
hosts:
  - {HOST}
loglevel: warning
log_rotate_count: 0
listen:
  -
    port: {self.port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 65536
    starttls_required: false
    backlog: 4096
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
default_db: mnesia
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  muc_create:
    allow: all
shaper_rules:
  max_user_sessions: 10
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_muc:
    host: "conference.@HOST@"
    access_create: muc_create
    max_users: 1000
    default_room_options:
      max_users: 1000
""")

    def ctl(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.ctl_command() + list(args), capture_output=True, text=True,
                              timeout=timeout, cwd=str(self.base))

    def ctl_command(self) -> list[str]:
        return as_user("ejabberd") + [
            "ejabberdctl", "--ctl-config", str(self.base / "ejabberdctl.cfg"),
            "--config-dir", str(self.base), "--spool", str(self.base / "spool"),
            "--logs", str(self.base / "logs")]

    def command(self) -> list[str]:
        return self.ctl_command() + ["foreground"]

    def setup_accounts(self, n: int) -> None:
        t = time.monotonic()
        src = self.base / "prosody-import"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(self.base / "spool", ignore_errors=True)
        write_prosody_accounts(src, n)
        self.start()
        try:
            res = self.ctl("import_prosody", str(src))
            if res.returncode != 0:
                raise RuntimeError("import_prosody failed: %s %s" % (res.stdout, res.stderr))
        finally:
            self.stop()
        log("ejabberd: %d accounts imported in %.1f s" % (n, time.monotonic() - t))


def _deb_version(pkg: str) -> str:
    res = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                         text=True)
    return res.stdout.strip()


# -- running -----------------------------------------------------------------------

def write_results(results: Any, out: Optional[str], kind: str) -> Path:
    """Write ``results`` as JSON to ``out``, or to bench/results/KIND-TIMESTAMP.json."""
    path = Path(out) if out else ROOT / "bench" / "results" / (
        "%s-%s.json" % (kind, time.strftime("%Y%m%d-%H%M%S")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    return path


def loadgen(server: Server, args: argparse.Namespace, phase: str, extra: list[str],
            pinned: bool = True) -> dict[str, Any]:
    cache = server.base.parent / ("scram-cache-%s.json" % server.name)
    cmd = taskset(args.loadgen_cpu if pinned else None) + [
        sys.executable, str(LOADGEN), "--port", str(server.port), "--host", HOST,
        "--password", PASSWORD, "--scram-cache", str(cache), "--concurrency",
        str(args.concurrency), "--source-ips", "4"]
    if not pinned:
        cmd += ["--pbkdf2-threads", "2"]
    if phase != "prime":
        cmd += ["--server-pid", str(server.pid)]
    cmd += [phase] + extra
    t = time.monotonic()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True,
                         timeout=args.phase_timeout)
    if res.returncode != 0:
        raise RuntimeError("loadgen %s exited with %d" % (phase, res.returncode))
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = round(time.monotonic() - t, 1)
    return out


def p99_bound(args: argparse.Namespace) -> list[str]:
    """The load generator's option for the latency bound of a step that holds, if set."""
    return ["--p99-bound-ms", str(args.p99_bound_ms)] if args.p99_bound_ms else []


def by_process(args: argparse.Namespace) -> list[str]:
    """The one-to-one phase's option to report crossing messages apart, if set."""
    return ["--by-process"] if args.by_process else []


def phase_args(args: argparse.Namespace, phase: str) -> list[str]:
    step = ["--step-seconds", str(args.step_seconds), "--factor", str(args.factor),
            "--refine", str(args.refine)]
    step += p99_bound(args)
    if phase == "memory":
        return ["--checkpoints", args.memory_checkpoints, "--settle", str(args.settle)]
    if phase == "logins":
        return ["--users", str(args.logins)]
    if phase == "one2one":
        return (["--users", str(args.one2one_users), "--start-rate", str(args.one2one_start)]
                + step + by_process(args))
    if phase == "fanout":
        return ["--users", str(args.fanout_users), "--start-rate", str(args.fanout_start)] + step
    raise ValueError(phase)


def run_phase(server: Server, args: argparse.Namespace, phase: str) -> dict[str, Any]:
    log("%s: %s: starting a fresh server" % (server.name, phase))
    server.start()
    try:
        res = loadgen(server, args, phase, phase_args(args, phase))
    except Exception as e:  # keep going: one failing phase must not hide the others
        log("%s: %s failed: %s" % (server.name, phase, e))
        res = {"phase": phase, "error": str(e)}
    finally:
        server.stop()
    return res


def headline(phase: str, res: dict[str, Any]) -> Optional[float]:
    if "error" in res:
        return None
    if phase == "memory":
        return float(res["kib_per_connection"])
    if phase == "logins":
        return float(res["logins_per_s"])
    if phase == "one2one":
        return float(res["messages_per_s"])
    if phase == "fanout":
        return float(res["deliveries_per_s"])
    raise ValueError(phase)


LABELS = {
    "one2one": ("1:1 messages/s (p99 <= 200 ms, no loss)", "higher"),
    "memory": ("memory per idle connection, KiB", "lower"),
    "logins": ("logins/s (SCRAM-SHA-1, bind, presence)", "higher"),
    "fanout": ("room fan-out deliveries/s", "higher"),
}
# issue 9 targets: (phase, server compared with, ratio)
TARGETS = {"one2one": ("ejabberd", 1.5), "memory": ("prosody", 2 / 3),
           "logins": ("ejabberd", 1.2), "fanout": ("ejabberd", 1.5)}


def fmt(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return "%.1f" % v if v < 100 else "%.0f" % v


def table(summary: dict[str, dict[str, Any]], servers: list[str], phases: list[str]) -> str:
    lines = []
    head = "| metric | " + " | ".join(servers) + " |"
    if "xmppd" in servers:
        others = [s for s in servers if s != "xmppd"]
        head += "".join(" xmppd/%s |" % o for o in others) + " target |"
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    for phase in phases:
        label, _ = LABELS[phase]
        vals = {s: summary.get(s, {}).get(phase, {}).get("value") for s in servers}
        row = "| %s | " % label + " | ".join(fmt(vals[s]) for s in servers) + " |"
        if "xmppd" in servers:
            x = vals["xmppd"]
            for o in others:
                v = vals[o]
                row += " %s |" % ("%.2fx" % (x / v) if x is not None and v else "-")
            ref, ratio = TARGETS[phase]
            v = vals.get(ref)
            if x is not None and v:
                ok = x / v <= ratio if LABELS[phase][1] == "lower" else x / v >= ratio
                row += " %s %.2fx %s: %s |" % ("<=" if LABELS[phase][1] == "lower" else ">=",
                                                ratio, ref, "met" if ok else "NOT met")
            else:
                row += " %s %.2fx %s |" % ("<=" if LABELS[phase][1] == "lower" else ">=", ratio, ref)
        lines.append(row)
    return "\n".join(lines)


def details(summary: dict[str, dict[str, Any]], servers: list[str], phases: list[str]) -> str:
    lines = []
    for s in servers:
        for phase in phases:
            d = summary.get(s, {}).get(phase)
            if not d:
                continue
            runs = ", ".join(fmt(v) for v in d["runs"])
            extra = ""
            if d.get("p99_ms") is not None:
                extra = " (p50 %s ms, p99 %s ms)" % (d.get("p50_ms"), d.get("p99_ms"))
            if d.get("errors"):
                extra += " errors: %s" % "; ".join(e[:160] for e in d["errors"])
            lines.append("%-8s %-8s runs: %s%s" % (s, phase, runs, extra))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--muc-archive", action="store_true",
                    help="keep xmppd's room archive on (its default) in the fan-out phase")
    ap.add_argument("--runs", type=int, default=1, help="runs of each phase (medians are reported)")
    ap.add_argument("--quick", action="store_true",
                    help="2,000 accounts, 5 s steps: a smoke run in a few minutes")
    ap.add_argument("--accounts", type=int, default=10000)
    ap.add_argument("--memory-checkpoints", default="5000,10000")
    ap.add_argument("--settle", type=float, default=12,
                    help="memory: seconds idle before reading RSS (all servers alike)")
    ap.add_argument("--logins", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--one2one-users", type=int, default=1000)
    ap.add_argument("--one2one-start", type=float, default=250)
    ap.add_argument("--fanout-users", type=int, default=200)
    ap.add_argument("--fanout-start", type=float, default=5)
    ap.add_argument("--step-seconds", type=float, default=10)
    ap.add_argument("--factor", type=float, default=1.5)
    ap.add_argument("--refine", type=int, default=2)
    ap.add_argument("--p99-bound-ms", type=float, default=None,
                    help="the latency bound of a step that holds (default: the load "
                         "generator's, 200 ms)")
    ap.add_argument("--by-process", action="store_true",
                    help="one2one: the latency of messages between two server processes apart")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--loadgen-cpu", default="1")
    ap.add_argument("--phase-timeout", type=float, default=1800)
    ap.add_argument("--workdir", help="keep configs and data here (default: a temp dir, removed)")
    ap.add_argument("--out", help="JSON file (default bench/results/compare-TIMESTAMP.json)")
    args = ap.parse_args()
    if args.quick:
        args.accounts = min(args.accounts, 2000)
        args.memory_checkpoints = "1000,2000"
        args.logins = min(args.logins, 1000)
        args.step_seconds = min(args.step_seconds, 5)
    servers = [s for s in args.servers.split(",") if s]
    phases = [p for p in args.phases.split(",") if p]
    need = max([int(x) for x in args.memory_checkpoints.split(",")] + [
        args.logins, args.one2one_users, args.fanout_users]) + 20
    args.accounts = max(args.accounts, need)

    ensure_installed(servers)
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="xmppd-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    classes = {"xmppd": Xmppd, "prosody": Prosody, "ejabberd": Ejabberd}
    results: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items()},
        "versions": {}, "runs": {},
    }
    epmd_before = _pids_named("epmd")
    prepared: list[Server] = []
    try:
        for name in servers:
            srv = classes[name](base, args)
            results["versions"][name] = srv.version()
            log("%s %s: creating %d accounts" % (name, results["versions"][name], args.accounts))
            srv.setup_accounts(args.accounts)
            # salted passwords for the load generator, off the measured clock
            cache = base / ("scram-cache-%s.json" % name)
            known = srv.known_salts()
            if known:
                sc = ScramCache(str(cache))
                for salt in known:
                    sc.put(PASSWORD, salt, ITERATIONS, hashlib.pbkdf2_hmac(
                        "sha1", PASSWORD.encode(), salt, ITERATIONS))
                sc.save()
            srv.start()
            try:
                n = min(args.accounts, 50) if known else args.accounts
                prime = loadgen(srv, args, "prime", ["--users", str(n)], pinned=False)
                if prime["cached"] > len(known or ()):  # the server changed the salts
                    prime = loadgen(srv, args, "prime", ["--users", str(args.accounts)],
                                    pinned=False)
                log("%s: primed %d users in %.1f s" % (name, args.accounts, prime["seconds"]))
            finally:
                srv.stop()
            prepared.append(srv)
        # interleaved (run, phase, server): load from elsewhere on the machine hits all alike
        for _ in range(args.runs):
            for phase in phases:
                for srv in prepared:
                    results["runs"].setdefault(srv.name, {}).setdefault(phase, []).append(
                        run_phase(srv, args, phase))
    finally:
        for pid in _pids_named("epmd") - epmd_before:
            stop_pid(pid)  # started by ejabberd's Erlang VM in this run
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)

    summary: dict[str, dict[str, Any]] = {}
    for name, runs in results["runs"].items():
        for phase, lst in runs.items():
            vals = [headline(phase, r) for r in lst]
            ok = [v for v in vals if v is not None]
            entry: dict[str, Any] = {"runs": vals, "value": statistics.median(ok) if ok else None,
                                     "errors": [r["error"] for r in lst if "error" in r]}
            good = [r for r in lst if "error" not in r]
            if good and phase != "memory":
                mid = sorted(good, key=lambda r: headline(phase, r) or 0)[len(good) // 2]
                entry["p50_ms"], entry["p99_ms"] = mid.get("p50_ms"), mid.get("p99_ms")
            summary.setdefault(name, {})[phase] = entry
    results["summary"] = summary
    results["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    out = write_results(results, args.out, "compare")
    print()
    print("versions: " + ", ".join("%s %s" % kv for kv in results["versions"].items()))
    print("runs per phase: %d (median shown); server on CPU %s, load generator on CPU %s"
          % (args.runs, args.server_cpu, args.loadgen_cpu))
    print(table(summary, servers, phases))
    print()
    print(details(summary, servers, phases))
    print("\nJSON: %s" % out)


def _pids_named(comm: str) -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                    out.add(int(pid))
            except OSError:
                pass
    return out


if __name__ == "__main__":
    main()
