"""The session registry: which session holds a full JID, locally or on a node.

Local sessions live in two dictionaries (full JID, bare JID). Sessions on
other nodes come from the cluster backend's local view; the router treats
both alike through :class:`Session`.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from .cluster.base import ClusterBackend, SessionEntry
from .cluster.envelope import deliver, header, kick
from .jid import JID
from .xml import Element


class Session(Protocol):
    jid: JID
    priority: int
    available: bool
    node: str
    gone: bool  # closed, nothing keeps what is sent: treat as ended

    def send(self, stanza: Element) -> None: ...


class RemoteSession:
    """A session on another node; stanzas go through the cluster backend.

    One per entry of the backend's view (``entry.view``, made by
    :meth:`SessionRegistry.remote`): an entry that changes is replaced, and with it
    its RemoteSession."""

    __slots__ = ("entry", "backend", "jid", "priority", "available", "node", "head")

    def __init__(self, entry: SessionEntry, backend: ClusterBackend) -> None:
        self.entry = entry
        self.backend = backend
        self.jid = entry.jid
        self.priority = entry.priority
        self.available = entry.available
        self.node = entry.node
        self.head = header(entry.jid)  # a first hop's envelope header, made once

    @property
    def flags(self) -> frozenset[str]:
        return self.entry.flags

    gone = False  # the other node decides (it bounces or stores what it cannot write)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteSession) and other.jid == self.jid

    def __hash__(self) -> int:
        return hash(self.jid)

    def send(self, stanza: Element) -> None:
        backend: Any = self.backend
        # the journal keeps its copy until the other node has the stanza: then its
        # callback is told whether the node's queue took it
        handing = backend.on_handing
        hops = backend.hops
        backend.send(self.node,
                     deliver(self.jid, stanza, hops) if hops else self.head + stanza.to_bytes(),
                     handing(stanza) if handing is not None else None)


def flags_of(session: Any) -> frozenset[str]:
    """What a session (local or on another node) enabled, e.g. ``carbons``."""
    if isinstance(session, RemoteSession):
        return session.entry.flags
    data = getattr(session, "data", None)
    return frozenset(data.get("flags", ())) if data else frozenset()


class SessionRegistry:
    def __init__(self, backend: ClusterBackend) -> None:
        self.backend = backend
        self._remote = backend.remote_by_bare
        self.local: dict[JID, Any] = {}
        # the same by the full JID's text in UTF-8: hand-overs from other nodes name it so
        self.local_by_name: dict[bytes, Any] = {}
        self.by_bare: dict[JID, list[Any]] = {}

    @property
    def node(self) -> str:
        return self.backend.node

    def add(self, session: Any) -> Any:
        """Register a bound session; return the local session it replaces."""
        jid = session.jid
        old = self.local.get(jid)
        if old is not None:
            self.remove(old)
        remote = self.backend.remote_session(jid)
        if remote is not None:
            # the same full JID on another node: the newer login wins
            self.kick_remote(jid, remote.node, "conflict")
        self.local[jid] = session
        self.local_by_name[str(jid).encode()] = session
        self.by_bare.setdefault(jid.bare, []).append(session)
        self.backend.publish(SessionEntry(jid, self.node, session.priority, session.available,
                                          flags=flags_of(session)))
        return old

    def remove(self, session: Any) -> bool:
        jid = session.jid
        if self.local.get(jid) is not session:
            return False
        del self.local[jid]
        del self.local_by_name[str(jid).encode()]
        lst = self.by_bare.get(jid.bare)
        if lst is not None:
            lst.remove(session)
            if not lst:
                del self.by_bare[jid.bare]
        self.backend.unpublish(jid)
        return True

    def changed(self, session: Any) -> None:
        """Priority or availability changed."""
        jid, prio, avail = session.jid, session.priority, session.available
        if self.local.get(jid) is session:
            self.backend.publish(SessionEntry(jid, self.node, prio, avail,
                                              flags=flags_of(session)))

    def kick_remote(self, jid: JID, node: str, reason: str) -> None:
        """End the session ``jid`` on cluster node ``node`` (``conflict``: replaced)."""
        self.backend.send(node, kick(jid, reason))

    def set_flag(self, session: Any, flag: str, on: bool = True) -> None:
        """Turn a session flag on or off, and tell the other nodes."""
        flags = session.data.setdefault("flags", set())
        if (flag in flags) == on:
            return
        if on:
            flags.add(flag)
        else:
            flags.discard(flag)
        self.changed(session)

    def set_flags(self, session: Any, prefix: str, flags: set[str]) -> set[str]:
        """Make ``flags`` the session's flags that start with ``prefix`` (the others
        stay), and tell the other nodes once; returns the flags that were there."""
        have = session.data.setdefault("flags", set())
        old = {f for f in have if f.startswith(prefix)}
        if old != flags:
            have -= old
            have |= flags
            self.changed(session)
        return old

    def get(self, full: JID) -> Optional[Any]:
        s = self.local.get(full)
        if s is not None:
            return s
        entry = self.backend.remote_session(full)
        if entry is not None:
            return entry.view or self.remote(entry)
        return None

    def get_local(self, full: JID) -> Optional[Any]:
        return self.local.get(full)

    def resources(self, bare: JID) -> list[Any]:
        """All sessions of a bare JID, local first."""
        local = self.by_bare.get(bare)
        remote = self._remote.get(bare)
        if not remote:
            return list(local) if local else []
        out: list[Any] = list(local) if local else []
        out.extend([e.view or self.remote(e) for e in remote.values()])
        return out

    def remote(self, entry: SessionEntry) -> RemoteSession:
        """The session of another node's ``entry`` (made once per entry)."""
        view = entry.view = RemoteSession(entry, self.backend)
        return view

    def local_resources(self, bare: JID) -> list[Any]:
        return list(self.by_bare.get(bare, ()))

    def count(self) -> int:
        return len(self.local)

    def all_local(self) -> list[Any]:
        return list(self.local.values())

    def all_remote(self) -> list[SessionEntry]:
        """Sessions on other nodes, as this node's view of the directory has them."""
        fn = getattr(self.backend, "all_remote", None)
        return list(fn()) if fn is not None else []

    def online(self, host: Optional[str] = None) -> list[JID]:
        """The full JIDs of every session of the cluster (of ``host`` only, if given)."""
        jids = [s.jid for s in self.local.values()] + [e.jid for e in self.all_remote()]
        return [j for j in jids if host is None or j.domain == host]
