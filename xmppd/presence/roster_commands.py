"""ejabberdctl's roster commands (mod_admin_extra) for ``xmppd ctl``: read a user's
roster, and add or remove an item with the subscription the administrator names
(without the subscription handshake, as ejabberd does). Changes are stored and
pushed to the user's interested resources like a client's roster set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..commands import CommandError
from ..jid import JID, JIDError
from ..stanza import StanzaError
from .rosters import Roster
from .subscription import SubState

if TYPE_CHECKING:
    from .roster import RosterModule

SUBSCRIPTIONS = ("none", "from", "to", "both")

HELP = {
    "get_roster": "get_roster USER HOST: the roster, a line per contact: "
                  "JID, name, subscription, groups (separated by ;)",
    "add_rosteritem": "add_rosteritem LOCALUSER LOCALHOST USER HOST NICK GROUPS SUBS: add or "
                      "change a contact (GROUPS separated by ;, SUBS none|from|to|both)",
    "delete_rosteritem": "delete_rosteritem LOCALUSER LOCALHOST USER HOST: remove a contact",
}


def install(mod: RosterModule) -> None:
    """Register the commands (one set for every host: the host argument picks the
    host's own mod_roster)."""
    from .roster import RosterModule

    def module(host: str) -> RosterModule:
        found = RosterModule.of(mod.server, host.lower())
        if found is None:
            raise CommandError(f"no mod_roster on host {host!r}")
        return found

    def jid(user: str, host: str) -> JID:
        try:
            return JID(user, host)
        except JIDError as e:
            raise CommandError(str(e)) from None

    async def get_roster(user: str, host: str) -> str:
        m = module(host)

        def lines(r: Roster) -> list[str]:
            return ["\t".join((str(i.jid), i.name or "", i.effective.sub,
                               ";".join(i.shown_groups())))
                    for i in sorted(r.items.values(), key=lambda i: str(i.jid)) if i.shown]
        return "\n".join(await m.cache.run(jid(user, m.host), lines))

    async def add_rosteritem(localuser: str, localhost: str, user: str, host: str, nick: str,
                             groups: str, subs: str) -> str:
        m = module(localhost)
        if subs not in SUBSCRIPTIONS:
            raise CommandError(f"SUBS is one of {', '.join(SUBSCRIPTIONS)}")
        contact = jid(user, host)
        names = tuple(dict.fromkeys(g for g in groups.split(";") if g))

        def add(r: Roster) -> None:
            try:
                item = m.item_for(r, contact)
            except StanzaError as e:
                raise CommandError(e.text or e.condition) from None
            before = item.view()
            item.name, item.groups, item.visible = nick or None, names, True
            item.state = SubState(sub=subs)
            m.changed(r, item, before)
        await m.cache.run(jid(localuser, m.host), add)
        return ""

    async def delete_rosteritem(localuser: str, localhost: str, user: str, host: str) -> str:
        m = module(localhost)
        contact = jid(user, host)

        def remove(r: Roster) -> None:
            item = r.get(contact)
            if item is None or not item.visible:
                raise CommandError(f"{contact} is not in the roster")
            m.clear(r, item)
        await m.cache.run(jid(localuser, m.host), remove)
        return ""

    for name, fn in (("get_roster", get_roster), ("add_rosteritem", add_rosteritem),
                     ("delete_rosteritem", delete_rosteritem)):
        mod.api.add_command(name, fn, HELP[name])
