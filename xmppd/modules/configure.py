"""XEP-0133 service administration as ad-hoc commands (``mod_configure``, as in
ejabberd): what ``xmppd ctl`` does for accounts and sessions, from an XMPP client
(Gajim, Psi, Converse.js...) of an administrator.

Who may run them: the access rule ``access`` (default ``configure``, as in a stock
ejabberd.yml: ``configure: {allow: admin}``); without such a rule nobody may. Each
command acts on accounts of this host only, and on every node of a cluster (the
admin commands do, see :mod:`xmppd.admin`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..acl import v_access
from ..commands import CommandError
from ..dataforms import add_field
from ..jid import JID, JIDError
from ..moduleapi import Module, Option
from ..muc.fanout import addressed
from ..xml import Element
from .adhoc import AdHoc, Ask, Command, Done, Step, Values, form

ADMIN = "http://jabber.org/protocol/admin"
MESSAGE = "{jabber:client}message"


class Configure(Module):
    name = "mod_configure"
    xeps = ("XEP-0133",)
    depends = (AdHoc,)
    options = {
        "access": Option("configure", v_access, "who may run the administration commands"),
    }

    def setup(self) -> None:
        adhoc = AdHoc.of(self.server, self.host)
        assert adhoc is not None
        self._adhoc = adhoc
        for suffix, name, run in (
                ("add-user", "Add a user", self._add_user),
                ("delete-user", "Delete users", self._delete_user),
                ("change-user-password", "Change a user's password", self._change_password),
                ("end-user-session", "End users' sessions", self._end_sessions),
                ("get-registered-users-num", "Number of registered users", self._registered_num),
                ("get-online-users-num", "Number of online users", self._online_num),
                ("get-online-users-list", "Online users", self._online_list),
                ("announce", "Send an announcement to online users", self._announce)):
            adhoc.add(Command(f"{ADMIN}#{suffix}", name, self._allowed, run))

    def stop(self) -> None:
        for node in [n for n in self._adhoc.commands if n.startswith(ADMIN + "#")]:
            self._adhoc.remove(node)

    def _allowed(self, jid: JID) -> bool:
        return jid.domain == self.host and self.server.access.access(self.opts["access"], jid.bare)

    # -- helpers -------------------------------------------------------------------
    def _account(self, text: str) -> JID:
        """A bare JID of this host, from a form's value."""
        try:
            jid = JID.parse(text.strip())
        except JIDError:
            raise ValueError(f"not a JID: {text!r}") from None
        if not jid.local or jid.domain != self.host:
            raise ValueError(f"not an account of {self.host}: {text}")
        return jid.bare

    async def _ctl(self, name: str, *args: str) -> str:
        try:
            return str(await self.server.commands.call(name, list(args)) or "")
        except CommandError as e:
            raise ValueError(str(e)) from None

    def _online(self) -> list[JID]:
        return sorted(self.server.sessions.online(self.host), key=str)

    # -- the commands --------------------------------------------------------------
    async def _add_user(self, admin: JID, values: Values) -> Step:
        if values is None:
            x = form("Add a user", "Fill out this form to add a user.", ADMIN)
            add_field(x, "accountjid", "jid-single", "The Jabber ID for the account to be added", [])
            add_field(x, "password", "text-private", "The password for this account", [])
            add_field(x, "password-verify", "text-private", "Retype password", [])
            return Ask(x)
        jid = self._account(_one(values, "accountjid"))
        password = _one(values, "password")
        if not password:
            raise ValueError("a password is required")
        if "password-verify" in values and _one(values, "password-verify") != password:
            raise ValueError("the passwords do not match")
        await self._ctl("register", jid.local or "", self.host, password)
        return Done(f"User {jid} added")

    async def _delete_user(self, admin: JID, values: Values) -> Step:
        if values is None:
            x = form("Delete users", "Fill out this form to delete users.", ADMIN)
            add_field(x, "accountjids", "jid-multi", "The Jabber IDs of the accounts to delete", [])
            return Ask(x)
        jids = [self._account(v) for v in values.get("accountjids", []) if v.strip()]
        if not jids:
            raise ValueError("name at least one account")
        for jid in jids:
            await self._ctl("unregister", jid.local or "", self.host)
        return Done("Deleted: " + ", ".join(str(j) for j in jids))

    async def _change_password(self, admin: JID, values: Values) -> Step:
        if values is None:
            x = form("Change a user's password", "", ADMIN)
            add_field(x, "accountjid", "jid-single", "The Jabber ID of the account", [])
            add_field(x, "password", "text-private", "The new password", [])
            return Ask(x)
        jid = self._account(_one(values, "accountjid"))
        password = _one(values, "password")
        if not password:
            raise ValueError("a password is required")
        await self._ctl("change_password", jid.local or "", self.host, password)
        return Done(f"Password of {jid} changed")

    async def _end_sessions(self, admin: JID, values: Values) -> Step:
        if values is None:
            x = form("End users' sessions", "A bare JID ends every session of the account.",
                     ADMIN)
            add_field(x, "accountjids", "jid-multi", "The Jabber IDs (bare or full)", [])
            return Ask(x)
        ended = 0
        for text in values.get("accountjids", []):
            if not text.strip():
                continue
            try:
                target = JID.parse(text.strip())
            except JIDError:
                raise ValueError(f"not a JID: {text!r}") from None
            self._account(str(target.bare))
            for full in self._online():
                if full == target or (not target.resource and full.bare == target):
                    await self._ctl("kick_session", full.local or "", self.host,
                                    full.resource or "", "ended by an administrator")
                    ended += 1
        return Done(f"{ended} sessions ended")

    async def _registered_num(self, admin: JID, values: Values) -> Step:
        count = await asyncio.get_running_loop().run_in_executor(
            None, self.server.accounts.count_sync, self.host)
        return Done(form=_result("registeredusersnum", "The number of registered users",
                                 [str(count)]))

    async def _online_num(self, admin: JID, values: Values) -> Step:
        return Done(form=_result("onlineusersnum", "The number of online users",
                                 [str(len({j.bare for j in self._online()}))]))

    async def _online_list(self, admin: JID, values: Values) -> Step:
        return Done(form=_result("onlineuserjids", "The list of all online users",
                                 [str(j) for j in self._online()], "jid-multi"))

    async def _announce(self, admin: JID, values: Values) -> Step:
        if values is None:
            x = form("Send an announcement to online users", "", ADMIN)
            add_field(x, "subject", "text-single", "Subject", [])
            add_field(x, "announcement", "text-multi", "Announcement", [])
            return Ask(x)
        body = "\n".join(values.get("announcement", [])).strip()
        if not body:
            raise ValueError("the announcement is empty")
        subject = _one(values, "subject")
        children: list[Any] = []
        if subject:
            children.append(Element("{jabber:client}subject", None, [subject]))
        children.append(Element("{jabber:client}body", None, [body]))
        msg = Element(MESSAGE, {"from": self.host, "type": "normal"}, children)
        for full in self._online():
            self.server.router.route(addressed(msg, str(full)))
        return Done("Announcement sent")


def _one(values: dict[str, list[str]], var: str) -> str:
    got = values.get(var) or [""]
    return got[0]


def _result(var: str, label: str, vals: list[str], type_: str = "text-single") -> Element:
    x = form("Result", "", ADMIN, "result")
    add_field(x, var, type_, label, vals)
    return x
