"""Outgoing server-to-server streams: one per (local domain, remote domain).

``S2SOut`` resolves the remote domain, connects, opens the stream, uses
STARTTLS when offered (or required by ``s2s_use_starttls``), then SASL
EXTERNAL when the peer offers it, else dialback. Stanzas routed to it wait
in a bounded queue until the stream is authenticated, then go out in order.
If the stream cannot be set up, every queued stanza bounces with
``remote-server-not-found`` (or ``remote-server-timeout``).

The stream also carries dialback verification requests (``db:verify``) for
keys that the remote domain's servers presented to our incoming streams.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Optional

from ..stanza import STANZA_TAGS
from ..xml import STREAM_NS, Element
from ..xmlstream import Event, StreamClose, StreamError, StreamOpen
from . import dialback
from .base import S2SStream
from .resolver import NoService
from .transport import S2SConnection

if TYPE_CHECKING:
    from .manager import S2SManager

log = logging.getLogger(__name__)

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
FEATURES = "{%s}features" % STREAM_NS
STREAM_ERROR = "{%s}error" % STREAM_NS

CONNECTING, OPENING, FEATURES_WAIT, TLS, SASL, DIALBACK, ESTABLISHED = range(7)
STATE_NAMES = ("connecting", "opening", "features", "tls", "sasl", "dialback", "established")


class Failed(Exception):
    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


def wire(el: Element) -> bytes:
    """A stanza as written to a jabber:server stream."""
    raw = el.raw
    if raw and raw.find(b"jabber:client") >= 0:
        el = el.copy()  # an explicit jabber:client inside must not reach the peer
        el.raw = None
    return el.to_bytes()


class S2SOut(S2SStream):
    def __init__(self, manager: S2SManager, local: str, remote: str) -> None:
        super().__init__(manager, None)
        self.local = local
        self.remote = remote
        self.state = CONNECTING
        self.queue_out: deque[Element] = deque()
        self.verify_wait: list[tuple[str, str, asyncio.Future[str]]] = []
        self.verify_sent: dict[str, asyncio.Future[str]] = {}
        self.db_offered = False
        self.sasl_done = False
        self.sasl_failed = False
        self.method = ""
        self.last_used = self.created
        self.stanzas_out = 0
        self.connected_to = ""
        self.direct_tls = False   # XEP-0368: TLS from the first byte
        self._timer: Optional[asyncio.TimerHandle] = None
        self._out: list[bytes] = []
        self._task = asyncio.ensure_future(self._connect())

    # -- sending -----------------------------------------------------------
    def send(self, el: Element) -> bool:
        """Send or queue a stanza; False when the stream is closed."""
        if self.closed:
            return False
        self.last_used = time.monotonic()
        if self.state == ESTABLISHED:
            # stanzas of one event-loop turn go out in one write (one TLS record)
            out = self._out
            out.append(wire(el))
            if len(out) == 1:
                asyncio.get_running_loop().call_soon(self._flush)
            self.stanzas_out += 1
            return True
        if len(self.queue_out) >= self.manager.max_queue:
            self.manager.bounce(el, "resource-constraint",
                                f"too many stanzas waiting for {self.remote}")
            return True
        self.queue_out.append(el)
        return True

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.conn is not None:
            self.conn.write(b"".join(out))

    def close(self) -> None:
        self._flush()
        super().close()

    def request_verify(self, stream_id: str, key: str) -> asyncio.Future[str]:
        """Ask the remote (authoritative) server whether it issued ``key``."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_result("remote-connection-failed")
        elif self.state in (DIALBACK, ESTABLISHED):
            self._send_verify(stream_id, key, fut)
        else:
            self.verify_wait.append((stream_id, key, fut))
        return fut

    def _send_verify(self, stream_id: str, key: str, fut: asyncio.Future[str]) -> None:
        assert self.conn is not None
        old = self.verify_sent.pop(stream_id, None)
        if old is not None and not old.done():
            old.set_result("remote-server-timeout")
        self.verify_sent[stream_id] = fut
        self.conn.write(dialback.verify(self.local, self.remote, stream_id, key=key.strip()))

    # -- connecting ----------------------------------------------------------
    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.manager.negotiation_timeout, self._timed_out)
        try:
            conn = await self._open_connection()
        except Failed as e:
            self.fail(e.condition, e.text)
            return
        except Exception as e:  # noqa: BLE001 - any failure bounces the queue
            log.exception("s2s: connecting to %s failed", self.remote)
            self.fail("remote-server-not-found", str(e))
            return
        if self.closed:
            conn.close()
            return
        conn.stream = self
        self.conn = conn
        self.state = OPENING
        self._send_header()

    async def _open_connection(self) -> S2SConnection:
        manager = self.manager
        loop = asyncio.get_running_loop()
        try:
            targets = await manager.resolver.targets(self.remote)
        except NoService as e:
            raise Failed("remote-server-not-found", str(e)) from None
        timed_out = False
        errors: list[str] = []
        for target in targets:
            try:
                infos = await asyncio.wait_for(loop.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM), manager.dns_timeout)
            except (TimeoutError, OSError) as e:
                errors.append(f"{target.host}: {e or 'DNS timeout'}")
                continue
            for family, _, _, _, addr in manager.order_addresses(infos):
                try:
                    _, conn = await asyncio.wait_for(loop.create_connection(
                        lambda: S2SConnection(self.server, manager.max_stanza_size),
                        addr[0], addr[1], family=family), manager.connect_timeout)
                except TimeoutError:
                    timed_out = True
                    errors.append(f"{addr[0]} port {addr[1]}: timed out")
                    continue
                except OSError as e:
                    errors.append(f"{addr[0]} port {addr[1]}: {e.strerror or e}")
                    continue
                self.connected_to = f"{addr[0]} port {addr[1]}"
                if target.tls:
                    try:   # Direct TLS (XEP-0368): TLS before the stream header
                        await conn.start_tls(manager.tls.client_context(self.local),
                                             server_side=False, server_hostname=self.remote)
                    except (OSError, ConnectionError) as e:
                        conn.close()
                        errors.append(f"{addr[0]} port {addr[1]}: direct TLS: {e}")
                        continue
                    self.direct_tls = True
                    self.connected_to += " (direct TLS)"
                return conn
        why = "; ".join(errors) or "no address"
        raise Failed("remote-server-timeout" if timed_out else "remote-server-not-found",
                     f"cannot connect to {self.remote}: {why}")

    def _send_header(self) -> None:
        assert self.conn is not None
        self.conn.write(self.conn.framing.header({
            "xmlns:db": dialback.DB_NS, "from": self.local, "to": self.remote,
            "version": "1.0"}))
        self.header_sent = True

    def _timed_out(self) -> None:
        if self.state != ESTABLISHED and not self.closed:
            self.fail("remote-server-timeout",
                      f"no authenticated stream to {self.remote} in time "
                      f"({STATE_NAMES[self.state]})")

    # -- negotiation -----------------------------------------------------------
    def _handle(self, ev: Event) -> Optional[Awaitable[None]]:
        if isinstance(ev, Element):
            tag = ev.tag
            if tag == dialback.RESULT:
                self._db_result(ev)
            elif tag == dialback.VERIFY:
                self._db_verify(ev)
            elif tag == FEATURES:
                return self._features(ev)
            elif tag == "{%s}proceed" % TLS_NS and self.state == TLS:
                return self._starttls()
            elif tag.startswith("{%s}" % SASL_NS) and self.state == SASL:
                self._sasl_answer(ev)
            elif tag == STREAM_ERROR:
                cond = next((c.name for c in ev.elements() if c.name != "text"), "?")
                text = ev.findtext("{urn:ietf:params:xml:ns:xmpp-streams}text") or ""
                why = f"{self.remote} closed the stream: {cond} {text}".strip()
                if self.state == ESTABLISHED:
                    log.info("s2s out: %s", why)
                    self.close()
                else:
                    self.fail("remote-server-not-found", why)
            elif tag in STANZA_TAGS:
                raise StreamError("unsupported-stanza-type",
                                  "stanzas are not accepted on this (outgoing) stream")
            else:
                self.fail("remote-server-not-found", f"unexpected {tag} from {self.remote}")
            return None
        if isinstance(ev, StreamOpen):
            self._opened(ev)
        elif isinstance(ev, StreamClose):
            if self.state == ESTABLISHED:
                self.close()
            else:
                self.fail("remote-server-not-found", f"{self.remote} closed the stream")
        return None

    def _opened(self, ev: StreamOpen) -> None:
        if ev.default_ns != "jabber:server":
            raise StreamError("invalid-namespace", "the content namespace must be jabber:server")
        self.stream_id = ev.attrs.get("id", "")
        if dialback.DB_NS in ev.extra_ns.values():
            self.db_offered = True
        version = ev.attrs.get("version", "")
        if version[:1].isdigit() and int(version.split(".")[0]) >= 1:
            self.state = FEATURES_WAIT
            return
        # a pre-1.0 server sends no features: dialback straight away
        if self.manager.starttls == "required" or self.manager.tls.checks_certificates:
            self.fail("remote-server-not-found", f"{self.remote} does not support TLS")
            return
        self._dialback()

    def _features(self, el: Element) -> Optional[Awaitable[None]]:
        if self.state != FEATURES_WAIT:
            return None
        assert self.conn is not None
        manager = self.manager
        if el.find("{urn:xmpp:features:dialback}dialback") is not None:
            self.db_offered = True
        secure = self.conn.secure
        if not secure:
            if el.find("{%s}starttls" % TLS_NS) is not None and manager.starttls != "false":
                self.state = TLS
                self.conn.write(b"<starttls xmlns='%s'/>" % TLS_NS.encode())
                return None
            if manager.starttls == "required" or manager.tls.checks_certificates:
                self.fail("remote-server-not-found", f"{self.remote} does not offer STARTTLS")
                return None
        if self.sasl_done:
            self._established("external")
            return None
        mechs = el.find("{%s}mechanisms" % SASL_NS)
        if secure and mechs is not None and not self.sasl_failed and \
                "EXTERNAL" in (m.text.strip() for m in mechs.elements()):
            self.state = SASL
            self.conn.write(b"<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>" % (
                SASL_NS.encode(), base64.b64encode(self.local.encode())))
            return None
        self._dialback()
        return None

    async def _starttls(self) -> None:
        assert self.conn is not None
        ctx = self.manager.tls.client_context(self.local)
        try:
            await self.conn.start_tls(ctx, server_side=False, server_hostname=self.remote)
        except (OSError, ConnectionError) as e:
            self.fail("remote-server-not-found", f"TLS with {self.remote} failed: {e}")
            return
        self.conn.framing.reset()
        self.state = OPENING
        self._send_header()

    def _sasl_answer(self, el: Element) -> None:
        assert self.conn is not None
        if el.name == "success":
            self.sasl_done = True
            self.conn.framing.reset()
            self.state = OPENING
            self._send_header()
            return
        log.info("s2s: SASL EXTERNAL to %s failed (%s); trying dialback", self.remote,
                 next((c.name for c in el.elements()), "?"))
        self.sasl_failed = True
        self._dialback()

    def _dialback(self) -> None:
        assert self.conn is not None
        if not self.db_offered:
            self.fail("remote-server-not-found",
                      f"{self.remote} offers no authentication xmppd supports")
            return
        if not self.stream_id:
            self.fail("remote-server-not-found", f"{self.remote} sent no stream id")
            return
        self.state = DIALBACK
        key = dialback.make_key(self.manager.secret, self.remote, self.local, self.stream_id)
        self.conn.write(dialback.result(self.local, self.remote, key=key))
        waiting, self.verify_wait = self.verify_wait, []
        for sid, k, fut in waiting:
            self._send_verify(sid, k, fut)

    def _db_result(self, el: Element) -> None:
        if self.state != DIALBACK or el.get("from") != self.remote or \
                el.get("to") != self.local:
            log.warning("s2s: unsolicited db:result from %s ignored", self.remote)
            return
        type_ = el.get("type")
        if type_ == "valid":
            self._established("dialback")
        elif type_ == "invalid":
            self.fail("remote-server-not-found", f"{self.remote} refused our dialback key")
        else:
            cond = dialback.error_condition(el)
            self.fail("remote-server-timeout", f"dialback with {self.remote} failed: {cond}")

    def _db_verify(self, el: Element) -> None:
        sid = el.get("id") or ""
        fut = self.verify_sent.get(sid)
        if fut is None or el.get("from") != self.remote or el.get("to") != self.local:
            log.warning("s2s: unsolicited db:verify from %s ignored", self.remote)
            return
        del self.verify_sent[sid]
        type_ = el.get("type")
        outcome = type_ if type_ in ("valid", "invalid") else "remote-server-not-found"
        if not fut.done():
            fut.set_result(outcome)

    def _established(self, method: str) -> None:
        assert self.conn is not None
        self.state = ESTABLISHED
        self.method = method
        if self._timer is not None:
            self._timer.cancel()
        self.last_used = time.monotonic()
        log.info("s2s out: %s -> %s authenticated by %s%s (%s)", self.local, self.remote,
                 method, " over TLS" if self.conn.secure else "", self.connected_to)
        self.manager.outgoing_established(self)
        waiting, self.verify_wait = self.verify_wait, []
        for sid, k, fut in waiting:
            self._send_verify(sid, k, fut)
        queued, self.queue_out = self.queue_out, deque()
        if queued:
            self.conn.write(b"".join(wire(el) for el in queued))
            self.stanzas_out += len(queued)

    # -- failure and closing ---------------------------------------------------
    def fail(self, condition: str, text: str) -> None:
        """Give up: bounce what waits, fail pending verifications, close."""
        if self.closed and not self.queue_out and not self.verify_wait and \
                not self.verify_sent:
            return
        log.info("s2s out: %s -> %s failed: %s", self.local, self.remote, text)
        self.manager.outgoing_failed(self, condition, text)
        queued, self.queue_out = self.queue_out, deque()
        for el in queued:
            self.manager.bounce(el, condition, text)
        self._fail_verifies("remote-connection-failed" if self.conn is None
                            else "remote-server-timeout")
        self.close()

    def _fail_verifies(self, outcome: str) -> None:
        waiting = [f for _, _, f in self.verify_wait] + list(self.verify_sent.values())
        self.verify_wait = []
        self.verify_sent = {}
        for fut in waiting:
            if not fut.done():
                fut.set_result(outcome)

    def ended(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if not self._task.done():
            self._task.cancel()
        if self.queue_out:
            # the connection went away before the queue could go out
            self.fail("remote-server-timeout", f"the stream to {self.remote} closed")
        self._fail_verifies("remote-server-timeout")
        self.manager.outgoing_closed(self)

    def describe(self) -> dict[str, Any]:
        return {"direction": "out", "local": [self.local], "remote": [self.remote],
                "tls": bool(self.conn and self.conn.secure),
                "auth": [self.method] if self.method else [],
                "state": STATE_NAMES[self.state], "ip": self.connected_to}

    def __repr__(self) -> str:
        return f"<S2SOut {self.local} -> {self.remote} {STATE_NAMES[self.state]}>"
