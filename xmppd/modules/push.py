"""mod_push: push notifications (XEP-0357), so that a phone whose app the system
suspended learns that a message waits (iOS clients such as Monal and Siskin need it).

A client enables push with the JID and node of its app server (an XMPP service of
the app's makers, or any JID) and publish options (usually a secret); the
registration is stored per account, with the resource that enabled it. When a
message worth a notification (a body, or encrypted content) waits for the account:

- stored in offline storage (no session online): every registration of the account;
- queued for a session that stream management keeps for resumption (the phone's
  connection is gone): the registrations that session's resource enabled,

the server publishes a ``urn:xmpp:push:summary`` notification to the app server's
node, from the account's bare JID: a message count, the sender if
``include_sender``, and ``include_body`` (a fixed text such as "New message", the
real body if true, nothing if false). With ``notify_on: all`` (ejabberd's default)
any other stanza for such a session, or stored offline, also notifies, with a
summary without count, sender or body (the app connects and fetches it);
``notify_on: messages`` notifies of messages worth it only. Notifications for one registration do not
pile up: while one is unanswered, the next waits and only the newest goes. An app
server that answers with an error of type ``cancel`` or ``auth`` loses the
registration (XEP-0357 section 8); other errors and timeouts keep it.

``delete_old_push_sessions DAYS`` (ejabberdctl's command) deletes the registrations
enabled more than DAYS days ago, on every host.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from ..commands import days_ago
from ..confval import ConfigError, v_bool, v_enum
from ..dataforms import X, add_field
from ..jid import JID, JIDError
from ..moduleapi import Module, Option, hook, iq_handler
from ..pep.ns import PUBSUB
from ..stanza import ERROR_TYPES, MESSAGE, StanzaError, StanzaEvent, make_iq
from ..xml import Element
from ..xmlstream import parse_xml
from .push_store import PushStore, Registration

log = logging.getLogger(__name__)

NS = "urn:xmpp:push:0"
BODY = "{jabber:client}body"
SUMMARY = "urn:xmpp:push:summary"
KEEP = 20   # registrations an account keeps (its newest)


def _v_body(value: Any, path: str) -> Any:
    if isinstance(value, (bool, str)):
        return value
    raise ConfigError(path, "true, false or a text", value)


def worth_pushing(el: Element) -> bool:
    """A message a person would want to hear of: a body or encrypted content."""
    if el.tag != MESSAGE or el.attrs.get("type") in ("error", "headline"):
        return False
    return any(c.tag == BODY or c.name == "encrypted" for c in el.elements())


class PushModule(Module):
    name = "mod_push"
    features = ()
    xeps = ("XEP-0357",)
    stores = ("xmppd.modules.push_store",)
    options = {
        "include_sender": Option(False, v_bool, "tell the app server who wrote"),
        "include_body": Option("New message", _v_body,
                               "a text for the app server, the real body (true) or none (false)"),
        "notify_on": Option("all", v_enum("all", "messages"),
                            "notify of every stanza (all) or of messages with a body or "
                            "encrypted content only (messages)"),
    }

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = PushStore(self.server.db)
        self._busy: set[tuple[str, str, str]] = set()          # (user, service, node) in flight
        self._next: dict[tuple[str, str, str], tuple[Registration, Element]] = {}
        # messages notified while queued for a session kept for resumption: when that
        # session times out they are stored offline, and must not notify again
        self._pushed: dict[tuple[str, str, str], None] = {}
        self.api.hook("disco-account-features", lambda ev: [NS])
        self.api.add_command("delete_old_push_sessions", self._cmd_delete_old,
                             "delete_old_push_sessions DAYS: delete the push registrations "
                             "enabled more than DAYS days ago, on every host")

    def _worth(self, stanza: Element) -> bool:
        return self.opts["notify_on"] == "all" or worth_pushing(stanza)

    async def _cmd_delete_old(self, days: str) -> str:
        """ejabberdctl's delete_old_push_sessions, for every host with mod_push."""
        before = days_ago(days)
        deleted = 0
        for host in self.server.hosts:
            mod = PushModule.of(self.server, host)
            if mod is not None:
                deleted += await mod.store.delete_older(host, before)
        log.info("delete_old_push_sessions %s: %d push registrations deleted", days, deleted)
        return ""

    # -- enable / disable ------------------------------------------------------------
    @iq_handler("set", NS, "enable", dest="self")
    async def enable(self, ev: StanzaEvent) -> None:
        el = ev.stanza.find("{%s}enable" % NS)
        assert el is not None
        service, node = self._target(el)
        if not node:
            raise StanzaError("bad-request", text="enable needs a node")
        form = el.find(X)
        options = form.to_bytes().decode() if form is not None else ""
        await self.store.enable(self.host, ev.from_jid.local or "", Registration(
            service, node, ev.from_jid.resource or "", options), KEEP)
        if ev.origin is not None and hasattr(ev.origin, "data"):
            ev.origin.data["push"] = True  # this session has push (mod_push_keepalive)

    @iq_handler("set", NS, "disable", dest="self")
    async def disable(self, ev: StanzaEvent) -> None:
        el = ev.stanza.find("{%s}disable" % NS)
        assert el is not None
        service, node = self._target(el)
        await self.store.disable(self.host, ev.from_jid.local or "", service, node or None)
        if ev.origin is not None and hasattr(ev.origin, "data"):
            ev.origin.data.pop("push", None)

    @staticmethod
    def _target(el: Element) -> tuple[str, str]:
        try:
            service = str(JID.parse(el.attrs.get("jid", "")))
        except JIDError:
            raise StanzaError("bad-request", text="jid: the app server's JID") from None
        return service, el.attrs.get("node", "")

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        if user.domain == self.host and user.local is not None:
            await self.store.delete_user(self.host, user.local)

    # -- when a message waits ----------------------------------------------------------
    @hook("offline/stored")
    def _stored(self, ev: StanzaEvent) -> None:
        if ev.to_jid.domain == self.host and self._worth(ev.stanza):
            key = self._key(ev.to_jid.bare, ev.stanza)
            if key is not None and key in self._pushed:
                return
            self.api.add_task(self._notify(ev.to_jid.bare, None, ev.stanza))

    @hook("sm/queued")
    def _queued(self, session: Any, stanza: Element) -> None:
        if not session.detached or session.jid.domain != self.host:
            return   # (per stanza sent: connected sessions end here)
        if self._worth(stanza):
            key = self._key(session.jid.bare, stanza)
            if key is not None:
                self._pushed[key] = None
                if len(self._pushed) > 10_000:
                    del self._pushed[next(iter(self._pushed))]
            self.api.add_task(self._notify(session.jid.bare, session.jid.resource or "", stanza))
            self.server.hooks.fire_all("push/notified", session)

    @staticmethod
    def _key(user: JID, stanza: Element) -> Optional[tuple[str, str, str]]:
        mid = stanza.attrs.get("id")
        return (str(user), stanza.attrs.get("from", ""), mid) if mid else None

    async def _notify(self, user: JID, resource: Optional[str], stanza: Element) -> None:
        regs = await self.store.registrations(self.host, user.local or "")
        summary = self._summary(stanza)
        for reg in regs:
            if resource is not None and reg.resource != resource:
                continue
            key = (user.local or "", reg.service, reg.node)
            if key in self._busy:
                # the newest goes when this one is answered; one about a message is not
                # replaced by one that tells nothing (notify_on: all)
                pending = self._next.get(key)
                if pending is None or _tells(summary) or not _tells(pending[1]):
                    self._next[key] = (reg, summary)
                continue
            self._busy.add(key)
            self.api.add_task(self._publish(user, key, reg, summary))

    async def wake(self, user: JID, resource: Optional[str]) -> None:
        """A notification without a message (the app connects again): to the
        registrations of ``resource``, or of every resource when None."""
        form = _summary_form()
        for reg in await self.store.registrations(self.host, user.local or ""):
            if resource is None or reg.resource == resource:
                self.api.add_task(self._send(user.bare, reg, form))

    def _summary(self, stanza: Element) -> Element:
        form = _summary_form()
        if not worth_pushing(stanza):
            return form   # (notify_on: all) something waits, nothing to tell of it
        add_field(form, "message-count", "", "", ["1"])
        if self.opts["include_sender"] and stanza.attrs.get("from"):
            add_field(form, "last-message-sender", "", "", [stanza.attrs["from"]])
        body = self.opts["include_body"]
        if body is True:
            body = stanza.findtext(BODY) or ""
        if body:
            add_field(form, "last-message-body", "", "", [str(body)])
        return form

    async def _publish(self, user: JID, key: tuple[str, str, str], reg: Registration,
                       summary: Element) -> None:
        while True:
            await self._send(user, reg, summary)
            queued = self._next.pop(key, None)
            if queued is None:
                self._busy.discard(key)
                return
            reg, summary = queued

    async def _send(self, user: JID, reg: Registration, summary: Element) -> None:
        pubsub = Element("{%s}pubsub" % PUBSUB, None, [
            Element("{%s}publish" % PUBSUB, {"node": reg.node}, [
                Element("{%s}item" % PUBSUB, None, [
                    Element("{%s}notification" % NS, None, [summary])])])])
        options = parse_xml(reg.options) if reg.options else None
        if options is not None:
            pubsub.append(Element("{%s}publish-options" % PUBSUB, None, [options]))
        iq = make_iq("set", pubsub, to=reg.service, frm=str(user))
        try:
            await self.server.iq_tracker.request(iq, timeout=30.0)
        except StanzaError as e:
            if ERROR_TYPES.get(e.condition, "cancel") in ("cancel", "auth"):
                log.info("push: %s refused a notification for %s (%s): registration removed",
                         reg.service, user, e.condition)
                await self.store.disable(self.host, user.local or "", reg.service, reg.node)
            else:
                log.info("push: %s refused a notification for %s (%s)", reg.service, user,
                         e.condition)
        except TimeoutError:
            log.info("push: no answer from %s for %s", reg.service, user)


def _tells(summary: Element) -> bool:
    """A summary about a message (it has a count)."""
    return any(isinstance(c, Element) and c.attrs.get("var") == "message-count"
               for c in summary.children)


def _summary_form() -> Element:
    """A ``urn:xmpp:push:summary`` form with no field yet."""
    form = Element(X, {"type": "submit"})
    add_field(form, "FORM_TYPE", "", "", [SUMMARY])
    return form
