"""A real Prosody (Debian package) on loopback, for federation tests.

It runs as the prosody user from a generated configuration in its own
temporary directory, finds other servers through the test's DNS server
(``helpers.dns``) and is stopped by its process id.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .procs import free_port, wait_port

CONFIG = """
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{dir}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ {s2s_tls} }}
s2s_direct_tls_ssl = {{ certificate = "{dir}/{domain}.crt"; key = "{dir}/{domain}.key" }}
http_ports = {{ }}
https_ports = {{ }}
admin_socket = "{dir}/admin.sock"
use_ipv6 = false
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "posix" }}
modules_disabled = {{ "s2s_bidi" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
unbound = {{ resolvconf = false; hoststxt = false; forward = "127.0.0.1@{dns_port}";
            options = {{ ["do-not-query-localhost:"] = "no"; ["local-zone:"] = "test. transparent" }} }}
VirtualHost "{domain}"
    ssl = {{ certificate = "{dir}/{domain}.crt"; key = "{dir}/{domain}.key" }}
"""


def _self_signed(domain: str, crt: Path, key_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256()))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


class ProsodyServer:
    def __init__(self, domain: str, dns_port: int, direct_tls: bool = False) -> None:
        if shutil.which("prosody") is None:
            raise RuntimeError("prosody is not installed (make services installs it)")
        self.domain = domain
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-prosody-"))
        self.c2s = free_port()
        self.s2s = free_port()
        self.s2s_tls = free_port() if direct_tls else None   # XEP-0368 Direct TLS
        self.config = self.dir / "prosody.cfg.lua"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        (self.dir / "data").mkdir()
        _self_signed(domain, self.dir / f"{domain}.crt", self.dir / f"{domain}.key")
        self.config.write_text(CONFIG.format(dir=self.dir, c2s=self.c2s, s2s=self.s2s,
                                             s2s_tls=self.s2s_tls or "",
                                             dns_port=dns_port, domain=domain))
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("prosody")
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            for p in [self.dir, *self.dir.rglob("*")]:
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["prosodyctl", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=60, check=True,
                              **self._user)

    def register(self, user: str, password: str) -> None:
        self._run("register", user, self.domain, password)

    def start(self) -> ProsodyServer:
        self.proc = subprocess.Popen(["prosody", "--config", str(self.config), "-F"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     cwd=str(self.dir), **self._user)
        wait_port(self.c2s, proc=self.proc)
        wait_port(self.s2s, proc=self.proc)
        return self

    @property
    def log(self) -> str:
        try:
            return (self.dir / "prosody.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        time.sleep(0)
        shutil.rmtree(self.dir, ignore_errors=True)
