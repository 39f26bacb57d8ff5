"""TLS: certificates per host (configured or self-signed at first start),
SSL contexts with SNI, and channel-binding data.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

log = logging.getLogger(__name__)


def generate_self_signed(host: str, path: Path) -> Path:
    """Write a self-signed certificate and key for ``host`` (and ``*.host``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(host), x509.DNSName("*." + host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem += cert.public_bytes(serialization.Encoding.PEM)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    tmp.chmod(0o600)
    tmp.replace(path)
    log.info("generated a self-signed certificate for %s at %s", host, path)
    return path


def cert_names(pem_path: Path) -> list[str]:
    """DNS names (SAN, else CN) of the first certificate in a PEM file."""
    data = pem_path.read_bytes()
    cert = x509.load_pem_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        names = san.value.get_values_for_type(x509.DNSName)  # type: ignore[attr-defined]
        if names:
            return [n.lower() for n in names]
    except x509.ExtensionNotFound:
        pass
    return [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if isinstance(a.value, str)]


def _matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if pattern.startswith("*."):
        return host.count(".") >= 1 and host.split(".", 1)[1] == pattern[2:]
    return False


def end_point_hash(der: bytes) -> bytes:
    """tls-server-end-point (RFC 5929): hash of the certificate."""
    cert = x509.load_der_x509_certificate(der)
    algo = cert.signature_hash_algorithm
    name = algo.name if algo is not None else "sha256"
    if name in ("md5", "sha1"):
        name = "sha256"
    return hashlib.new(name, der).digest()


class CertStore:
    """Finds the certificate for each host; builds server SSL contexts."""

    def __init__(self, hosts: Iterable[str], certfiles: Iterable[str], data_dir: Path,
                 base_dir: Path) -> None:
        self.files: dict[str, Path] = {}
        self.warnings: list[str] = []
        found: list[tuple[Path, list[str]]] = []
        for i, f in enumerate(certfiles):
            p = Path(f)
            if not p.is_absolute():
                p = base_dir / p
            try:
                found.append((p, cert_names(p)))
            except (OSError, ValueError) as e:
                self.warnings.append(f"certfiles[{i}]: cannot use {p}: {e}")
        for host in hosts:
            for p, names in found:
                if any(_matches(n, host) for n in names):
                    self.files[host] = p
                    break
            else:
                auto = data_dir / "certs" / f"{host}.pem"
                if not auto.exists():
                    generate_self_signed(host, auto)
                self.files[host] = auto
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._endpoint: dict[str, bytes] = {}

    def context(self, host: str, alpn: Optional[list[str]] = None) -> ssl.SSLContext:
        key = host + "|" + ",".join(alpn or ())
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.files[host])
            if alpn:
                ctx.set_alpn_protocols(alpn)
            self._contexts[key] = ctx
        return ctx

    def sni_context(self, default_host: str, alpn: Optional[list[str]] = None) -> ssl.SSLContext:
        """A context that switches certificate by SNI (Direct TLS, HTTPS)."""
        base = self.context(default_host, alpn)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.files[default_host])
        if alpn:
            ctx.set_alpn_protocols(alpn)

        def pick(sslobj: ssl.SSLObject, name: Optional[str], _ctx: ssl.SSLContext) -> None:
            if name:
                host = name.lower()
                for h in self.files:
                    if host == h or host.endswith("." + h):
                        sslobj.context = self.context(h, alpn)
                        return
            sslobj.context = base
        ctx.sni_callback = pick  # type: ignore[assignment]
        return ctx

    def server_end_point(self, host: str) -> bytes:
        ep = self._endpoint.get(host)
        if ep is None:
            data = self.files[host].read_bytes()
            cert = x509.load_pem_x509_certificate(data)
            ep = self._endpoint[host] = end_point_hash(cert.public_bytes(serialization.Encoding.DER))
        return ep


def channel_binding(certs: Optional[CertStore], host: str, transport: Any,
                    cb_type: str) -> Optional[bytes]:
    """The channel-binding data of a TLS connection (its ``transport``) for SCRAM-PLUS:
    ``tls-server-end-point`` (RFC 5929) from ``host``'s certificate, ``tls-unique`` from
    the TLS 1.2 handshake (RFC 9266 leaves it undefined for TLS 1.3); None if unknown."""
    if cb_type == "tls-server-end-point":
        return certs.server_end_point(host) if certs else None
    if cb_type == "tls-unique" and transport is not None:
        sslobj: Any = transport.get_extra_info("ssl_object")
        if sslobj is None or sslobj.version() != "TLSv1.2":
            return None
        data = sslobj.get_channel_binding("tls-unique")
        return data if isinstance(data, bytes) else None
    return None
