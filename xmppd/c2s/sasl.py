"""SASL for client streams (RFC 6120 section 6): SCRAM-SHA-1/256 (+PLUS) and
PLAIN (only inside TLS). Credentials come from the account store.

The same exchange runs in SASL2's syntax too (XEP-0388, ``urn:xmpp:sasl:2``), which
modern clients (Conversations, Monal) prefer: ``<authenticate/>`` with an
``<initial-response/>``, and a ``<success/>`` that carries the rest of the login
without a stream restart: resource binding (Bind2, XEP-0386), stream management
enabled or resumed (XEP-0198), carbons and CSI (:meth:`C2SStream.authenticated2`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Optional

from ..jid import JID, JIDError, nodeprep
from ..storage.accounts import Credentials
from ..xml import Element, escape_text
from . import fast
from .scram import SaslFailure, ScramServer, check_password

if TYPE_CHECKING:
    from .stream import C2SStream

log = logging.getLogger(__name__)

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2_NS = "urn:xmpp:sasl:2"
SASL_CB_NS = "urn:xmpp:sasl-cb:0"
BIND2_NS = "urn:xmpp:bind:0"
SM_NS = "urn:xmpp:sm:3"
MAX_FAILURES = 3
SCRAM = {
    "SCRAM-SHA-256-PLUS": ("SHA-256", True), "SCRAM-SHA-1-PLUS": ("SHA-1", True),
    "SCRAM-SHA-256": ("SHA-256", False), "SCRAM-SHA-1": ("SHA-1", False),
}


def channel_binding_types(stream: C2SStream) -> tuple[str, ...]:
    if not stream.conn.secure:
        return ()
    types = ["tls-server-end-point"]
    if stream.conn.channel_binding("tls-unique") is not None:
        types.insert(0, "tls-unique")
    return tuple(types)


def mechanisms(stream: C2SStream) -> list[str]:
    mechs = []
    if channel_binding_types(stream):
        mechs += ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
    mechs += ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    if stream.conn.secure:
        mechs.append("PLAIN")
    return mechs


_FEATURES: dict[tuple[bool, tuple[str, ...]], bytes] = {}


def features(stream: C2SStream) -> bytes:
    """The SASL stream features; they depend on TLS and its channel bindings only."""
    cbs = channel_binding_types(stream)
    key = (stream.conn.secure, cbs)
    out = _FEATURES.get(key)
    if out is None:
        mechs = "".join("<mechanism>%s</mechanism>" % m for m in mechanisms(stream))
        text = "<mechanisms xmlns='%s'>%s</mechanisms>" % (SASL_NS, mechs)
        if cbs:
            text += "<sasl-channel-binding xmlns='%s'>%s</sasl-channel-binding>" % (
                SASL_CB_NS, "".join("<channel-binding type='%s'/>" % t for t in cbs))
        out = _FEATURES[key] = text.encode()
    return out


_FEATURES2: dict[tuple[bool, tuple[str, ...], tuple[str, ...]], bytes] = {}


def features2(stream: C2SStream) -> bytes:
    """The SASL2 stream feature (XEP-0388) with what can go inline: Bind2 with what the
    host's modules take inline (stream management, carbons, CSI), and stream resumption
    where stream management runs."""
    cbs = channel_binding_types(stream)
    inline = tuple(sorted(stream.vhost.bind2_inline)) if stream.vhost is not None else ()
    key = (stream.conn.secure, cbs, inline)
    out = _FEATURES2.get(key)
    if out is None:
        mechs = "".join("<mechanism>%s</mechanism>" % m for m in mechanisms(stream))
        bind = "<bind xmlns='%s'><inline>%s</inline></bind>" % (
            BIND2_NS, "".join("<feature var='%s'/>" % ns for ns in inline))
        sm = "<sm xmlns='%s'/>" % SM_NS if SM_NS in inline else ""
        out = _FEATURES2[key] = ("<authentication xmlns='%s'>%s<inline>%s%s%s</inline>"
                                 "</authentication>" % (SASL2_NS, mechs, sm, bind,
                                                        fast.feature())).encode()
    return out


def _b64(el: Element) -> Optional[bytes]:
    text = el.text.strip()
    if text == "=":
        return b""
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SaslFailure("incorrect-encoding") from None


class SaslExchange:
    """The SASL state of one stream (between <auth/> and <success/>)."""

    def __init__(self, stream: C2SStream, v2: bool = False) -> None:
        self.stream = stream
        self.scram: Optional[ScramServer] = None
        self.user: Optional[str] = None  # the account the current attempt is for
        self.v2 = v2                     # SASL2 (XEP-0388) syntax
        self.ns = SASL2_NS if v2 else SASL_NS
        self.request: Optional[Element] = None   # SASL2's <authenticate/>
        self.rotate = False   # FAST: the token used is old, the success carries a new one

    def send(self, tag: str, data: Optional[bytes] = None) -> None:
        # empty data: "=" in RFC 6120, an empty element in SASL2
        body = "" if data is None else (base64.b64encode(data).decode() if data else
                                        ("" if self.v2 else "="))
        self.stream.conn.write(("<%s xmlns='%s'>%s</%s>" % (tag, self.ns, body, tag)).encode())

    def fail(self, condition: str, text: Optional[str] = None) -> None:
        self.scram = None
        self.stream.sasl_failures += 1   # (on the stream: SASL and SASL2 attempts count alike)
        if self.v2:   # the condition keeps RFC 6120's namespace
            inner = "<%s xmlns='%s'/>" % (condition, SASL_NS)
        else:
            inner = "<%s/>" % condition
        if text:
            inner += "<text xml:lang='en'>%s</text>" % escape_text(text)
        self.stream.conn.write(("<failure xmlns='%s'>%s</failure>" % (self.ns, inner)).encode())
        if self.stream.sasl_failures >= MAX_FAILURES:
            self.stream.stream_error("policy-violation", "too many failed authentications")

    def handle(self, el: Element) -> Optional[Awaitable[None]]:
        """Take one SASL element; an awaitable when the step must wait (for the
        credentials, a back-off), else None: the step is done."""
        try:
            pending = self._handle(el)
        except SaslFailure as e:
            self._failed(e)
            return None
        return None if pending is None else self._later(pending)

    def _failed(self, e: SaslFailure) -> None:
        log.info("SASL failure from %s: %s", self.stream.conn.peer_ip, e.condition)
        stream = self.stream
        stream.server.hooks.fire_all("c2s/auth-failed", stream.host, stream.conn.peer_ip,
                                     e.condition, self.user)
        self.fail(e.condition, e.text)

    async def _later(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except SaslFailure as e:
            self._failed(e)

    def _handle(self, el: Element) -> Optional[Awaitable[None]]:
        name = el.tag[len(self.ns) + 2:]
        stream = self.stream
        if name == "abort":
            raise SaslFailure("aborted")
        if name == ("authenticate" if self.v2 else "auth"):
            self.scram = None
            self.user = None
            self.request = el
            mech = el.attrs.get("mechanism", "")
            if self.v2 and mech == fast.MECHANISM and \
                    el.find("{%s}fast" % fast.FAST_NS) is not None:
                initial = el.find("{%s}initial-response" % SASL2_NS)
                return self._fast(_b64(initial) if initial is not None else None, el)
            if mech not in mechanisms(stream):
                if mech == "PLAIN" and not stream.conn.secure:
                    raise SaslFailure("encryption-required")
                raise SaslFailure("invalid-mechanism")
            if self.v2:   # (an empty <initial-response/> is empty data, not none)
                initial = el.find("{%s}initial-response" % SASL2_NS)
                data = None if initial is None else (
                    _b64(initial) if initial.text.strip() else b"")
            else:
                data = _b64(el)
            if mech == "PLAIN":
                if data is None:
                    self.send("challenge", b"")
                    self.scram = None
                    stream.sasl_pending = "PLAIN"
                    return None
                return self._plain(data)
            hash_label, plus = SCRAM[mech]
            self.scram = ScramServer(
                hash_label, plus, channel_binding_types(stream), stream.conn.channel_binding,
                plus_offered=bool(channel_binding_types(stream)),
                iterations=stream.server.config["scram_iterations"])
            if data is None:
                self.send("challenge", b"")
                return None
            return self._scram_first(data)
        if name == "response":
            data = _b64(el) or b""
            if stream.sasl_pending == "PLAIN":
                stream.sasl_pending = None
                return self._plain(data)
            scram = self.scram
            if scram is None:
                raise SaslFailure("malformed-request", "no exchange in progress")
            if not scram.username:
                return self._scram_first(data)
            final = scram.final(data)  # the proof is checked here: no waiting
            self.scram = None
            return self._success(scram.username, scram.authzid, final)
        raise SaslFailure("malformed-request")

    async def _lookup(self, username: str) -> tuple[str, Optional[Credentials]]:
        """The account's credentials (None: no such account), once the back-off that
        earlier failures from this address or on this account ask for is over."""
        try:
            user: Optional[str] = nodeprep(username)
        except JIDError:
            user = None
        self.user = user
        stream = self.stream
        delays = stream.server.hooks.fire_all("c2s/auth-delay", stream.host,
                                              stream.conn.peer_ip, user)
        if delays:
            await asyncio.sleep(max(delays))  # back-off after failures (mod_fail2ban)
        if user is None:
            return username, None
        return user, await stream.server.accounts.get(stream.host, user)

    async def _scram_first(self, data: bytes) -> None:
        scram = self.scram
        assert scram is not None
        username = scram.first(data)
        user, creds = await self._lookup(username)
        scram.username = user
        keys = creds.for_hash(scram.hashname) if creds is not None else None
        self.send("challenge", scram.challenge(keys))

    async def _success2(self, jid: JID, data: Optional[bytes]) -> None:
        request = self.request
        assert request is not None
        extra = await self._new_token(jid.local or "")
        await self.stream.authenticated2(jid, data, request, extra)

    # -- FAST (XEP-0484) ------------------------------------------------------------------
    def _client_id(self) -> str:
        agent = self.request.find("{%s}user-agent" % SASL2_NS) if self.request else None
        return agent.attrs.get("id", "") if agent is not None else ""

    async def _fast(self, data: Optional[bytes], el: Element) -> None:
        """A login with a FAST token (HT-SHA-256-NONE): the user name, NUL, the
        Initiator proof."""
        client_id = self._client_id()
        if not data or b"\0" not in data or not client_id:
            raise SaslFailure("malformed-request", "a user name, NUL and the token's proof, "
                              "and a user-agent id")
        authcid, given = data.split(b"\0", 1)
        try:
            username = authcid.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("malformed-request") from None
        user, creds = await self._lookup(username)
        found = None if creds is None else await fast.tokens_of(self.stream.server).check(
            self.stream.host, user, client_id, given, creds.sha256.salt.hex())
        if found is None:
            raise SaslFailure("not-authorized", "no such token for this client")
        token, created = found
        fast_el = el.find("{%s}fast" % fast.FAST_NS)
        if fast_el is not None and fast_el.attrs.get("invalidate") in ("true", "1"):
            await fast.tokens_of(self.stream.server).revoke(token)   # (the client logs out: a last login)
        elif time.time() - created > fast.TOKEN_LIFETIME / 2:
            self.rotate = True
        pending = self._success(user, None, fast.proof(token, b"Responder"))
        if pending is not None:
            await pending

    async def _new_token(self, user: str) -> bytes:
        """A ``<token/>`` for the success, when the client asked for one (or its token
        is old); nothing otherwise."""
        req = self.request.find("{%s}request-token" % fast.FAST_NS) if self.request else None
        asked = req is not None and req.attrs.get("mechanism") == fast.MECHANISM
        client_id = self._client_id()
        if not (asked or self.rotate) or not client_id:
            return b""
        creds = await self.stream.server.accounts.get(self.stream.host, user)
        if creds is None:
            return b""
        token, expires = await fast.tokens_of(self.stream.server).issue(self.stream.host, user, client_id,
                                                    creds.sha256.salt.hex())
        return fast.token_element(token, expires)

    async def _plain(self, data: bytes) -> None:
        if not self.stream.conn.secure:
            raise SaslFailure("encryption-required")
        try:
            authzid, authcid, password = data.decode("utf-8").split("\0")
        except (UnicodeDecodeError, ValueError):
            raise SaslFailure("malformed-request") from None
        user, creds = await self._lookup(authcid)
        if creds is None:
            raise SaslFailure("not-authorized")
        ok = await asyncio.get_running_loop().run_in_executor(
            None, check_password, password, creds.sha256, "sha256")
        if not ok:
            raise SaslFailure("not-authorized")
        pending = self._success(user, authzid or None, None)
        if pending is not None:
            await pending

    def _success(self, user: str, authzid: Optional[str], data: Optional[bytes]
                 ) -> Optional[Awaitable[None]]:
        """Authenticated: RFC 6120's ``<success/>`` (the client restarts the stream), or
        SASL2's, which the stream makes with the rest of the login (an awaitable)."""
        stream = self.stream
        jid = JID(user, stream.host, None, prepped=True)
        if authzid:
            try:
                if JID.parse(authzid) != jid:
                    raise SaslFailure("invalid-authzid")
            except JIDError:
                raise SaslFailure("invalid-authzid") from None
        if not stream.server.access.access(stream.listen.access, jid, stream.conn.peer_ip):
            raise SaslFailure("not-authorized", "access denied by service policy")
        veto = stream.server.hooks.fire("c2s/auth-check", stream, jid)
        if veto is not None:
            raise SaslFailure(str(veto))
        if self.v2:
            return self._success2(jid, data)
        self.send("success", data)
        stream.authenticated(jid)
        return None
