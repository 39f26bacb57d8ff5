"""XEP-0198 stream management: acks, resumption, and unacked stanzas never dropped.

Per session, ``session.sm`` holds an :class:`SMState`: the count of stanzas
handled from the client, and the queue of stanzas sent and not yet
acknowledged. The stream machine calls ``on_receive`` for every inbound stanza
and ``C2SStream.send`` calls ``on_send``; everything else arrives as the
nonzas ``enable``, ``r``, ``a`` and ``resume``. The module is framing-agnostic:
it writes whole elements through the session's connection.

Durable acks: while a stanza is being handled, a module may ``hold`` it with a
future (the journal does, until the stanza's group commit is durable); the
``h`` we report never covers a stanza whose holds are still pending.

When the connection breaks, the session stays registered (its presence too)
for ``resume_timeout`` seconds and queues what it is sent. On timeout, or when
the session ends for good, the unacknowledged messages are routed again
(``resend_on_timeout``): to offline storage when no other resource is online,
never dropped silently.

Hooks fired: ``sm/queued`` (session, stanza) when a stanza waits for an ack,
``sm/acked`` (session, stanzas) when the client acknowledged them,
``sm/released`` (session, stanzas) when the session gave up on them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from ..confval import v_bool, v_enum, v_int, v_pos_int_or_infinity, v_timeout
from ..moduleapi import Module, Option
from ..receipts.journal import Journal
from ..stanza import IQ, MESSAGE, STANZAS_NS, StanzaError, error_reply
from ..xml import Element, serialize
from .sm_cluster import RELEASED, ClusterRelease, new_resume_id
from .stream import BIND, BOUND, CLOSED

if TYPE_CHECKING:
    from .stream import C2SStream

log = logging.getLogger(__name__)

NS = "urn:xmpp:sm:3"
MOD = 1 << 32
_SM_FEATURE = Element("{%s}sm" % NS).to_bytes("")  # (the stream feature, made once)


def _nonza(name: str, attrs: Optional[dict[str, str]] = None, *children: Element) -> bytes:
    return serialize(Element("{%s}%s" % (NS, name), attrs or {}, list(children)))


def _failed(condition: str, h: Optional[int] = None, text: Optional[str] = None) -> bytes:
    kids = [Element("{%s}%s" % (STANZAS_NS, condition))]
    if text:
        kids.append(Element("{%s}text" % STANZAS_NS, {"xml:lang": "en"}, [text]))
    return _nonza("failed", {"h": str(h % MOD)} if h is not None else {}, *kids)


class SMState:
    """Stream management state of one session (``session.sm``)."""

    __slots__ = ("mod", "id", "timeout", "received", "holds", "queue", "acked", "want_ack",
                 "sent_h", "r_scheduled", "r_out", "ack_timer", "resume_timer", "dead",
                 "durable")

    def __init__(self, mod: StreamMgmt, resume_id: Optional[str], timeout: float) -> None:
        self.mod = mod
        self.id = resume_id
        self.timeout = timeout
        self.received = 0                 # stanzas handled from the client
        self.holds: deque[tuple[int, asyncio.Future[Any]]] = deque()
        self.queue: deque[Element] = deque()  # sent, not acknowledged
        self.acked = 0                    # last h from the client (mod 2^32)
        self.want_ack: deque[int] = deque()  # <r/>s waiting for holds up to these counts
        self.sent_h = -1                  # last h we reported
        self.r_scheduled = False
        self.r_out = False
        self.ack_timer: Optional[asyncio.TimerHandle] = None
        self.resume_timer: Optional[asyncio.TimerHandle] = None
        self.dead = False
        self.durable: bool = mod.opts["durable_acks"]  # the journal holds our acks

    # -- inbound ------------------------------------------------------------
    def on_receive(self, session: C2SStream) -> None:
        self.received += 1

    def hold(self, fut: asyncio.Future[Any], session: C2SStream) -> None:
        """The stanza being handled is not acknowledged before ``fut`` is done."""
        self.holds.append((self.received, fut))
        fut.add_done_callback(lambda f: self._hold_done(session, f))

    def durable_count(self) -> int:
        """How many inbound stanzas are handled and durable."""
        holds = self.holds
        while holds and holds[0][1].done():
            holds.popleft()
        return holds[0][0] - 1 if holds else self.received

    def _hold_done(self, session: C2SStream, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None and not self.dead:
            log.error("a held stanza of %s could not be stored: %s", session, fut.exception())
            self.dead = True  # its ack must never be sent: end the session, no resumption
            session.stream_error("internal-server-error", "could not store a stanza")
            session.ended("storage failure")
            return
        if self.want_ack:
            self.answer(session)

    def request_received(self, session: C2SStream) -> None:
        self.want_ack.append(self.received)
        self.answer(session)

    def answer(self, session: C2SStream) -> None:
        """Answer each <r/> with the durable count once it covers the request."""
        h = self.durable_count()
        want = self.want_ack
        while want and want[0] <= h:
            want.popleft()
            if self.dead:
                continue
            h = max(h, self.sent_h)
            self.sent_h = h
            session.write_raw(_nonza("a", {"h": str(h % MOD)}))

    async def wait_durable(self) -> int:
        futs = [f for _, f in self.holds if not f.done()]
        if futs:
            await asyncio.wait(futs)
        return self.received

    # -- outbound -----------------------------------------------------------
    def on_send(self, session: C2SStream, stanza: Element) -> None:
        self.queue.append(stanza)
        mod = self.mod
        mod.server.hooks.fire_all("sm/queued", session, stanza)
        if len(self.queue) > mod.opts["max_ack_queue"]:
            asyncio.get_running_loop().call_soon(mod.overflow, session)
            return
        if not self.r_scheduled and not self.r_out:
            self.r_scheduled = True
            asyncio.get_running_loop().call_soon(self.request, session)

    def request(self, session: C2SStream) -> None:
        """Ask the client for an ack (one request outstanding at a time)."""
        self.r_scheduled = False
        if self.r_out or not self.queue or session.sm is not self or not self.connected(session):
            return
        self.r_out = True
        session.write_raw(_nonza("r"))
        timeout = self.mod.opts["ack_timeout"]
        if timeout != float("inf"):
            self.ack_timer = asyncio.get_running_loop().call_later(
                timeout, self.mod.ack_timed_out, session)

    @staticmethod
    def connected(session: C2SStream) -> bool:
        return bool(session.state == BOUND)

    def on_ack(self, session: C2SStream, h: int) -> None:
        n = (h - self.acked) % MOD
        if n > len(self.queue):
            raise _TooHigh(h, self.acked + len(self.queue))
        self.r_out = False
        if self.ack_timer is not None:
            self.ack_timer.cancel()
            self.ack_timer = None
        self.acked = h % MOD
        if n:
            done = [self.queue.popleft() for _ in range(n)]
            self.mod.server.hooks.fire_all("sm/acked", session, done)
        if self.queue and not self.r_scheduled:
            self.r_scheduled = True
            asyncio.get_running_loop().call_soon(self.request, session)

    def cancel_timers(self) -> None:
        for t in (self.ack_timer, self.resume_timer):
            if t is not None:
                t.cancel()
        self.ack_timer = self.resume_timer = None


class _TooHigh(Exception):
    def __init__(self, h: int, sent: int) -> None:
        super().__init__(h)
        self.h = h
        self.sent = sent


class StreamMgmt(Module):
    name = "mod_stream_mgmt"
    xeps = ("XEP-0198",)
    depends = (Journal,)
    options = {
        "resume_timeout": Option(300.0, v_timeout("second"),
                                 "how long a broken session waits to be resumed (0: never)"),
        "max_resume_timeout": Option(None, lambda v, p: v_timeout("second")(v, p),
                                     "longest resumption a client may ask for"),
        "resend_on_timeout": Option("if_offline", v_enum("true", "false", "if_offline"),
                                    "route unacked messages again when a session ends"),
        "queue_type": Option("ram", v_enum("ram", "file"), "accepted; the queue is in memory"),
        "max_ack_queue": Option(5000, v_pos_int_or_infinity,
                                "unacknowledged stanzas before the session is closed"),
        "ack_timeout": Option(60.0, v_timeout("second", allow_infinity=True),
                              "how long to wait for an answer to <r/>"),
        "cache_size": Option(1000, v_int(0), "accepted for ejabberd compatibility"),
        "cache_life_time": Option(3600.0, v_timeout("second"), "accepted for compatibility"),
        "durable_acks": Option(True, v_bool, "acknowledge messages only once they are stored"),
    }

    def setup(self) -> None:
        self.resumable: dict[str, C2SStream] = {}
        api = self.api
        api.add_stream_feature("post-auth", self._feature)
        for name, fn in (("enable", self._enable), ("r", self._r), ("a", self._a),
                         ("resume", self._resume)):
            api.add_stream_handler("{%s}%s" % (NS, name), fn)
        api.add_bind2_inline(NS, lambda session, el: self.enable(session, el)
                             if el.tag == "{%s}enable" % NS else None)
        api.hook("c2s/disconnected", self._disconnected, host_only=False)
        api.hook("c2s/ended", self._ended, host_only=False)
        self.release = ClusterRelease(self)   # sessions resumed on another cluster node

    def stop(self) -> None:
        for session in list(self.resumable.values()):
            session.ended("shutdown")

    def _mine(self, session: C2SStream) -> bool:
        return session.host == self.host

    def _feature(self, stream: Any) -> bytes:
        return _SM_FEATURE

    # -- enable -------------------------------------------------------------
    def _enable(self, session: C2SStream, el: Element) -> None:
        session.write_raw(self.enable(session, el))

    def enable(self, session: C2SStream, el: Element) -> bytes:
        """Turn stream management on for ``session``: the answer (``<enabled/>`` or
        ``<failed/>``), to write, or to put in a Bind2 ``<bound/>`` (XEP-0386)."""
        if session.state != BOUND or session.sm is not None:
            return _failed("unexpected-request", text="bind first, and enable once")
        attrs: dict[str, str] = {}
        resume_id = None
        timeout = self.opts["resume_timeout"]
        if el.attrs.get("resume") in ("true", "1") and timeout > 0:
            longest = self.opts["max_resume_timeout"] or timeout
            try:
                asked = int(el.attrs.get("max", ""))
                if asked > 0:
                    timeout = min(float(asked), longest)
            except ValueError:
                pass
            resume_id = new_resume_id(self.server.node)
            attrs = {"id": resume_id, "resume": "true", "max": str(int(timeout))}
        session.sm = SMState(self, resume_id, timeout)
        if resume_id is not None:
            self.resumable[resume_id] = session
        return _nonza("enabled", attrs)

    # -- acks ---------------------------------------------------------------
    def _r(self, session: C2SStream, el: Element) -> None:
        sm = session.sm
        if sm is None:
            session.write_raw(_failed("unexpected-request", text="stream management is off"))
            return
        sm.request_received(session)

    def _a(self, session: C2SStream, el: Element) -> None:
        sm = session.sm
        if sm is None:
            return
        try:
            sm.on_ack(session, int(el.attrs.get("h", "")))
        except ValueError:
            session.stream_error("undefined-condition", "h must be a number")
        except _TooHigh as e:
            self._too_high(session, e)

    def _too_high(self, session: C2SStream, e: _TooHigh) -> None:
        log.info("%s acknowledged %d stanzas, only %d were sent", session, e.h, e.sent)
        sm = session.sm
        assert sm is not None
        sm.dead = True
        err = Element("{%s}handled-count-too-high" % NS, {"h": str(e.h % MOD),
                                                            "send-count": str(e.sent % MOD)})
        session.write_raw(session.conn.framing.error(
            "undefined-condition", "you acknowledged more than was sent", serialize(err)))
        session.close()
        session.ended("sm error")

    def ack_timed_out(self, session: C2SStream) -> None:
        sm = session.sm
        if sm is None or not sm.r_out:
            return
        sm.ack_timer = None
        log.info("%s did not answer an ack request", session)
        session.conn.close()  # the session waits for resumption like any broken stream

    def overflow(self, session: C2SStream) -> None:
        sm = session.sm
        if sm is None or sm.dead:
            return
        sm.dead = True
        session.stream_error("policy-violation", "too many unacknowledged stanzas")
        session.ended("sm queue overflow")

    # -- resumption -----------------------------------------------------------
    def _disconnected(self, session: C2SStream) -> Optional[bool]:
        sm = session.sm
        if sm is None or sm.id is None or sm.dead or session.closing or not self._mine(session):
            return None
        sm.r_out = False
        if sm.ack_timer is not None:
            sm.ack_timer.cancel()
            sm.ack_timer = None
        # a module may keep it longer (mod_push_keepalive: sessions with push)
        timeout = self.server.hooks.fire("sm/pending-timeout", session) or sm.timeout
        self.keep_for(session, timeout)
        log.info("%s waits %ds for resumption", session, timeout)
        return True

    def keep_for(self, session: C2SStream, seconds: float) -> None:
        """(Re)start the time a session kept for resumption has left."""
        sm = session.sm
        if sm is None or sm.dead:
            return
        if sm.resume_timer is not None:
            sm.resume_timer.cancel()
        sm.resume_timer = asyncio.get_running_loop().call_later(
            seconds, self._resume_timed_out, session)

    def _resume_timed_out(self, session: C2SStream) -> None:
        sm = session.sm
        if sm is not None:
            sm.resume_timer = None
        if self.server.hooks.fire("sm/pending-timed-out", session):
            return  # kept a while more (mod_push_keepalive woke the client): keep_for was called
        session.ended("resumption timeout")

    async def _resume(self, new: C2SStream, el: Element) -> None:
        session, answer, then = await self.resume(new, el)
        session.write_raw(answer)
        then()

    async def resume(self, new: C2SStream, el: Element
                     ) -> tuple[C2SStream, bytes, Callable[[], None]]:
        """Resume the session ``el`` names on ``new``'s connection: (the session that
        goes on, the answer to write, what to do once it is written). The answer is
        ``<resumed/>`` or ``<failed/>``, written alone or inside SASL2's ``<success/>``
        (XEP-0388); what follows resends the unacknowledged stanzas."""
        def nothing() -> None:
            pass

        def no(condition: str, text: str) -> tuple[C2SStream, bytes, Callable[[], None]]:
            return new, _failed(condition, text=text), nothing
        previd = el.attrs.get("previd", "")
        old = self.resumable.get(previd)
        if new.state != BIND:
            return no("unexpected-request", "resume right after authenticating")
        node = self.release.elsewhere(previd) if old is None else None
        if node is not None and new.auth_jid is not None:
            await self.release.release(node, previd, new.auth_jid.bare)
            return no("item-not-found", "the session was on another node: what it had not "
                      "delivered goes to your new session")
        if old is None or old.sm is None or old.sm.dead or new.auth_jid is None or \
                new.auth_jid.bare != old.jid.bare:
            return no("item-not-found", "no such session to resume")
        try:
            h = int(el.attrs.get("h", ""))
        except ValueError:
            return no("bad-request", "h must be a number")
        sm = old.sm
        handled = await sm.wait_durable()
        if old.sm is not sm or sm.dead or self.resumable.get(previd) is not old:
            return no("item-not-found", "the session ended meanwhile")
        if new.state == CLOSED:   # the new connection went while we waited
            return no("item-not-found", "the connection closed")
        sm.cancel_timers()
        sm.r_out = sm.r_scheduled = False
        old.adopt(new)
        sm.sent_h = max(sm.sent_h, handled)
        answer = _nonza("resumed", {"previd": previd, "h": str(handled % MOD)})

        def then() -> None:
            try:
                sm.on_ack(old, h)
            except _TooHigh as e:
                self._too_high(old, e)
                return
            for stanza in list(sm.queue):
                old.write_raw(stanza.to_bytes())
            if sm.queue and not sm.r_scheduled:
                sm.r_scheduled = True
                asyncio.get_running_loop().call_soon(sm.request, old)
            log.info("%s resumed (client had %d, we had handled %d)", old, h, handled)
        return old, answer, then

    # -- the end --------------------------------------------------------------
    def _ended(self, session: C2SStream, reason: str) -> None:
        sm = session.sm
        if sm is None or not self._mine(session):
            return
        sm.cancel_timers()
        sm.dead = True
        if sm.id is not None and self.resumable.get(sm.id) is session:
            del self.resumable[sm.id]
        queue = list(sm.queue)
        sm.queue.clear()
        if queue:
            self.server.hooks.fire_all("sm/released", session, queue)
            self._resend(session, queue, reason)

    def _resend(self, session: C2SStream, stanzas: list[Element], reason: str) -> None:
        """What the client never acknowledged: route again, or tell the sender."""
        mode = self.opts["resend_on_timeout"]
        others = [s for s in self.server.sessions.resources(session.jid.bare)
                  if s is not session and s.available]
        resend = mode == "true" or (mode == "if_offline" and not others) or \
            reason == "shutdown" or \
            reason == RELEASED  # the other sessions end too / the client is back: route again
        router = self.server.router
        for el in stanzas:
            tag = el.tag
            type_ = el.attrs.get("type", "normal")
            if tag == MESSAGE and type_ not in ("error", "groupchat", "headline"):
                if resend:
                    router.route(el)
                else:
                    router.bounce(el, StanzaError("recipient-unavailable"), "message", type_)
            elif tag == IQ and type_ in ("get", "set") and "from" in el.attrs:
                router.deliver_reply(error_reply(el, StanzaError("service-unavailable")))
