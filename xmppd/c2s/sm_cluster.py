"""XEP-0198 resumption in a cluster: a client whose connection broke reconnects to
any node (with ``--workers``, the kernel picks the worker), and the session it
resumes may be held by another node.

Resumption ids name the node that holds the session (after a dot, base64url). A
node asked to resume a session of another node cannot take it over (the stream's
state lives in that process), so it asks that node to release the session at once
(the question ``sm-release``, :mod:`xmppd.cluster.ask`), waits for the answer (at
most :data:`WAIT` seconds), and answers the client ``<failed/>``. Released, the session
ends as after a resumption timeout, except that its unacknowledged messages are
always routed again: they reach the client's new session, or offline storage,
now rather than when ``resume_timeout`` runs out.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from typing import TYPE_CHECKING, Any, Optional

from ..jid import JID

if TYPE_CHECKING:
    from .sm import StreamMgmt

log = logging.getLogger(__name__)

WAIT = 2.0
RELEASED = "resumed elsewhere"   # the reason a released session ends with


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
        mod.api.on_unload(self.server.asking.answer("sm-release", self._release))

    def elsewhere(self, previd: str) -> Optional[str]:
        """The live node, not this one, that holds the session ``previd``."""
        node = node_of(previd)
        if node is None or node == self.server.node or \
                node not in self.server.sessions.backend.nodes():
            return None
        return node

    async def release(self, node: str, previd: str, user: JID) -> None:
        """Ask ``node`` to end the session ``previd`` of ``user`` now; wait a little."""
        answers = await self.server.asking.ask([node], "sm-release",
                                               {"previd": previd, "user": str(user)}, WAIT)
        if node not in answers:
            log.info("cluster: %s did not release session %s in time", node, previd)

    def _release(self, arg: Any) -> bool:
        session = self.mod.resumable.get(str(arg["previd"]))
        if session is None or str(session.jid.bare) != str(arg["user"]) or not session.detached:
            return False
        log.info("%s resumed on another node: released here", session)
        session.ended(RELEASED)
        return True


__all__ = ["RELEASED", "ClusterRelease", "new_resume_id", "node_of"]
