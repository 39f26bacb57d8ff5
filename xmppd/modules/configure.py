"""XEP-0133 service administration as ad-hoc commands (``mod_configure``, as in
ejabberd): what ``xmppd ctl`` does for accounts and sessions, from an XMPP client
(Gajim, Psi, Converse.js...) of an administrator.

The commands: add-user, delete-user, disable-user, change-user-password,
end-user-session, get-user-lastlogin, user-stats, get-registered-users-num,
get-registered-users-list, get-online-users-num, get-online-users-list, announce, and,
with mod_announce on the host, set-motd, edit-motd and delete-motd.

Who may run them: the access rule ``access`` (default ``configure``, as in a stock
ejabberd.yml: ``configure: {allow: admin}``); without such a rule nobody may. Each
command acts on accounts of this host only, and on every node of a cluster (the
admin commands do, see :mod:`xmppd.admin`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

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
SUBJECT = "{jabber:client}subject"
BODY = "{jabber:client}body"


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
                ("disable-user", "Disable users", self._disable_user),
                ("change-user-password", "Change a user's password", self._change_password),
                ("end-user-session", "End users' sessions", self._end_sessions),
                ("get-user-lastlogin", "A user's last login", self._last_login),
                ("user-stats", "A user's statistics", self._user_stats),
                ("get-registered-users-num", "Number of registered users", self._registered_num),
                ("get-registered-users-list", "Registered users", self._registered_list),
                ("get-online-users-num", "Number of online users", self._online_num),
                ("get-online-users-list", "Online users", self._online_list),
                ("announce", "Send an announcement to online users", self._announce),
                ("set-motd", "Set the message of the day", self._set_motd),
                ("edit-motd", "Edit the message of the day", self._edit_motd),
                ("delete-motd", "Delete the message of the day", self._delete_motd)):
            allowed = self._allowed_motd if suffix.endswith("-motd") else self._allowed
            adhoc.add(Command(f"{ADMIN}#{suffix}", name, allowed, run))

    def stop(self) -> None:
        for node in [n for n in self._adhoc.commands if n.startswith(ADMIN + "#")]:
            self._adhoc.remove(node)

    def _allowed(self, jid: JID) -> bool:
        return jid.domain == self.host and self.server.access.access(self.opts["access"], jid.bare)

    def _allowed_motd(self, jid: JID) -> bool:
        from .announce import Announce
        return self._allowed(jid) and Announce.of(self.server, self.host) is not None

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

    async def _disable_user(self, admin: JID, values: Values) -> Step:
        if values is None:
            x = form("Disable users", "Their sessions end and their passwords are replaced "
                     "(change-user-password enables an account again).", ADMIN)
            add_field(x, "accountjids", "jid-multi", "The Jabber IDs of the accounts to disable",
                      [])
            return Ask(x)
        jids = [self._account(v) for v in values.get("accountjids", []) if v.strip()]
        if not jids:
            raise ValueError("name at least one account")
        for jid in jids:
            await self._ctl("ban_account", jid.local or "", self.host,
                            f"disabled by {admin.bare}")
        return Done("Disabled: " + ", ".join(str(j) for j in jids))

    @staticmethod
    def _ask_account(title: str) -> Ask:
        x = form(title, "", ADMIN)
        add_field(x, "accountjid", "jid-single", "The Jabber ID of the account", [])
        return Ask(x)

    @staticmethod
    def _about(jid: JID) -> Element:
        """A result form that starts with the account it is about."""
        x = form("Result", "", ADMIN, "result")
        add_field(x, "accountjid", "jid-single", "The Jabber ID of the account", [str(jid)])
        return x

    async def _last_login(self, admin: JID, values: Values) -> Step:
        if values is None:
            return self._ask_account("A user's last login")
        jid = self._account(_one(values, "accountjid"))
        when, _, status = (await self._ctl("get_last", jid.local or "", self.host)).partition(
            "\t")
        x = self._about(jid)
        add_field(x, "lastlogin", "text-single", "The last login or logout",
                  ["online now" if status == "ONLINE" else when])
        return Done(form=x)

    async def _user_stats(self, admin: JID, values: Values) -> Step:
        if values is None:
            return self._ask_account("A user's statistics")
        jid = self._account(_one(values, "accountjid"))
        lines = [line.split("\t") for line in (await self._ctl(
            "user_sessions_info", jid.local or "", self.host)).splitlines() if line]
        roster = await self._ctl("get_roster", jid.local or "", self.host) \
            if "get_roster" in self.server.commands.names() else ""
        x = self._about(jid)
        add_field(x, "rostersize", "text-single", "Roster size",
                  [str(len([r for r in roster.splitlines() if r]))])
        add_field(x, "onlineresources", "text-multi", "Online resources",
                  [str(jid.with_resource(p[7])) for p in lines if len(p) > 7])
        add_field(x, "ipaddresses", "text-multi", "IP addresses",
                  [f"{p[1]}:{p[2]}" for p in lines if len(p) > 7])
        return Done(form=x)

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

    async def _registered_list(self, admin: JID, values: Values) -> Step:
        users = await asyncio.get_running_loop().run_in_executor(
            None, self.server.accounts.list_sync, self.host)
        return Done(form=_result("registereduserjids", "The list of all users",
                                 [f"{u}@{self.host}" for u in sorted(users)], "jid-multi"))

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


    # -- the message of the day (mod_announce keeps it) ------------------------------
    def _announce_mod(self) -> Any:
        from .announce import Announce
        mod = Announce.of(self.server, self.host)
        if mod is None:
            raise ValueError("mod_announce is not loaded on " + self.host)
        return mod

    def _motd_form(self, title: str, current: Optional[Element]) -> Ask:
        x = form(title, "", ADMIN)
        add_field(x, "subject", "text-single", "Subject",
                  [current.findtext(SUBJECT) or ""] if current is not None else [])
        add_field(x, "body", "text-multi", "Message body",
                  (current.findtext(BODY) or "").split("\n") if current is not None else [])
        return Ask(x)

    async def _store_motd(self, values: dict[str, list[str]], send_now: bool) -> None:
        body = "\n".join(values.get("body", [])).strip()
        if not body:
            raise ValueError("the message is empty")
        subject = _one(values, "subject")
        children: list[Any] = [Element(SUBJECT, None, [subject])] if subject else []
        children.append(Element(BODY, None, [body]))
        msg = Element(MESSAGE, {"from": self.host, "type": "normal"}, children)
        await self._announce_mod().set_motd(msg, send_now=send_now)

    async def _set_motd(self, admin: JID, values: Values) -> Step:
        self._announce_mod()
        if values is None:
            return self._motd_form("Set the message of the day", None)
        await self._store_motd(values, send_now=True)
        return Done("The message of the day is set and sent to online users")

    async def _edit_motd(self, admin: JID, values: Values) -> Step:
        mod = self._announce_mod()
        if values is None:
            return self._motd_form("Edit the message of the day", mod.motd())
        await self._store_motd(values, send_now=False)
        return Done("The message of the day is changed (not sent again)")

    async def _delete_motd(self, admin: JID, values: Values) -> Step:
        await self._announce_mod().set_motd(None, send_now=False)
        return Done("The message of the day is deleted")


def _one(values: dict[str, list[str]], var: str) -> str:
    got = values.get(var) or [""]
    return got[0]


def _result(var: str, label: str, vals: list[str], type_: str = "text-single") -> Element:
    x = form("Result", "", ADMIN, "result")
    add_field(x, var, type_, label, vals)
    return x
