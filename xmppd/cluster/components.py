"""External components in a cluster: which node serves which component's domain.

A component (XEP-0114) connects to one node (with ``--workers``, to whichever worker
the kernel picked). That node tells the others with the cluster event ``component``
(``up`` or ``down``, the domain, the node, and when it connected); every node keeps a
table domain -> node in the router (``Router.remote_components``) and hands stanzas for
that domain to the node that serves it (an ``R`` envelope), so clients of every node
reach the component, and stanzas from it reach users on every node as any routed
stanza does.

When the nodes change (one joins, stalls or dies), each node drops the entries of
nodes that are gone and tells the others its own components again, so a node that
joins learns them. Two connections for one domain on two nodes at once (both passed
the check before either heard of the other): the older one stays, and the node of the
newer one closes it with ``conflict``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger(__name__)

EVENT = "component"


class ComponentDirectory:
    """This node's external components, and the other nodes' (``Server.component_directory``:
    every node has one, with or without a component listener of its own)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # domain -> (connected at, close the connection with conflict)
        self.local: dict[str, tuple[float, Callable[[], None]]] = {}
        self.since: dict[str, float] = {}  # other nodes' domains -> connected at
        hooks = server.hooks
        hooks.add(f"cluster/event/{EVENT}", self._event)
        hooks.add("cluster/nodes-changed", self._nodes_changed)

    def served(self, domain: str) -> bool:
        """Whether ``domain`` is served already: by this node (a host, a module or a
        component) or by a component on another node."""
        router = self.server.router
        return domain in self.server.hosts or domain in router.components or \
            domain in router.remote_components

    def up(self, domain: str, since: float, conflict: Callable[[], None]) -> None:
        self.local[domain] = (since, conflict)
        self._tell("up", domain, since)

    def down(self, domain: str) -> None:
        if self.local.pop(domain, None) is not None:
            self._tell("down", domain, 0.0)

    def _tell(self, op: str, domain: str, since: float) -> None:
        self.server.cluster_event(EVENT, f"{op}\t{domain}\t{self.server.node}\t{since!r}")

    def _event(self, arg: str) -> None:
        try:
            op, domain, node, since_s = arg.split("\t")
            since = float(since_s)
        except ValueError:
            log.warning("cluster: a component event that does not parse: %r", arg)
            return
        remote = self.server.router.remote_components
        if op == "down":
            if remote.get(domain) == node:
                del remote[domain]
                self.since.pop(domain, None)
            return
        mine = self.local.get(domain)
        if mine is not None:
            if (mine[0], self.server.node) < (since, node):
                return  # ours is older: the other node closes its own
            log.info("component %s: an older connection on %s wins", domain, node)
            del self.local[domain]
            mine[1]()
        other = remote.get(domain)
        if other is not None and other != node and \
                (self.since.get(domain, 0.0), other) < (since, node):
            return  # two other nodes: the older connection stays
        remote[domain] = node
        self.since[domain] = since

    def _nodes_changed(self, _server: Any) -> None:
        alive = set(self.server.sessions.backend.nodes())
        remote = self.server.router.remote_components
        for domain in [d for d, n in remote.items() if n not in alive]:
            del remote[domain]
            self.since.pop(domain, None)
        for domain, (since, _close) in self.local.items():
            self._tell("up", domain, since)
