"""Admin commands that act on every node of the cluster.

``xmppd ctl`` talks to one node (with ``--workers``, worker 0). A command registered
with a ``merge`` (``set_load``, ``set_loglevel``, the s2s counts) runs there and on
every other live node too (the question ``ctl``, :mod:`xmppd.cluster.ask`); the node
that was asked waits for their answers (at most :data:`TIMEOUT` seconds) and merges
them into its reply. A node that does not answer in time is named in the reply.
Other commands act on the node asked (most of them read the cluster's shared state).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..commands import CommandError

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger(__name__)

TIMEOUT = 5.0


class ClusterCommands:
    """Runs the merged commands on every node; answers the other nodes' requests."""

    def __init__(self, server: Server) -> None:
        self.server = server
        server.asking.answer("ctl", self._run)

    async def call(self, name: str, args: list[str]) -> Any:
        """Run ``name`` as ``xmppd ctl`` asked for it: here, and on every other node
        when the command merges the nodes' answers."""
        server = self.server
        cmd = server.commands.get(name)
        others = [n for n in server.sessions.backend.nodes() if n != server.node]
        if cmd.merge is None or not others:
            return await server.commands.call(name, args)
        mine = await server.commands.call(name, args)  # a bad request stops here
        replies = await server.asking.ask(others, "ctl", {"name": name, "args": args}, TIMEOUT)
        answers: dict[str, str] = {server.node: "" if mine is None else str(mine)}
        errors: dict[str, str] = {}
        for node in others:
            reply = replies.get(node)
            if not isinstance(reply, dict):
                errors[node] = "no answer"
            elif reply.get("ok"):
                answers[node] = str(reply.get("result", ""))
            else:
                errors[node] = str(reply.get("error", ""))
        out = cmd.merge(answers)
        if errors:
            lines = [out] if out else []
            lines += ["%s: %s" % (n, e) for n, e in sorted(errors.items())]
            raise CommandError("\n".join(lines))
        return out

    async def _run(self, arg: Any) -> dict[str, Any]:
        """Another node's request: run the command here."""
        name, args = str(arg["name"]), [str(a) for a in arg["args"]]
        try:
            result = await self.server.commands.call(name, args)
        except CommandError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:
            log.exception("command %s (asked by another node) failed", name)
            return {"ok": False, "error": "internal error: %s" % e}
        return {"ok": True, "result": "" if result is None else str(result)}
