"""Server-to-server streams (federation): RFC 6120, XEP-0220 dialback,
XEP-0178 SASL EXTERNAL, an outgoing pool fed by the router's ``route/remote``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..commands import all_lines, total
from .manager import S2SManager

if TYPE_CHECKING:
    from ..server import Server


def install(server: Server) -> S2SManager:
    """Create the manager, plug it into the router and the admin commands."""
    manager = S2SManager(server)
    server.hooks.add("route/remote", manager.route, -100)
    server.hooks.add("server/started", lambda _s: manager.start())
    server.hooks.add("server/stopping", lambda _s: manager.stop())
    cmds = server.commands

    def incoming_number() -> str:
        return str(sum(1 for s in manager.incoming if s.authed))

    def outgoing_number() -> str:
        return str(sum(1 for s in manager.outgoing.values() if s.method))

    def connections() -> str:
        lines = []
        for c in manager.connections():
            lines.append("%s %s %s %s %s %s" % (
                c["direction"], ",".join(c["local"]) or "-", ",".join(c["remote"]) or "-",
                "tls" if c["tls"] else "plain", ",".join(c["auth"]) or c.get("state", "-"),
                c["ip"] or "-"))
        return "\n".join(lines)

    cmds.register("incoming_s2s_number", incoming_number,
                  "incoming_s2s_number: authenticated incoming server connections",
                  merge=total)
    cmds.register("outgoing_s2s_number", outgoing_number,
                  "outgoing_s2s_number: authenticated outgoing server connections",
                  merge=total)
    cmds.register("s2s_connections", connections,
                  "s2s_connections: server connections: direction, local and remote "
                  "domains, tls or plain, authentication (dialback, external), address",
                  merge=all_lines)
    return manager
