"""XEP-0160 offline storage with XEP-0203 delay stamps.

A chat or normal message with content (a body, a receipt, a marker...) for a
user without an available resource is stored (``message/offline``) with a
``<delay/>``; when the user's storage holds ``access_max_user_messages``
messages (a shaper rule, ejabberd's ``max_user_offline_messages``) the sender
gets ``service-unavailable``. Stored messages go out in arrival order at the
user's next initial presence; messages that arrive meanwhile wait behind them.
A stored copy is deleted once the client acknowledged it (stream management),
or right after sending to a client without stream management. A message its
author retracts (XEP-0424) while it waits here is deleted: the recipient gets
only the retraction.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Optional

from ..commands import CommandError, days_ago
from ..confval import v_bool, v_enum, v_str
from ..jid import JID, JIDError
from ..moduleapi import Module, Option, hook
from ..stanza import MESSAGE, StanzaError, StanzaEvent
from ..xml import Element
from . import offline_store as store
from .common import delay, from_text, has_delay_from, worth_storing
from .stanza_id import STANZA_ID, retry_key, stanza_id, with_child

log = logging.getLogger(__name__)

RETRACT = "{urn:xmpp:message-retract:1}retract"
BUFFER = "offline.buffer"
SENT = "offline.sent"


class Offline(Module):
    name = "mod_offline"
    xeps = ("XEP-0160", "XEP-0203")
    features = ("msgoffline",)
    options = {
        "access_max_user_messages": Option("max_user_offline_messages", v_str,
                                           "shaper rule giving the per-user limit"),
        "store_empty_body": Option("unless_chat_state",
                                   v_enum("true", "false", "unless_chat_state"),
                                   "store messages without a body"),
        "store_groupchat": Option(False, v_bool, "accepted; group chat is never stored"),
        "bounce_groupchat": Option(False, v_bool, "accepted for ejabberd compatibility"),
        "use_mam_for_storage": Option(False, v_bool, "accepted; xmppd uses its own table"),
        "use_cache": Option(True, v_bool, "accepted for ejabberd compatibility"),
        "db_type": Option("sql", v_str, "accepted; always SQL"),
    }

    def setup(self) -> None:
        assert self.server.db is not None
        self.db = self.server.db
        self._tasks: set[asyncio.Task[Any]] = set()
        self.api.add_command("get_offline_count", self._cmd_count,
                             "get_offline_count USER HOST: messages waiting for the user")
        self.api.add_command("delete_old_messages", self._cmd_delete_old,
                             "delete_old_messages DAYS: delete the offline messages stored "
                             "more than DAYS days ago (undelivered: they are lost), on "
                             "every host")

    async def _cmd_delete_old(self, days: str) -> str:
        """ejabberdctl's delete_old_messages, for every host with mod_offline."""
        before = days_ago(days)
        deleted = 0
        for host in self.server.hosts:
            mod = Offline.of(self.server, host)
            if mod is not None:
                deleted += await mod.db.run(store.delete_older_op(host, before))
        log.info("delete_old_messages %s: %d offline messages deleted", days, deleted)
        return ""

    async def _cmd_count(self, user: str, host: str) -> str:
        """ejabberdctl's get_offline_count (the host argument picks its mod_offline)."""
        found = Offline.of(self.server, host.lower())
        if found is None:
            raise CommandError(f"no mod_offline on host {host!r}", "not_found")
        try:
            local = JID(user, found.host).local or ""
        except JIDError as e:
            raise CommandError(str(e)) from None
        return str(await found.count(local))

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        if user.domain == self.host and user.local is not None:
            await self.db.run(store.delete_all_op(self.host, user.local))

    # -- storing ------------------------------------------------------------
    def limit(self, ev: StanzaEvent) -> float:
        value = self.server.access.shaper_value(self.opts["access_max_user_messages"],
                                                ev.to_jid.bare)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return float("inf")

    @hook("message/offline", 0)
    def store(self, ev: StanzaEvent) -> Optional[bool]:
        if ev.type not in ("chat", "normal") or ev.to_jid.local is None:
            return None
        el = ev.stanza
        if not worth_storing(el, self.opts["store_empty_body"]):
            return None
        bare = ev.to_jid.bare
        by = str(bare)
        key = stanza_id(el, by)
        if key is None:
            key = self.new_key()
            el = with_child(el, Element(STANZA_ID, {"by": by, "id": key}))
        now = time.time()
        if not has_delay_from(el, self.host):
            el = with_child(el, delay(self.host, now, "Offline Storage"))
        fut = self.db.batch.submit(store.store_op(
            self.host, bare.local or "", key,
            store.hash_retry_key(retry_key(el, ev.from_jid, bare)), int(now * 1e6),
            str(el), self.limit(ev)))
        fut.add_done_callback(lambda f: self._stored(f, ev))
        retracted = el.find(RETRACT)
        mid = retracted.attrs.get("id") if retracted is not None else None
        if mid:
            # XEP-0424: the author takes back a message still waiting here: it never
            # reaches the recipient (the retraction itself is stored, as it may have)
            self.db.batch.submit(store.retract_op(self.host, bare.local or "",
                                                  str(ev.from_jid.bare), mid))
        sm = getattr(ev.origin, "sm", None)
        if sm is not None and sm.durable:
            sm.hold(fut, ev.origin)  # the sender's ack waits for the stored copy
        return True

    def new_key(self) -> str:
        return "off-" + secrets.token_hex(8)

    def _stored(self, fut: asyncio.Future[Any], ev: StanzaEvent) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.error("could not store a message for %s: %s", ev.to_jid.bare, exc)
            ev.error("internal-server-error")
        elif fut.result() == "full":
            self.server.router.bounce(
                ev.stanza, StanzaError("service-unavailable", text="offline storage is full"),
                "message", ev.type)
        else:
            self.server.hooks.fire_all("offline/stored", ev)   # (mod_push wakes the phone)

    # -- delivering ---------------------------------------------------------
    @hook("presence/available", 0)
    def available(self, session: Any, first: bool) -> None:
        if not first or session.priority < 0 or getattr(session, "host", None) != self.host \
                or not hasattr(session, "filters"):
            return None
        buffer: list[Element] = []
        session.data[BUFFER] = buffer

        def hold_back(s: Any, el: Element) -> Optional[Element]:
            if el.tag == MESSAGE:
                buffer.append(el)
                return None
            return el
        session.filters = (hold_back,) + tuple(session.filters)
        task = asyncio.ensure_future(self._deliver(session, hold_back, buffer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def _deliver(self, session: Any, hold_back: Any, buffer: list[Element]) -> None:
        user = session.jid.local
        rows: list[tuple[str, str]] = []
        try:
            await self.db.batch.flush()  # what is being stored now is read too
            rows = await self.db.run(store.load_op(self.host, user))
        except Exception:
            log.exception("could not load offline messages of %s", session.jid.bare)
        finally:
            session.filters = tuple(f for f in session.filters if f is not hold_back)
            session.data.pop(BUFFER, None)
        if session.server.sessions.get_local(session.jid) is not session:
            return  # gone meanwhile: the rows stay for the next time
        busy = self._in_flight(session)
        sent: list[str] = []
        for key, xml in rows:
            if key in busy:
                continue
            try:
                el = from_text(xml)
            except Exception:
                log.exception("unreadable offline message %s of %s", key, session.jid.bare)
                continue
            sent.append(key)
            session.send(el)
        for el in buffer:
            session.send(el)
        if not sent:
            return
        if session.sm is None:
            self.db.batch.submit(store.delete_op(self.host, user, sent))
        else:
            session.data[SENT] = set(sent)

    def _in_flight(self, session: Any) -> set[str]:
        """Keys sent to another session of the user and not yet acknowledged."""
        out: set[str] = set()
        for s in self.server.sessions.local_resources(session.jid.bare):
            if s is not session:
                out |= getattr(s, "data", {}).get(SENT, set())
        return out

    @hook("sm/acked", 0)
    def acked(self, session: Any, stanzas: list[Element]) -> None:
        sent = session.data.get(SENT)
        if not sent or session.host != self.host:
            return None
        by = str(session.jid.bare)
        keys = []
        for el in stanzas:
            key = stanza_id(el, by)
            if key is not None and key in sent:
                sent.discard(key)
                keys.append(key)
        if keys:
            self.db.batch.submit(store.delete_op(self.host, session.jid.local, keys))
        return None

    @hook("c2s/ended", 0)
    def ended(self, session: Any, reason: str) -> None:
        session.data.pop(SENT, None)  # unacked rows stay stored for the next session
        return None

    async def count(self, user: str) -> int:
        return await self.db.run(store.count_op(self.host, user))

    def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
