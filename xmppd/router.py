"""The router: explicit stages from a received stanza to the hook that handles it.

1. ``from_client``: validate a client's stanza, stamp ``from`` (RFC 6120 8.1.2.1).
2. ``route``: classify the destination once (host / bare / full / self /
   component / remote).
3. Fire ``pre-<kind>/<dest>`` for stanzas from local clients, then, for a
   stanza addressed to a local user (bare or full JID), ``inbound/<dest>``
   (a filter such as blocking: a non-None answer ends routing), then
   ``<kind>/<dest>``; iq get/set go to ``iq-<type>/<dest>/<ns>:<name>``. An
   unhandled get/set answers ``service-unavailable``; an unhandled result or
   error is dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from .jid import JID, JIDError
from .stanza import (
    IQ,
    STANZA_TAGS,
    StanzaError,
    StanzaEvent,
    error_reply,
    iq_result,
    payload_key,
)
from .xml import Element
from .xmlstream import StreamError

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger(__name__)

MESSAGE_TYPES = {"chat", "error", "groupchat", "headline", "normal"}
PRESENCE_TYPES = {"unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed",
                  "probe", "error", "available"}
IQ_TYPES = {"get", "set", "result", "error"}

ComponentHandler = Callable[[StanzaEvent], Any]


class Router:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.hooks = server.hooks
        self.components: dict[str, ComponentHandler] = {}
        # external components on other cluster nodes: domain -> node (cluster/components)
        self.remote_components: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- stage 1: from a local client ---------------------------------------
    def from_client(self, session: Any, el: Element) -> None:
        """A stanza from an authenticated, bound client session."""
        kind = STANZA_TAGS.get(el.tag)
        if kind is None:
            raise StreamError("unsupported-stanza-type")
        attrs = el.attrs
        frm = attrs.get("from")
        jid: JID = session.jid
        if frm is not None and frm != session.jid_str:
            try:
                claimed = JID.parse(frm)
            except JIDError:
                raise StreamError("invalid-from") from None
            if claimed != jid and claimed != jid.bare:
                raise StreamError("invalid-from")
        attrs["from"] = session.jid_str
        type_ = attrs.get("type")
        to = attrs.get("to")
        try:
            to_jid = JID.parse(to) if to else None
        except JIDError:
            self.bounce(el, StanzaError("jid-malformed"), kind, type_, session)
            return
        if kind == "iq":
            if type_ not in IQ_TYPES or "id" not in attrs:
                self.bounce(el, StanzaError("bad-request", text="iq needs an id and a valid type"),
                             kind, "get", session)
                return
            if type_ in ("get", "set") and sum(1 for _ in el.elements()) != 1:
                self.bounce(el, StanzaError("bad-request", text="iq get/set needs one payload"),
                             kind, type_, session)
                return
        elif kind == "message":
            if type_ is None or type_ not in MESSAGE_TYPES:
                type_ = "normal"
        else:
            if type_ is None:
                type_ = "available"
            elif type_ not in PRESENCE_TYPES or type_ == "available":
                self.bounce(el, StanzaError("bad-request", text="unknown presence type"),
                             kind, type_, session)
                return
        assert type_ is not None
        if to_jid is None:
            if kind == "message":
                dest, to_jid = "bare", jid.bare
            else:
                dest, to_jid = "self", jid.bare
        else:
            dest = self.classify(to_jid)
            if dest == "bare" and kind == "iq" and to_jid == jid.bare:
                dest = "self"
        ev = StanzaEvent(self.server, el, session, jid, to_jid, kind, type_, to_jid.domain)
        if self.hooks.fire(f"pre-{kind}/{dest}", ev) is not None:
            return
        self._dispatch(ev, dest)

    # -- stage 2: any stanza with from and to --------------------------------
    def classify(self, to: JID) -> str:
        domain = to.domain
        if domain in self.server.hosts:
            if to.local is None:
                return "host"
            return "bare" if to.resource is None else "full"
        if domain in self.components or domain in self.remote_components:
            return "component"
        return "remote"

    def route(self, el: Element, origin: Any = None) -> None:
        """Route a stanza that already carries valid ``from`` (and usually ``to``)."""
        kind = STANZA_TAGS.get(el.tag)
        if kind is None:
            log.warning("not routing non-stanza %r", el)
            return
        attrs = el.attrs
        try:
            frm = JID.parse(attrs["from"])
            to_s = attrs.get("to")
            to = JID.parse(to_s) if to_s else frm.bare
        except (KeyError, JIDError):
            log.warning("dropping stanza with bad addresses: %s", el)
            return
        type_ = attrs.get("type") or ("normal" if kind == "message" else
                                      "available" if kind == "presence" else "get")
        dest = self.classify(to)
        ev = StanzaEvent(self.server, el, origin, frm, to, kind, type_, to.domain)
        self._dispatch(ev, dest)

    def _dispatch(self, ev: StanzaEvent, dest: str) -> None:
        if dest == "component":
            handler = self.components.get(ev.to_jid.domain)
            if handler is not None:
                self._guard(ev, handler)
            elif not self.server.hand_to(self.remote_components[ev.to_jid.domain], ev.stanza):
                ev.error("remote-server-not-found")  # the nodes' views disagree for now
            return
        if dest == "remote":
            if self.hooks.fire("route/remote", ev) is None:
                ev.error("remote-server-not-found")
            return
        if (dest == "bare" or dest == "full") and \
                self._guard(ev, None, f"inbound/{dest}") is not None:
            return
        kind = ev.kind
        if kind == "iq":
            type_ = ev.type
            if type_ == "get" or type_ == "set":
                key = payload_key(ev.stanza)
                res = self._guard(ev, None, f"iq-{type_}/{dest}/{key}")
                if res is None:
                    res = self._guard(ev, None, f"iq/{dest}")
                if res is None:
                    ev.error("service-unavailable")
                return
            self._guard(ev, None, f"iq-{type_}/{dest}") or self._guard(ev, None, f"iq/{dest}")
            return
        self._guard(ev, None, f"{kind}/{dest}")

    def _guard(self, ev: StanzaEvent, handler: Optional[ComponentHandler],
               event: str = "") -> Any:
        """Run a handler or hook event; a StanzaError becomes an error reply."""
        try:
            if handler is not None:
                return handler(ev)
            return self.hooks.fire(event, ev)
        except StanzaError as e:
            self.bounce(ev.stanza, e, ev.kind, ev.type, ev.origin)
            return True
        except StreamError:
            raise
        except Exception:
            log.exception("error handling %r", ev)
            self.bounce(ev.stanza, StanzaError("internal-server-error"), ev.kind, ev.type,
                         ev.origin)
            return True

    def bounce(self, el: Element, err: StanzaError, kind: str, type_: Optional[str],
               origin: Any = None) -> None:
        """Answer ``el`` with an error (never an error to an error or a result)."""
        if type_ == "error" or (kind == "iq" and type_ == "result"):
            return
        reply = error_reply(el, err)
        to = el.attrs.get("to")
        if to is None:
            reply.attrs.pop("from", None)  # about the user's own account
        else:
            try:
                JID.parse(to)
            except JIDError:
                reply.attrs["from"] = getattr(origin, "host", "") or next(iter(self.server.hosts))
        if _back_to_origin(origin, reply):
            return
        self.deliver_reply(reply)

    def deliver_reply(self, reply: Element) -> None:
        to = reply.attrs.get("to")
        if not to:
            return
        if "from" not in reply.attrs:
            try:
                reply.attrs["from"] = JID.parse(to).domain
            except JIDError:
                return
        self.route(reply)

    # -- iq answering -------------------------------------------------------
    def answer_iq(self, ev: StanzaEvent, handler: Callable[[StanzaEvent], Any]) -> bool:
        """Run an iq handler that returns a payload (or awaitable of one)."""
        try:
            result = handler(ev)
        except StanzaError as e:
            self.bounce(ev.stanza, e, "iq", ev.type, ev.origin)
            return True
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._answer_later(ev, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True
        self._send_result(ev, result)
        return True

    async def _answer_later(self, ev: StanzaEvent, aw: Any) -> None:
        try:
            result = await aw
        except StanzaError as e:
            self.bounce(ev.stanza, e, "iq", ev.type, ev.origin)
            return
        except Exception:
            log.exception("iq handler failed for %r", ev)
            self.bounce(ev.stanza, StanzaError("internal-server-error"), "iq", ev.type,
                         ev.origin)
            return
        self._send_result(ev, result)

    def _send_result(self, ev: StanzaEvent, result: Any) -> None:
        if result is True:
            return  # the handler answered by itself
        payload = result if isinstance(result, Element) else None
        reply = iq_result(ev.stanza, payload)
        if "from" not in reply.attrs:
            reply.attrs["from"] = str(ev.to_jid) if ev.to_jid else ev.host
        origin = ev.origin
        if origin is not None and hasattr(origin, "send"):
            if ev.stanza.attrs.get("to") is None:
                # answered on the user's own behalf: straight back to the session
                reply.attrs.pop("from", None)
                origin.send(reply)
                return
            if ev.to_jid is not None and ev.to_jid.local is None and \
                    _back_to_origin(origin, reply):
                # a service (the server, a component) answers a local session's own
                # request (a ping, disco): no routing needed to find the session
                return
        self.route(reply)


def _back_to_origin(origin: Any, reply: Element) -> bool:
    """Send ``reply`` straight to the local session it answers, if it is addressed there."""
    if origin is not None and hasattr(origin, "send") and \
            getattr(origin, "jid_str", None) == reply.attrs.get("to"):
        origin.send(reply)
        return True
    return False


def is_iq(el: Element) -> bool:
    return el.tag == IQ
