"""Questions from one cluster node to others, and their answers, over cluster events
(:func:`xmppd.cluster.envelope.event`; ``Server.cluster_event`` tells without asking).

A node answers a question with the function registered for it (:meth:`Asking.answer`),
which returns a JSON value or an awaitable of one; the asking node waits for the
answers of the nodes it asked, at most ``timeout`` seconds, and gets those that came.

- event ``ask:<question>``: ``{"id", "from", "arg"}``;
- event ``answer``: ``{"id", "node", "value"}``, to the asking node.

Used by the admin commands that act on every node (:mod:`xmppd.cluster.ctl`) and by
stream management to release a session another node resumes (``xmppd/c2s/sm_cluster.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .envelope import event

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class Asking:
    def __init__(self, server: Server) -> None:
        self.server = server
        # question id -> (all answered, answers by node, the nodes asked)
        self.waiting: dict[str, tuple[asyncio.Future[None], dict[str, Any], set[str]]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        server.hooks.add("cluster/event/answer", self._answered)

    def answer(self, question: str, fn: Callable[[Any], Any]) -> Callable[[], None]:
        """Answer ``question`` from other nodes with ``fn(arg)``; returns the remover."""
        return self.server.hooks.add("cluster/event/ask:" + question,
                                     lambda body: self._asked(question, fn, body))

    async def ask(self, nodes: Iterable[str], question: str, arg: Any,
                  timeout: float) -> dict[str, Any]:
        """Ask ``nodes``; their answers by node (a node missing did not answer in time)."""
        server = self.server
        asked = set(nodes)
        answers: dict[str, Any] = {}
        if not asked:
            return answers
        qid = "%s/%d" % (server.node, next(_ids))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[qid] = (done, answers, asked)
        body = json.dumps({"id": qid, "from": server.node, "arg": arg})
        for node in asked:
            server.sessions.backend.send(node, event("ask:" + question, body))
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            pass
        finally:
            del self.waiting[qid]
        return answers

    def _asked(self, question: str, fn: Callable[[Any], Any], body: str) -> None:
        try:
            req = json.loads(body)
            qid, origin, arg = str(req["id"]), str(req["from"]), req["arg"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed question %s: %r", question, body[:200])
            return
        task = asyncio.ensure_future(self._reply(qid, origin, fn, arg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, qid: str, origin: str, fn: Callable[[Any], Any], arg: Any) -> None:
        try:
            value = fn(arg)
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            log.exception("cluster: answering %s from %s failed", qid, origin)
            return   # the asker counts this node among those that did not answer
        self.server.sessions.backend.send(origin, event("answer", json.dumps(
            {"id": qid, "node": self.server.node, "value": value})))

    def _answered(self, body: str) -> None:
        try:
            rep = json.loads(body)
            waiting = self.waiting.get(str(rep["id"]))
            node, value = str(rep["node"]), rep["value"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed answer: %r", body[:200])
            return
        if waiting is None:
            return  # too late: the asker went on without it
        done, answers, asked = waiting
        answers[node] = value
        if asked.issubset(answers) and not done.done():
            done.set_result(None)
