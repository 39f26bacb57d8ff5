"""TLS contexts for s2s and certificate identities (RFC 6120 13.7, XEP-0178).

Open federation (the default): xmppd presents its certificate in both
directions but does not check the peer's; dialback proves who the peer is.

With ``s2s_cafile``: certificates are requested from connecting servers and
checked against those CAs by the TLS layer in both directions, and an
incoming stream whose certificate names the sending domain may authenticate
with SASL EXTERNAL. Python's ``ssl`` cannot accept a certificate and inspect
it later, so a peer presenting a certificate that does not chain to these CAs
fails the TLS handshake: this mode is for federations under one CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

if TYPE_CHECKING:
    from ..server import Server

XMPP_ADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")


def cert_identities(der: bytes) -> list[str]:
    """DNS names and xmppAddr identities of a certificate (CN only without SAN)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                if isinstance(a.value, str)]
    names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == XMPP_ADDR:
            value = _utf8_string(other.value)
            if value:
                names.append(value.lower())
    return names


def _utf8_string(der: bytes) -> Optional[str]:
    # an xmppAddr is a DER UTF8String: tag 0x0c, a length, the bytes
    if len(der) < 2 or der[0] != 0x0C:
        return None
    n = der[1]
    start = 2
    if n & 0x80:
        width = n & 0x7F
        n = int.from_bytes(der[2:2 + width], "big")
        start = 2 + width
    try:
        return der[start:start + n].decode("utf-8")
    except UnicodeDecodeError:
        return None


def names_domain(identities: list[str], domain: str) -> bool:
    """RFC 6125: an exact name or a wildcard for exactly one left-most label."""
    domain = domain.lower()
    for name in identities:
        if name == domain:
            return True
        if name.startswith("*.") and "." in domain and domain.split(".", 1)[1] == name[2:]:
            return True
    return False


class S2STLS:
    """Builds and caches the SSL contexts of s2s streams."""

    def __init__(self, server: Server) -> None:
        self.server = server
        cafile = server.config["s2s_cafile"]
        self.cafile: Optional[Path] = server.config.path(cafile) if cafile else None
        self._server_ctx: dict[str, ssl.SSLContext] = {}
        self._client_ctx: dict[str, ssl.SSLContext] = {}

    @property
    def checks_certificates(self) -> bool:
        return self.cafile is not None

    def cert_file(self, domain: str) -> Optional[Path]:
        """The certificate of a local domain (a host, or a service under one)."""
        certs = self.server.certs
        if certs is None:
            return None
        if domain in certs.files:
            return certs.files[domain]
        for host, path in certs.files.items():
            if domain.endswith("." + host):
                return path
        return None

    def server_context(self, domain: str) -> Optional[ssl.SSLContext]:
        path = self.cert_file(domain) or self.cert_file(next(iter(self.server.hosts)))
        if path is None:
            return None
        ctx = self._server_ctx.get(str(path))   # one per certificate, whatever names a peer asks
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(path)
            if self.cafile is not None:
                ctx.verify_mode = ssl.CERT_OPTIONAL
                ctx.load_verify_locations(cafile=str(self.cafile))
            self._server_ctx[str(path)] = ctx
        return ctx

    def sni_context(self) -> Optional[ssl.SSLContext]:
        """For a Direct TLS listener (XEP-0368): the certificate of the domain the peer
        names (SNI), else of the first host."""
        first = self.server_context(next(iter(self.server.hosts)))
        if first is None:
            return None

        def pick(sslobj: ssl.SSLObject, name: Optional[str], _ctx: ssl.SSLContext) -> None:
            if name and self.cert_file(name.lower()) is not None:
                ctx = self.server_context(name.lower())
                if ctx is not None:
                    sslobj.context = ctx
        first.sni_callback = pick
        return first

    def client_context(self, domain: str) -> ssl.SSLContext:
        ctx = self._client_ctx.get(domain)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cafile is not None:
                ctx.load_verify_locations(cafile=str(self.cafile))
                ctx.check_hostname = True
                ctx.verify_mode = ssl.CERT_REQUIRED
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            path = self.cert_file(domain)
            if path is not None:
                ctx.load_cert_chain(path)  # our identity, for SASL EXTERNAL at the peer
            self._client_ctx[domain] = ctx
        return ctx
