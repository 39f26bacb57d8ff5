"""Incoming server-to-server streams (RFC 6120, XEP-0220, XEP-0178).

``S2SIn`` is fed bytes and writes through its connection. After the header
it offers STARTTLS (``s2s_use_starttls``), then SASL EXTERNAL (when the peer's
certificate was checked and names its domain) and dialback. A remote domain
is authenticated for one local domain at a time (a domain pair); stanzas
from any other domain close the stream with ``invalid-from``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Optional

from ..jid import JID, JIDError, nameprep
from ..shaper import per_second
from ..stanza import STANZA_TAGS
from ..xml import Element
from ..xmlstream import Event, StreamClose, StreamError, StreamOpen
from . import dialback
from .base import S2SStream
from .certs import cert_identities, names_domain

if TYPE_CHECKING:
    from ..config import ListenConfig
    from .manager import S2SManager
    from .transport import S2SConnection

log = logging.getLogger(__name__)

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
STARTTLS_TAG = "{%s}starttls" % TLS_NS
AUTH_TAG = "{%s}auth" % SASL_NS


class S2SIn(S2SStream):
    def __init__(self, manager: S2SManager, conn: S2SConnection, listen: ListenConfig) -> None:
        super().__init__(manager, conn)
        self.conn: S2SConnection = conn
        self.listen = listen
        self.rate = per_second(listen.max_stanza_rate)
        self.local = ""                  # the domain in the header's 'to'
        self.remote = ""                 # the domain in the header's 'from'
        self.version1 = True
        self.authed: dict[str, set[str]] = {}   # remote domain -> local domains
        self.methods: set[str] = set()
        self.pending: set[tuple[str, str]] = set()
        self.external_ok = False
        self.stanzas_in = 0

    def _handle(self, ev: Event) -> Optional[Awaitable[None]]:
        if isinstance(ev, Element):
            tag = ev.tag
            if tag in STANZA_TAGS:
                self._stanza(ev)
                return None
            if tag == dialback.RESULT:
                self._db_result(ev)
                return None
            if tag == dialback.VERIFY:
                self._db_verify(ev)
                return None
            if tag == STARTTLS_TAG:
                return self._starttls()
            if tag == AUTH_TAG:
                self._sasl(ev)
                return None
            raise StreamError("unsupported-stanza-type", f"unexpected {tag}")
        if isinstance(ev, StreamOpen):
            self._open(ev)
        elif isinstance(ev, StreamClose):
            self.close()
        return None

    # -- header and features ------------------------------------------------
    def _open(self, ev: StreamOpen) -> None:
        manager = self.manager
        to = ev.attrs.get("to", "")
        frm = ev.attrs.get("from", "")
        try:
            local = nameprep(to) if to else ""
        except JIDError:
            local = ""
        self.stream_id = secrets.token_urlsafe(12)
        attrs = {"id": self.stream_id,
                 "from": local if manager.is_local(local) else manager.default_domain(),
                 "version": "1.0", "xmlns:db": dialback.DB_NS}
        if frm:
            attrs["to"] = frm
        self.header_sent = True
        self.conn.write(self.conn.framing.header(attrs))
        if not self.local and not self.remote:  # the first header of this connection
            ip = self.conn.peer_ip
            if manager.incoming_from(ip) > self.listen.max_sessions_per_ip:
                raise StreamError("policy-violation", "too many connections from your address")
            if self.server.connecting_too_often(ip, self.listen):
                raise StreamError("policy-violation", "connecting too often")
        if ev.default_ns != "jabber:server":
            raise StreamError("invalid-namespace", "the content namespace must be jabber:server")
        if to and not manager.is_local(local):
            raise StreamError("host-unknown", f"this server does not serve {to!r}")
        try:
            remote = nameprep(frm) if frm else ""
        except JIDError:
            raise StreamError("invalid-from", "'from' is not a domain name") from None
        if self.local and local != self.local:
            raise StreamError("host-unknown", "a restarted stream must keep its 'to'")
        self.local = local
        self.remote = remote
        version = ev.attrs.get("version", "")
        self.version1 = version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 1
        self.external_ok = self._check_certificate()
        if self.version1:
            self.conn.write(self.conn.framing.features(self._features()))

    def _tls_missing(self) -> bool:
        return not self.conn.secure and self.manager.starttls == "required"

    def _features(self) -> bytes:
        parts: list[bytes] = []
        if not self.conn.secure and self.manager.starttls != "false" and \
                self.manager.tls.server_context(self.local or self.manager.default_domain()):
            parts.append(b"<starttls xmlns='%s'>%s</starttls>" % (
                TLS_NS.encode(), b"<required/>" if self._tls_missing() else b""))
        if self._tls_missing():
            return b"".join(parts)
        if self.external_ok and not self.authed:
            parts.append(b"<mechanisms xmlns='%s'><mechanism>EXTERNAL</mechanism></mechanisms>"
                         % SASL_NS.encode())
        parts.append(dialback.FEATURE)
        return b"".join(parts)

    def _check_certificate(self) -> bool:
        """SASL EXTERNAL is possible: a certificate checked by the TLS layer names the peer."""
        if not self.manager.tls.checks_certificates or not self.remote or not self.local:
            return False
        der = self.conn.peer_certificate()
        if der is None:
            return False
        try:
            return names_domain(cert_identities(der), self.remote)
        except ValueError:
            return False

    # -- STARTTLS and SASL EXTERNAL -------------------------------------------
    async def _starttls(self) -> None:
        ctx = self.manager.tls.server_context(self.local or self.manager.default_domain())
        if self.conn.secure or ctx is None or self.manager.starttls == "false":
            self.conn.write(b"<failure xmlns='%s'/>" % TLS_NS.encode())
            self.close()
            return
        self.conn.write(b"<proceed xmlns='%s'/>" % TLS_NS.encode())
        try:
            await self.conn.start_tls(ctx, server_side=True)
        except (OSError, ConnectionError) as e:
            log.info("s2s TLS handshake with %s failed: %s", self.conn.peer_ip, e)
            self.closed = True
            self.conn.close()
            self.ended()
            return
        self.conn.framing.reset()
        self.header_sent = False

    def _sasl(self, el: Element) -> None:
        if self._tls_missing():
            raise StreamError("policy-violation", "STARTTLS is required first")
        fail = b"<failure xmlns='%s'><%%s/></failure>" % SASL_NS.encode()
        if el.get("mechanism") != "EXTERNAL" or not self.external_ok or self.authed:
            self.conn.write(fail % b"invalid-mechanism")
            return
        data = el.text.strip()
        authzid = self.remote
        if data and data != "=":
            try:
                authzid = base64.b64decode(data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                self.conn.write(fail % b"incorrect-encoding")
                return
        if authzid.lower() != self.remote:
            self.conn.write(fail % b"invalid-authzid")
            return
        if not self.manager.allowed(self.remote):
            self.conn.write(fail % b"not-authorized")
            return
        self.conn.write(b"<success xmlns='%s'/>" % SASL_NS.encode())
        self._authenticated(self.remote, self.local, "external")
        self.conn.framing.reset()
        self.header_sent = False

    # -- dialback ------------------------------------------------------------
    def _db_result(self, el: Element) -> None:
        if el.get("type"):
            log.info("s2s %s: ignoring a db:result answer on an incoming stream",
                     self.stream_id)
            return
        remote, local = self._pair(el)
        if self._tls_missing():
            self.conn.write(dialback.result(local, remote, error="policy-violation"))
            return
        if not self.manager.is_local(local):
            self.conn.write(dialback.result(local, remote, error="item-not-found"))
            return
        if not self.manager.allowed(remote):
            log.info("s2s: %s may not federate (s2s_access)", remote)
            self.conn.write(dialback.result(local, remote, error="policy-violation"))
            return
        if local in self.authed.get(remote, ()):
            self.conn.write(dialback.result(local, remote, type="valid"))
            return
        if (remote, local) in self.pending:
            return
        self.pending.add((remote, local))
        fut = self.manager.verify_key(local, remote, self.stream_id, el.text)
        fut.add_done_callback(lambda f: self._verified(remote, local, f))

    def _verified(self, remote: str, local: str, fut: asyncio.Future[str]) -> None:
        self.pending.discard((remote, local))
        if self.closed:
            return
        outcome = fut.result() if not fut.cancelled() else "remote-server-timeout"
        if outcome == "valid":
            self.conn.write(dialback.result(local, remote, type="valid"))
            self._authenticated(remote, local, "dialback")
        elif outcome == "invalid":
            log.warning("s2s: dialback key from %s for %s is invalid (spoofing?)", remote, local)
            self.conn.write(dialback.result(local, remote, type="invalid"))
            self.close()
        else:
            self.conn.write(dialback.result(local, remote, error=outcome))

    def _db_verify(self, el: Element) -> None:
        if el.get("type"):
            log.info("s2s %s: ignoring a db:verify answer on an incoming stream",
                     self.stream_id)
            return
        receiving, authoritative = self._pair(el)
        sid = el.get("id") or ""
        if not self.manager.is_local(authoritative):
            self.conn.write(dialback.verify(authoritative, receiving, sid,
                                            error="item-not-found"))
            return
        ok = dialback.key_matches(self.manager.secret, receiving, authoritative, sid, el.text)
        self.conn.write(dialback.verify(authoritative, receiving, sid,
                                        type="valid" if ok else "invalid"))

    @staticmethod
    def _pair(el: Element) -> tuple[str, str]:
        """(from, to) of a dialback element, as domains."""
        try:
            return nameprep(el.get("from") or ""), nameprep(el.get("to") or "")
        except JIDError:
            raise StreamError("improper-addressing", "dialback needs 'from' and 'to'") from None

    def _authenticated(self, remote: str, local: str, method: str) -> None:
        first = not self.authed
        self.authed.setdefault(remote, set()).add(local)
        self.methods.add(method)
        log.info("s2s in: %s -> %s authenticated by %s%s", remote, local, method,
                 " over TLS" if self.conn.secure else "")
        if first:
            self.manager.incoming_authenticated(self)

    # -- stanzas ----------------------------------------------------------------
    def _stanza(self, el: Element) -> None:
        if not self.authed:
            raise StreamError("not-authorized", "authenticate first")
        attrs = el.attrs
        frm = attrs.get("from")
        to = attrs.get("to")
        if not frm or not to:
            raise StreamError("improper-addressing", "stanzas need 'from' and 'to'")
        try:
            from_jid = JID.parse(frm)
            to_jid = JID.parse(to)
        except JIDError:
            raise StreamError("improper-addressing", "a 'from' or 'to' is not a JID") from None
        locals_ = self.authed.get(from_jid.domain)
        if locals_ is None:
            raise StreamError("invalid-from", f"{from_jid.domain} is not authenticated "
                                              "on this stream")
        if to_jid.domain not in locals_:
            raise StreamError("host-unknown", f"{to_jid.domain} was not negotiated on this "
                                              "stream")
        raw = el.raw
        if raw and raw.find(b"jabber:server") >= 0:
            el.raw = None  # our element: an explicit jabber:server must not reach clients
        self.stanzas_in += 1
        self.server.router.route(el)

    # -- closing ----------------------------------------------------------------
    def ended(self) -> None:
        self.manager.incoming_closed(self)

    def describe(self) -> dict[str, Any]:
        return {"direction": "in", "local": sorted({d for v in self.authed.values() for d in v}),
                "remote": sorted(self.authed), "tls": self.conn.secure,
                "auth": sorted(self.methods),
                "ip": self.conn.peer_ip + (" (direct TLS)" if self.listen.tls else "")}

    def __repr__(self) -> str:
        return f"<S2SIn {self.remote or self.conn.peer_ip} {self.stream_id}>"

