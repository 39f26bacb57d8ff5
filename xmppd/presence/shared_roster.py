"""mod_shared_roster: shared roster groups, as in ejabberd.

An administrator makes groups (``srg_create``), puts accounts in them
(``srg_user_add``; the member ``@all@`` stands for every account of the host,
``@online@`` for every account with a session on any cluster node) and says
which groups each group's members see: its displayed groups. A member of a group
finds in the roster every member of the groups it displays, under their labels, with
subscription ``both``:

- presence flows both ways without a subscription handshake (broadcast, probes, PEP
  and last activity read the same roster); a ``subscribe`` from such a contact is
  answered ``subscribed`` at once;
- the user may give the contact a name and groups of their own (stored as any roster
  item); removing the contact is ``not-allowed`` while the group shows it;
- changes reach online users at once, on every cluster node: roster pushes, and the
  users' presence to their new contacts (unavailable to contacts they lost).

Shared contacts are not stored in the users' rosters: they are added to each roster as it
is loaded (:attr:`RosterCache.decorators`). The roster version clients see carries a
digest of the user's shared contacts (``Roster.shared_tag``), so a client whose copy
predates a change of the groups gets the whole roster, and versioning otherwise works as
without the module. ``@all@`` is the list of accounts as read when the groups
are (at start and after every change); an account made later joins it at its first
login. With ``@online@`` in a group, a login or logout (debounced to one refresh per
half second, told to every node) brings the online users' rosters in step.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Optional

from ..commands import CommandError
from ..jid import JID, JIDError
from ..moduleapi import Module
from .roster import RosterModule
from .rosters import Item, Roster
from .shared_roster_store import Group, SharedRosterStore

log = logging.getLogger(__name__)

ALL = "@all@"
ONLINE = "@online@"
EVENT = "shared_roster"
ONLINE_EVENT = "shared_roster_online"
ONLINE_DEBOUNCE = 0.5

HELP = {
    "srg_create": "srg_create GROUP HOST LABEL DESCRIPTION DISPLAY: make (or change) a "
                  "shared roster group; DISPLAY: the groups its members see, separated by "
                  "\\n or commas",
    "srg_delete": "srg_delete GROUP HOST: delete a shared roster group",
    "srg_list": "srg_list HOST: the shared roster groups, one per line",
    "srg_get_info": "srg_get_info GROUP HOST: a line per property (label, description, "
                    "displayed_groups, all_users)",
    "srg_get_members": "srg_get_members GROUP HOST: the members, one per line",
    "srg_user_add": "srg_user_add USER HOST GROUP GROUPHOST: put an account in a group "
                    "(USER @all@: every account of HOST; @online@: every account online)",
    "srg_user_del": "srg_user_del USER HOST GROUP GROUPHOST: take an account out of a group",
}


def _names(display: str) -> tuple[str, ...]:
    """Displayed groups as ejabberdctl takes them: ``\\n``-separated (commas, and the
    HTTP API's list, too)."""
    parts = display.replace("\\n", "\n").replace(",", "\n").replace(";", "\n").split("\n")
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def _tag(contacts: dict[str, tuple[str, ...]]) -> str:
    """A digest of a user's shared contacts, for the roster version clients see."""
    if not contacts:
        return ""
    text = "\n".join(f"{c}\t{chr(31).join(labels)}" for c, labels in sorted(contacts.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class SharedRosterModule(Module):
    name = "mod_shared_roster"
    depends = (RosterModule,)
    stores = ("xmppd.presence.shared_roster_store",)

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = SharedRosterStore(self.server.db)
        self.groups: dict[str, Group] = {}
        self.accounts: set[str] = set()  # every account of the host (for @all@)
        roster = RosterModule.of(self.server, self.host)
        assert roster is not None  # (a dependency)
        self.roster = roster
        roster.cache.decorators.append(self._decorate)
        self.api.on_unload(lambda: roster.cache.decorators.remove(self._decorate))
        self.api.hook(f"cluster/event/{EVENT}", self._changed_elsewhere)
        self.api.hook("account/removed", self._account_removed)
        self.api.hook(f"cluster/event/{ONLINE_EVENT}", self._online_elsewhere)
        for name in ("c2s/bound", "c2s/ended", "sm/released"):
            self.api.hook(name, self._session_changed)
        self._online_timer: Optional[asyncio.TimerHandle] = None  # refresh for @online@
        self._online_tell = False
        self._online_now_set: Optional[set[str]] = None   # fixed while a refresh runs
        self._refreshing = False
        self._refresh_again = False
        for name, fn in (("srg_create", self._create), ("srg_delete", self._delete),
                         ("srg_list", self._list), ("srg_get_info", self._info),
                         ("srg_get_members", self._members_cmd),
                         ("srg_user_add", self._user_add), ("srg_user_del", self._user_del)):
            self.api.add_command(name, fn, HELP[name])

    async def start_async(self) -> None:
        await self._reload()

    # -- who sees whom ------------------------------------------------------------------
    def _members(self, group: Group) -> set[str]:
        out = group.members
        if ALL in out:
            out = (out - {ALL}) | self.accounts
        if ONLINE in out:
            out = (out - {ONLINE}) | self._online()
        return out

    def _in(self, group: Group, user: str) -> bool:
        return user in group.members or (ALL in group.members and user in self.accounts) or \
            (ONLINE in group.members and user in self._online())

    def _online(self) -> set[str]:
        """Every account with a session (during a refresh: as it was at its start)."""
        if self._online_now_set is not None:
            return self._online_now_set
        return {str(j.bare) for j in self.server.sessions.online(self.host)}

    def _uses_online(self) -> bool:
        return any(ONLINE in g.members for g in self.groups.values())

    def contacts(self, user: str) -> dict[str, tuple[str, ...]]:
        """``user``'s shared contacts (bare JIDs) with the labels of their groups."""
        out: dict[str, list[str]] = {}
        for g in self.groups.values():
            if not g.displayed or not self._in(g, user):
                continue
            for name in g.displayed:
                shown = self.groups.get(name)
                if shown is None:
                    continue
                label = shown.label or shown.name
                for m in self._members(shown):
                    if m != user:
                        labels = out.setdefault(m, [])
                        if label not in labels:
                            labels.append(label)
        return {m: tuple(labels) for m, labels in out.items()}

    def _decorate(self, roster: Roster) -> None:
        """A roster was loaded: its shared contacts join it."""
        user = str(roster.user)
        if user not in self.accounts:
            self.accounts.add(user)  # an account made since the groups were read
            if any(ALL in g.members for g in self.groups.values()):
                self.server.cluster_event(EVENT, self.host)
                self._spawn_refresh(skip=user)
        want = self.contacts(user)
        roster.shared_tag = _tag(want)
        for contact, labels in want.items():
            try:
                jid = JID.parse(contact)
            except JIDError:
                continue
            item = roster.items.get(jid)
            if item is None:
                item = roster.items[jid] = Item(jid)
            item.shared = labels

    # -- changes ---------------------------------------------------------------------------
    async def _reload(self) -> None:
        self.groups = await self.store.load(self.host)
        if any(ALL in g.members for g in self.groups.values()):
            self.accounts = {f"{u}@{self.host}" for u in await self.server.accounts.list(self.host)}

    async def _changed(self, here: bool = True) -> None:
        """After a change stored (``here``, then the other nodes are told, or on another
        node): read the groups again and bring online users' rosters in step."""
        await self._reload()
        if here:
            self.server.cluster_event(EVENT, self.host)
        await self._refresh()

    def _changed_elsewhere(self, host: str) -> Any:
        return self._changed(here=False) if host == self.host else None

    def _spawn_refresh(self, skip: str = "") -> None:
        self.api.add_task(self._refresh(skip))

    async def _refresh(self, skip: str = "") -> None:
        """Bring the rosters this node holds in step with the groups (one refresh at a
        time: one asked for meanwhile runs once after it)."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        try:
            while True:
                self._refresh_again = False
                self._online_now_set = None
                if self._uses_online():
                    self._online_now_set = self._online()
                for user in self.roster.cache.loaded_users():
                    if str(user) != skip:
                        await self.roster.cache.run(user, self._apply)
                if not self._refresh_again:
                    break
                skip = ""
        finally:
            self._online_now_set = None
            self._refreshing = False

    def _apply(self, r: Roster) -> None:
        want = self.contacts(str(r.user))
        r.shared_tag = _tag(want)  # (before the pushes: they carry the new version)
        for jid, item in list(r.items.items()):
            labels = want.pop(str(jid), ())
            if item.shared != labels:
                self._set(r, item, labels)
        for contact, labels in want.items():
            try:
                jid = JID.parse(contact)
            except JIDError:
                continue
            self._set(r, r.items.setdefault(jid, Item(jid)), labels)

    def _set(self, r: Roster, item: Item, labels: tuple[str, ...]) -> None:
        before = item.view()
        was = item.effective.frm
        item.shared = labels
        if item.view() != before:
            self.roster.push(r, item, local_only=True)
        now = item.effective.frm
        # the contact may now see this user (or no longer): from this node's sessions
        # (every node refreshes its own copy of the roster)
        if now and not was:
            self.roster.broadcast.send_current(r.user, item.jid, local_only=True)
        elif was and not now:
            self.roster.broadcast.send_unavailable(r.user, item.jid, local_only=True)

    # -- @online@: logins and logouts ------------------------------------------------------
    def _session_changed(self, session: Any, *_: Any) -> None:
        jid = getattr(session, "jid", None)
        if jid is not None and jid.domain == self.host and self._uses_online():
            self._online_soon(tell=True)

    def _online_elsewhere(self, host: str) -> None:
        if host == self.host and self._uses_online():
            self._online_soon(tell=False)

    def _online_soon(self, tell: bool) -> None:
        """One refresh for the logins and logouts of the next half second (a login storm
        refreshes the rosters a few times, not once per login)."""
        self._online_tell = self._online_tell or tell
        if self._online_timer is None:
            self._online_timer = asyncio.get_running_loop().call_later(ONLINE_DEBOUNCE,
                                                                       self._online_now)

    def _online_now(self) -> None:
        tell, self._online_tell, self._online_timer = self._online_tell, False, None
        if tell:
            self.server.cluster_event(ONLINE_EVENT, self.host)
        self._spawn_refresh()

    async def _account_removed(self, user: JID) -> None:
        if user.domain != self.host:
            return
        self.accounts.discard(str(user.bare))
        if any(str(user.bare) in g.members for g in self.groups.values()):
            await self.store.forget_user(self.host, str(user.bare))
            await self._changed()

    # -- commands --------------------------------------------------------------------------
    def _mine(self, host: str) -> SharedRosterModule:
        found = SharedRosterModule.of(self.server, host.lower())
        if found is None:
            raise CommandError(f"no mod_shared_roster on host {host!r}", "not_found")
        return found

    def _group(self, name: str, host: str) -> tuple[SharedRosterModule, Group]:
        m = self._mine(host)
        g = m.groups.get(name)
        if g is None:
            raise CommandError(f"no shared roster group {name!r} on {m.host}", "not_found")
        return m, g

    async def _create(self, group: str, host: str, label: str, description: str,
                      display: str) -> str:
        m = self._mine(host)
        if not group or len(group) > 1023:
            raise CommandError("a group needs a name (at most 1023 characters)")
        g = Group(group, label, description, _names(display))
        await m.store.put_group(m.host, g)
        await m._changed()
        return ""

    async def _delete(self, group: str, host: str) -> str:
        m, _ = self._group(group, host)
        await m.store.delete_group(m.host, group)
        await m._changed()
        return ""

    async def _list(self, host: str) -> str:
        return "\n".join(sorted(self._mine(host).groups))

    async def _info(self, group: str, host: str) -> str:
        _, g = self._group(group, host)
        return "\n".join((f"label\t{g.label}", f"description\t{g.description}",
                          f"displayed_groups\t{','.join(g.displayed)}",
                          f"all_users\t{str(ALL in g.members).lower()}",
                          f"online_users\t{str(ONLINE in g.members).lower()}"))

    async def _members_cmd(self, group: str, host: str) -> str:
        m, g = self._group(group, host)
        return "\n".join(sorted(m._members(g)))

    def _member(self, user: str, host: str) -> str:
        if user in (ALL, ONLINE):
            return user
        try:
            return str(JID(user, host))
        except JIDError as e:
            raise CommandError(str(e)) from None

    async def _user_add(self, user: str, host: str, group: str, grouphost: str) -> str:
        m, _ = self._group(group, grouphost)
        await m.store.add_member(m.host, group, self._member(user, host))
        await m._changed()
        return ""

    async def _user_del(self, user: str, host: str, group: str, grouphost: str) -> str:
        m, g = self._group(group, grouphost)
        member = self._member(user, host)
        if member not in g.members:
            raise CommandError(f"{member} is not in {group}", "not_found")
        await m.store.remove_member(m.host, group, member)
        await m._changed()
        return ""
