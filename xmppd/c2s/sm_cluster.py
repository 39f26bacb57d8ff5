"""XEP-0198 resumption in a cluster: a client whose connection broke reconnects to
any node (with ``--workers``, the kernel picks the worker), and the session it
resumes may be held by another node.

Resumption ids name the node that holds the session (after a dot, base64url). A
node asked to resume a session of another node cannot take it over (the stream's
state lives in that process), so it asks that node to release the session at once
(cluster event ``sm-release``), waits for the answer (``sm-released``, at most
:data:`WAIT` seconds), and answers the client ``<failed/>``. Released, the session
ends as after a resumption timeout, except that its unacknowledged messages are
always routed again: they reach the client's new session, or offline storage,
now rather than when ``resume_timeout`` runs out.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import secrets
from typing import TYPE_CHECKING, Optional

from ..cluster.envelope import event
from ..jid import JID
from .stream import CLOSED

if TYPE_CHECKING:
    from .sm import StreamMgmt

log = logging.getLogger(__name__)

WAIT = 2.0
RELEASED = "resumed elsewhere"   # the reason a released session ends with
_ids = itertools.count(1)


def new_resume_id(node: str) -> str:
    tag = base64.urlsafe_b64encode(node.encode()).decode().rstrip("=")
    return "%s.%s" % (secrets.token_urlsafe(18), tag)


def node_of(previd: str) -> Optional[str]:
    """The node a resumption id names; None if it names none."""
    _, dot, tag = previd.partition(".")
    if not dot or not tag:
        return None
    try:
        return base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4)).decode()
    except (binascii.Error, ValueError):
        return None


class ClusterRelease:
    def __init__(self, mod: StreamMgmt) -> None:
        self.mod = mod
        self.server = mod.server
        self.waiting: dict[str, asyncio.Future[None]] = {}
        mod.api.hook("cluster/event/sm-release", self._release, host_only=False)
        mod.api.hook("cluster/event/sm-released", self._released, host_only=False)

    def elsewhere(self, previd: str) -> Optional[str]:
        """The live node, not this one, that holds the session ``previd``."""
        node = node_of(previd)
        if node is None or node == self.server.node or \
                node not in self.server.sessions.backend.nodes():
            return None
        return node

    async def release(self, node: str, previd: str, user: JID) -> None:
        """Ask ``node`` to end the session ``previd`` of ``user`` now; wait a little."""
        rid = "%s/%d" % (self.server.node, next(_ids))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = done
        body = json.dumps({"id": rid, "from": self.server.node, "previd": previd,
                           "user": str(user)})
        self.server.sessions.backend.send(node, event("sm-release", body))
        try:
            await asyncio.wait_for(done, WAIT)
        except TimeoutError:
            log.info("cluster: %s did not release session %s in time", node, previd)
        finally:
            del self.waiting[rid]

    def _release(self, body: str) -> None:
        try:
            req = json.loads(body)
            rid, origin, previd, user = (str(req["id"]), str(req["from"]), str(req["previd"]),
                                         str(req["user"]))
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed sm-release: %r", body[:200])
            return
        session = self.mod.resumable.get(previd)
        if session is not None and str(session.jid.bare) == user and session.state == CLOSED:
            log.info("%s resumed on %s: released here", session, origin)
            session.ended(RELEASED)
        self.server.sessions.backend.send(origin, event("sm-released", json.dumps({"id": rid})))

    def _released(self, body: str) -> None:
        try:
            rid = str(json.loads(body)["id"])
        except (ValueError, KeyError, TypeError):
            return
        done = self.waiting.get(rid)
        if done is not None and not done.done():
            done.set_result(None)


__all__ = ["RELEASED", "ClusterRelease", "new_resume_id", "node_of"]
