"""What a node does with payloads from other nodes and with cluster events."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Optional

from ..jid import JID, JIDError
from ..stanza import MESSAGE, StanzaError, StanzaEvent
from ..xmlstream import StreamError, parse_stanza
from .base import SessionEntry
from .envelope import MAX_HOPS, delivery, unpack

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

    def node_down(node: str) -> Optional[Awaitable[Any]]:
        waits = server.hooks.fire_all("cluster/node-down", node)
        return asyncio.gather(*waits, return_exceptions=True) if waits else None

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

    # a stanza about to cross -> the journal's callback for when Redis has it, or None
    backend.on_handing = functools.partial(server.hooks.fire, "cluster/handing")
    backend.on_conflict = conflict
    backend.on_node_down = node_down
    backend.on_nodes_changed = nodes_changed
    backend.on_send_failed = send_failed
    if hasattr(backend, "on_backlog"):
        backend.on_backlog = server.hold_reads


def _reroute(server: Server, el: object, hops: int) -> None:
    backend: Any = server.sessions.backend
    prev = getattr(backend, "hops", 0)
    backend.hops = hops
    try:
        server.router.route(el)  # type: ignore[arg-type]
    finally:
        backend.hops = prev


def handle_payloads(server: Server, payloads: list[bytes]) -> list[Awaitable[Any]]:
    """Handle payloads from another node (a read of its queue); the awaitables of those
    that are not done until they complete. Most are a stanza for a local client that
    takes it as it is (``D``): those are written here without a call each."""
    local = server.sessions.local_by_name
    waits = []
    for payload in payloads:
        try:
            d = delivery(payload)
            if d is not None:
                s = local.get(d[0])
                if s is not None and s.writes_as_is:
                    s.write_raw(payload[d[1]:])  # the body is what the session would write
                    continue
            wait = handle_payload(server, payload)
        except Exception:
            log.exception("cluster: handling a payload failed")
            continue
        if wait is not None:
            waits.append(wait)
    return waits


def handle_payload(server: Server, payload: bytes) -> Optional[Awaitable[Any]]:
    """Handle a payload from another node that :func:`handle_payloads` did not write
    as it is; an awaitable means: not done until it is."""
    env = unpack(payload)
    if env.kind == "E":
        return server.hooks.run_all(f"cluster/event/{env.target}",
                                    env.body.decode(errors="replace"))
    if env.kind == "K":
        try:
            s = server.sessions.get_local(JID.parse(env.target))
        except JIDError:
            return None
        if s is not None:
            reason = env.body.decode(errors="replace")
            if reason == "conflict":
                s.replaced()
            else:
                s.stream_error("policy-violation", reason)
                s.ended("kicked")
        return None
    if env.kind == "R":
        try:
            _reroute(server, parse_stanza(env.body), env.hops + 1)
        except StreamError as e:
            log.warning("cluster: dropping an unreadable payload: %s", e)
        return None
    try:
        full = JID.parse(env.target)
    except JIDError:
        return None
    # (a session that takes the body as it is got it in handle_payloads already)
    session = server.sessions.get_local(full)
    try:
        el = parse_stanza(env.body)
    except StreamError as e:
        log.warning("cluster: dropping an unreadable payload: %s", e)
        return None
    if session is not None:
        # the journal keeps a copy until the client acknowledges it (if it can)
        keep = server.hooks.fire_all("cluster/arrived", session, el)
        session.send(el)
        if keep:
            return asyncio.gather(*keep)
        return None
    # the session moved or ended while the stanza travelled
    if env.hops < MAX_HOPS:
        _reroute(server, el, env.hops + 1)
    elif el.tag == MESSAGE:
        try:
            frm = JID.parse(el.attrs.get("from", ""))
        except JIDError:
            return None
        ev = StanzaEvent(server, el, None, frm, full, "message",
                         el.attrs.get("type", "normal"), full.domain)
        server.hooks.fire("message/offline", ev)
    return None
