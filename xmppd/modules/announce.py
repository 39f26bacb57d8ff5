"""mod_announce, as in ejabberd: an administrator sends a message to a special
resource of the server and every user gets it.

- ``HOST/announce/online``: to every online session of the host (on every cluster node);
- ``HOST/announce/all``: to every account of the host (offline ones find it in their
  offline storage);
- ``HOST/announce/motd``: the message of the day: to the online sessions now, and to
  every account once, at its next login; ``.../motd/update`` replaces it without
  sending it now; ``.../motd/delete`` removes it;
- ``HOST/announce/all-hosts/...``: the same on every host of the server.

Who may: the access rule ``access`` (default ``none``; a stock ejabberd.yml gives
``announce: {allow: admin}``). Others get ``forbidden``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Optional

from ..acl import v_access
from ..jid import JID
from ..moduleapi import Module, Option, hook
from ..muc.fanout import addressed
from ..stanza import StanzaError, StanzaEvent
from ..xml import Element
from ..xmlstream import parse_xml
from .announce_store import MotdStore

MESSAGE = "{jabber:client}message"
CHUNK = 500  # accounts routed between two turns of the event loop (announce/all)


class Announce(Module):
    name = "mod_announce"
    stores = ("xmppd.modules.announce_store",)
    options = {
        "access": Option("none", v_access, "who may send announcements"),
    }

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = MotdStore(self.server.db)
        self._motd: Optional[tuple[str, Element]] = None  # (version, message without to)

    async def start_async(self) -> None:
        await self._load()

    async def _load(self) -> None:
        got = await self.store.get(self.host)
        el = parse_xml(got.xml) if got is not None else None
        self._motd = (got.version, el) if got is not None and el is not None else None

    @hook("cluster/event/motd")
    async def _changed_elsewhere(self, host: str) -> None:
        if host == self.host:
            await self._load()

    # -- announcements ---------------------------------------------------------------
    @hook("message/host", priority=10)
    def _message(self, ev: StanzaEvent) -> Optional[bool]:
        target = ev.to_jid.resource or ""
        if not target.startswith("announce/") or ev.type == "error":
            return None
        if not self.server.access.access(self.opts["access"], ev.from_jid.bare):
            raise StanzaError("forbidden", text="you may not send announcements")
        what = target[len("announce/"):]
        hosts = [self.host]
        if what.startswith("all-hosts/"):
            what = what[len("all-hosts/"):]
            hosts = list(self.server.config.hosts)
        if what not in ("online", "all", "motd", "motd/update", "motd/delete"):
            raise StanzaError("item-not-found", text="announce/online, all, motd, "
                              "motd/update or motd/delete")
        for host in hosts:
            msg = Element(MESSAGE, {"from": host, "type": ev.type},
                          [c for c in ev.stanza.children if isinstance(c, Element)])
            if what == "online":
                self.send_online(host, msg)
            elif what == "all":
                self.api.add_task(self.send_all(host, msg))
            else:
                # the message of the day is kept by the host's own mod_announce
                mod = Announce.of(self.server, host) if host != self.host else self
                if mod is not None:
                    self.api.add_task(mod.set_motd(None if what == "motd/delete" else msg,
                                                   send_now=what == "motd"))
        return True

    def send_online(self, host: str, msg: Element) -> None:
        """``msg`` to every online session of ``host`` (also a host without
        mod_announce: all-hosts reaches it)."""
        for full in self.server.sessions.online(host):
            self._send(msg, str(full))

    async def send_all(self, host: str, msg: Element) -> None:
        """``msg`` to every account of ``host`` (offline ones through offline storage)."""
        users = await asyncio.get_running_loop().run_in_executor(
            None, self.server.accounts.list_sync, host)
        for i, user in enumerate(users):
            if i and i % CHUNK == 0:
                await asyncio.sleep(0)
            self._send(msg, f"{user}@{host}")

    def motd(self) -> Optional[Element]:
        """The message of the day (without ``to``), if there is one."""
        return self._motd[1] if self._motd is not None else None

    async def set_motd(self, msg: Optional[Element], send_now: bool) -> None:
        if msg is None:
            await self.store.delete(self.host)
            self._motd = None
        else:
            version = secrets.token_hex(8)
            await self.store.set(self.host, version, msg.to_bytes().decode())
            self._motd = (version, msg)
        self.server.cluster_event("motd", self.host)
        if msg is not None and send_now:
            online = {j.bare for j in self.server.sessions.online(self.host)}
            for bare in sorted(online, key=str):
                # the online users have it now: not again at their next login
                if bare.local is not None and \
                        await self.store.first_time(self.host, bare.local, version):
                    self._send_to_account(msg, bare)

    def _send_to_account(self, msg: Element, bare: JID) -> None:
        """``msg`` to every online resource of the account ``bare`` (every node)."""
        for s in self.server.sessions.resources(bare):
            self._send(msg, str(s.jid))

    def _send(self, msg: Element, to: str) -> None:
        self.server.router.route(addressed(msg, to))

    # -- the message of the day at login ---------------------------------------------------
    @hook("presence/available")
    def _available(self, session: Any, first: bool) -> None:
        motd = self._motd
        if motd is None or not first or session.jid.domain != self.host:
            return
        self.api.add_task(self._give_motd(session.jid, *motd))

    async def _give_motd(self, full: JID, version: str, msg: Element) -> None:
        if await self.store.first_time(self.host, full.local or "", version):
            self._send(msg, str(full))

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        if user.domain == self.host and user.local is not None:
            await self.store.forget_user(self.host, user.local)
