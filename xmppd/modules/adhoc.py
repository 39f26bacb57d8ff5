"""XEP-0050 ad-hoc commands at the server's JID: the protocol, and the commands of
other modules (``mod_configure``: XEP-0133 service administration).

A command is a function of the requester and the submitted form's values (None on
the first step) that answers with a form to fill in (:class:`Ask`) or its outcome
(:class:`Done`). The module lists the commands a requester may run (disco#items of
the ``commands`` node), describes each (disco#info of its node), keeps the sessions
of multi-step commands and answers ``execute``, ``complete`` and ``cancel``.
mod_adhoc itself offers ``ping``, to everyone.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Optional, Union

from ..confval import v_bool
from ..dataforms import DATA, X, add_field, form_values
from ..jid import JID
from ..moduleapi import Module, Option, hook, iq_handler
from ..stanza import StanzaError, StanzaEvent
from ..xml import Element

NS = "http://jabber.org/protocol/commands"
COMMAND = "{%s}command" % NS
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
SESSION_TIMEOUT = 600.0  # seconds a multi-step command waits for its next step
MAX_SESSIONS = 1000      # on the host; the oldest go first


@dataclass
class Ask:
    """The next step: a form (``<x type='form'/>``) for the requester to fill in."""
    form: Element


@dataclass
class Done:
    """The outcome: a note (``info``, ``warn`` or ``error``) and/or a result form."""
    note: str = ""
    note_type: str = "info"
    form: Optional[Element] = None


Step = Union[Ask, Done]
Values = Optional[dict[str, list[str]]]


@dataclass
class Command:
    node: str
    name: str
    allowed: Callable[[JID], bool]
    run: Callable[[JID, Values], Awaitable[Step]]


@dataclass
class _Session:
    node: str
    owner: JID
    since: float = field(default_factory=time.monotonic)


def form(title: str, instructions: str = "", form_type: str = "",
         type_: str = "form") -> Element:
    """An empty data form, with its FORM_TYPE when given."""
    x = Element(X, {"type": type_})
    x.add("{%s}title" % DATA, None, title)
    if instructions:
        x.add("{%s}instructions" % DATA, None, instructions)
    if form_type:
        add_field(x, "FORM_TYPE", "hidden", "", [form_type])
    return x


class AdHoc(Module):
    name = "mod_adhoc"
    features = (NS,)
    xeps = ("XEP-0050",)
    options = {
        "report_commands_node": Option(False, v_bool, "accepted; the commands are always listed"),
    }

    def setup(self) -> None:
        self.commands: dict[str, Command] = {}
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self.add(Command("ping", "Ping", lambda jid: True, self._ping))

    def add(self, command: Command) -> None:
        """Offer ``command`` (another module's: it removes it with :meth:`remove`)."""
        self.commands[command.node] = command

    def remove(self, node: str) -> None:
        self.commands.pop(node, None)

    async def _ping(self, requester: JID, values: Values) -> Step:
        return Done("Pong")

    # -- discovery -------------------------------------------------------------------
    @hook("disco-items-node/host")
    def _items(self, ev: StanzaEvent, node: str, query: Element) -> Optional[bool]:
        if node != NS:
            return None
        for cmd in sorted(self.commands.values(), key=lambda c: c.name):
            if cmd.allowed(ev.from_jid):
                query.add("{%s}item" % ITEMS, {"jid": self.host, "node": cmd.node,
                                               "name": cmd.name})
        return True

    @hook("disco-info-node/host")
    def _info(self, ev: StanzaEvent, node: str, query: Element) -> Optional[bool]:
        if node == NS:
            query.add("{%s}identity" % INFO, {"category": "automation", "type": "command-list",
                                              "name": "Commands"})
            return True
        cmd = self.commands.get(node)
        if cmd is None or not cmd.allowed(ev.from_jid):
            return None
        query.add("{%s}identity" % INFO, {"category": "automation", "type": "command-node",
                                          "name": cmd.name})
        for var in (NS, DATA):
            query.add("{%s}feature" % INFO, {"var": var})
        return True

    # -- execution ---------------------------------------------------------------------
    @iq_handler("set", NS, "command")
    async def _command(self, ev: StanzaEvent) -> Element:
        el = ev.stanza.first_child()
        assert el is not None
        node = el.attrs.get("node", "")
        action = el.attrs.get("action", "execute")
        requester = ev.from_jid
        cmd = self.commands.get(node)
        if cmd is None:
            raise StanzaError("item-not-found", text="no such command")
        if not cmd.allowed(requester):
            raise StanzaError("forbidden", text="you may not run this command")
        sid = el.attrs.get("sessionid")
        values: Values = None
        if sid:
            self._expire()
            session = self._sessions.get(sid)
            if session is None or session.node != node or session.owner != requester:
                raise StanzaError("bad-request", text="no such session",
                                  app=Element("{%s}bad-sessionid" % NS))
            if action == "cancel":
                del self._sessions[sid]
                return Element(COMMAND, {"node": node, "sessionid": sid, "status": "canceled"})
            if action not in ("execute", "complete", "next"):
                raise StanzaError("bad-request", text=f"action {action!r} is not offered",
                                  app=Element("{%s}bad-action" % NS))
            submitted = el.find(X)
            if submitted is None or submitted.attrs.get("type") != "submit":
                raise StanzaError("bad-request", text="submit the form",
                                  app=Element("{%s}bad-payload" % NS))
            values = form_values(submitted)
        elif action == "cancel":
            raise StanzaError("bad-request", app=Element("{%s}bad-sessionid" % NS))
        try:
            step = await cmd.run(requester, values)
        except ValueError as e:  # the command's own word on bad input
            step = Done(str(e), "error")
        out = Element(COMMAND, {"node": node})
        if isinstance(step, Ask):
            if not sid:
                sid = secrets.token_urlsafe(12)
            self._sessions[sid] = _Session(node, requester)
            self._sessions.move_to_end(sid)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            out.attrs.update(sessionid=sid, status="executing")
            actions = out.add("{%s}actions" % NS, {"execute": "complete"})
            actions.add("{%s}complete" % NS)
            out.append(step.form)
            return out
        if sid:
            self._sessions.pop(sid, None)
            out.attrs["sessionid"] = sid
        else:
            out.attrs["sessionid"] = secrets.token_urlsafe(12)
        out.attrs["status"] = "completed"
        if step.note:
            out.add("{%s}note" % NS, {"type": step.note_type}, step.note)
        if step.form is not None:
            out.append(step.form)
        return out

    def _expire(self) -> None:
        cutoff = time.monotonic() - SESSION_TIMEOUT
        while self._sessions:
            sid, first = next(iter(self._sessions.items()))
            if first.since >= cutoff:
                break
            del self._sessions[sid]
