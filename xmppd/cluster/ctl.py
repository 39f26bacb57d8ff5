"""Admin commands that act on every node of the cluster.

``xmppd ctl`` talks to one node (with ``--workers``, worker 0). A command registered
with a ``merge`` (``set_load``, ``set_loglevel``, the s2s counts) runs there and, through
cluster events, on every other live node too; the node that was asked waits for their
answers (at most :data:`TIMEOUT` seconds) and merges them into its reply. A node that
does not answer in time is named in the reply. Other commands act on the node asked,
as before (most of them read the cluster's shared state already).

- event ``ctl``: ``{"id", "from", "name", "args"}``, run the command here and answer;
- event ``ctl-reply``: ``{"id", "node", "ok", "result" | "error"}``, to the asking node.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import TYPE_CHECKING, Any

from ..commands import CommandError
from .envelope import event

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger(__name__)

TIMEOUT = 5.0
_ids = itertools.count(1)


class ClusterCommands:
    """Runs the merged commands on every node; answers the other nodes' requests."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # request id -> (all answered, answers by node, the nodes asked)
        self.waiting: dict[str, tuple[asyncio.Future[None], dict[str, Any], list[str]]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        server.hooks.add("cluster/event/ctl", self._request)
        server.hooks.add("cluster/event/ctl-reply", self._reply)

    async def call(self, name: str, args: list[str]) -> Any:
        """Run ``name`` as ``xmppd ctl`` asked for it: here, and on every other node
        when the command merges the nodes' answers."""
        server = self.server
        cmd = server.commands.get(name)
        others = [n for n in server.sessions.backend.nodes() if n != server.node]
        if cmd.merge is None or not others:
            return await server.commands.call(name, args)
        mine = await server.commands.call(name, args)  # a bad request stops here
        rid = "%s/%d" % (server.node, next(_ids))
        answers: dict[str, Any] = {server.node: "" if mine is None else str(mine)}
        done = asyncio.get_running_loop().create_future()
        self.waiting[rid] = (done, answers, others)
        body = json.dumps({"id": rid, "from": server.node, "name": name, "args": args})
        for node in others:
            server.sessions.backend.send(node, event("ctl", body))
        try:
            await asyncio.wait_for(done, TIMEOUT)
        except TimeoutError:
            pass
        finally:
            del self.waiting[rid]
        for node in others:
            answers.setdefault(node, CommandError("no answer"))
        errors = {n: a for n, a in answers.items() if isinstance(a, CommandError)}
        out = cmd.merge({n: a for n, a in answers.items() if not isinstance(a, CommandError)})
        if errors:
            lines = [out] if out else []
            lines += ["%s: %s" % (n, e) for n, e in sorted(errors.items())]
            raise CommandError("\n".join(lines))
        return out

    def _request(self, body: str) -> None:
        try:
            req = json.loads(body)
            rid, origin, name = str(req["id"]), str(req["from"]), str(req["name"])
            args = [str(a) for a in req["args"]]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed admin request: %r", body[:200])
            return
        task = asyncio.ensure_future(self._run(rid, origin, name, args))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, rid: str, origin: str, name: str, args: list[str]) -> None:
        answer: dict[str, Any] = {"id": rid, "node": self.server.node}
        try:
            result = await self.server.commands.call(name, args)
            answer.update(ok=True, result="" if result is None else str(result))
        except CommandError as e:
            answer.update(ok=False, error=str(e))
        except Exception as e:
            log.exception("command %s (asked by %s) failed", name, origin)
            answer.update(ok=False, error="internal error: %s" % e)
        self.server.sessions.backend.send(origin, event("ctl-reply", json.dumps(answer)))

    def _reply(self, body: str) -> None:
        try:
            rep = json.loads(body)
            waiting = self.waiting.get(str(rep["id"]))
            node = str(rep["node"])
            answer: Any = (str(rep["result"]) if rep["ok"]
                           else CommandError(str(rep["error"])))
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed admin reply: %r", body[:200])
            return
        if waiting is None:
            return  # too late: the reply went out without it
        done, answers, asked = waiting
        answers[node] = answer
        if all(n in answers for n in asked) and not done.done():
            done.set_result(None)
