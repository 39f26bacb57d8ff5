"""The cluster seam: a handful of functions that every backend provides.

A backend knows which node holds which session (beyond this process) and
carries stanzas to other nodes. Lookups are synchronous reads of a local view
so that routing never waits on the network; changes are published
asynchronously. The in-process backend (:mod:`xmppd.cluster.memory`) is the
default; a Redis backend serves several processes or machines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from ..jid import JID


@dataclass
class SessionEntry:
    """A session as the cluster sees it."""

    jid: JID
    node: str
    priority: int = 0
    available: bool = False
    since: float = 0.0  # when the session was bound (the newer login wins a conflict)
    flags: frozenset[str] = frozenset()  # what the session enabled (e.g. "carbons")
    # the session registry's view of a remote entry (its RemoteSession), made on first
    # use: entries of other nodes are replaced when they change, never changed in place
    view: Any = field(default=None, repr=False, compare=False)


class ClusterBackend(Protocol):
    node: str
    # the local view of other nodes' sessions: bare JID -> full JID -> entry (read-only;
    # what remote_sessions() returns, for the registry's lookup on every stanza)
    remote_by_bare: Mapping[JID, Mapping[JID, SessionEntry]]

    async def start(self, deliver: Callable[[list[bytes]], Any]) -> None:
        """Start; ``deliver(payloads)`` receives payloads sent to this node, several at
        a time (it may return awaitables: the payloads count as handled when they
        complete)."""

    async def stop(self) -> None: ...

    def publish(self, entry: SessionEntry) -> None:
        """A local session was bound or changed priority/availability."""

    def unpublish(self, jid: JID) -> None:
        """A local session ended."""

    def remote_sessions(self, bare: JID) -> list[SessionEntry]:
        """Sessions of ``bare`` on other nodes (local view, no I/O)."""

    def remote_session(self, full: JID) -> Optional[SessionEntry]: ...

    def send(self, node: str, payload: bytes) -> Any:
        """Hand ``payload`` to ``node``; may return a future of whether it was taken."""

    def nodes(self) -> list[str]:
        """Live nodes, this one included."""

    async def claim(self, key: str, seconds: float) -> bool:
        """Take ``key`` for ``seconds`` (infinity: for good) on the whole cluster: False
        if a node holds it already (a rate counted once for all nodes and workers)."""

    async def release(self, key: str) -> None:
        """Give ``key`` back before its time."""
