"""What a node does with payloads from other nodes and with cluster events."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..jid import JID, JIDError
from ..stanza import MESSAGE, StanzaError, StanzaEvent
from ..xmlstream import StreamError, parse_stanza
from .base import SessionEntry
from .envelope import MAX_HOPS, unpack

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger(__name__)


def attach(server: Server) -> None:
    """Wire the backend's callbacks (if it has them) to the server."""
    backend: Any = server.sessions.backend
    if not hasattr(backend, "on_conflict"):
        return

    def conflict(entry: SessionEntry) -> None:
        s = server.sessions.get_local(entry.jid)
        if s is not None:
            s.replaced()

    def node_down(node: str) -> None:
        server.hooks.fire_all("cluster/node-down", node)

    def nodes_changed() -> None:
        server.hooks.fire_all("cluster/nodes-changed", server)

    def send_failed(node: str, payload: bytes) -> None:
        env = unpack(payload)
        if env.kind == "K":
            return
        try:
            el = parse_stanza(env.body)
        except StreamError:
            return
        if node not in backend.nodes() and env.hops < MAX_HOPS:
            # the node is gone: route again here (offline storage takes it)
            _reroute(server, el, env.hops + 1)
            return
        frm = el.attrs.get("from")
        if frm and JID.parse(frm).domain in server.hosts:
            server.router.bounce(el, StanzaError("recipient-unavailable", "wait",
                                                 "the cluster could not hand the stanza over"),
                                 el.tag.split("}")[-1], el.attrs.get("type"))

    backend.on_conflict = conflict
    backend.on_node_down = node_down
    backend.on_nodes_changed = nodes_changed
    backend.on_send_failed = send_failed


def _reroute(server: Server, el: object, hops: int) -> None:
    backend: Any = server.sessions.backend
    prev = getattr(backend, "hops", 0)
    backend.hops = hops
    try:
        server.router.route(el)  # type: ignore[arg-type]
    finally:
        backend.hops = prev


def handle_payload(server: Server, payload: bytes) -> None:
    env = unpack(payload)
    if env.kind == "K":
        try:
            s = server.sessions.get_local(JID.parse(env.target))
        except JIDError:
            return
        if s is not None:
            reason = env.body.decode(errors="replace")
            if reason == "conflict":
                s.replaced()
            else:
                s.stream_error("policy-violation", reason)
                s.ended("kicked")
        return
    try:
        el = parse_stanza(env.body)
    except StreamError as e:
        log.warning("cluster: dropping an unreadable payload: %s", e)
        return
    if env.kind == "R":
        _reroute(server, el, env.hops + 1)
        return
    try:
        full = JID.parse(env.target)
    except JIDError:
        return
    session = server.sessions.get_local(full)
    if session is not None:
        session.send(el)
        return
    # the session moved or ended while the stanza travelled
    if env.hops < MAX_HOPS:
        _reroute(server, el, env.hops + 1)
    elif el.tag == MESSAGE:
        try:
            frm = JID.parse(el.attrs.get("from", ""))
        except JIDError:
            return
        ev = StanzaEvent(server, el, None, frm, full, "message",
                         el.attrs.get("type", "normal"), full.domain)
        server.hooks.fire("message/offline", ev)
