"""ejabberdctl's vCard commands (mod_admin_extra) for ``xmppd ctl`` and the HTTP API:
read or set one field of an account's vCard (``NICKNAME``, ``FN``, ``EMAIL USERID``...).

A set stores the whole vCard again through :meth:`VcardModule.put_card`, so the other
modules hear of it (``vcard/set``: the avatar's hash in presence, the PEP avatar).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..commands import CommandError
from ..jid import JID, JIDError
from ..xml import Element

if TYPE_CHECKING:
    from .vcard import VcardModule

NS = "vcard-temp"
HELP = {
    "get_vcard": "get_vcard USER HOST NAME: one field of the vCard (e.g. NICKNAME, FN)",
    "get_vcard2": "get_vcard2 USER HOST NAME SUBNAME: one subfield (e.g. N FAMILY, EMAIL "
                  "USERID)",
    "set_vcard": "set_vcard USER HOST NAME CONTENT: set one field of the vCard",
    "set_vcard2": "set_vcard2 USER HOST NAME SUBNAME CONTENT: set one subfield",
    "set_nickname": "set_nickname USER HOST NICKNAME: the vCard's NICKNAME",
}


def _field(name: str) -> str:
    if not name or not name.replace("-", "").isalnum():
        raise CommandError(f"not a vCard field name: {name!r}")
    return "{%s}%s" % (NS, name.upper())


def install(mod: VcardModule) -> None:
    """Register the commands (for every host: the host argument picks its mod_vcard)."""
    from .vcard import VCARD, VcardModule

    def module(host: str) -> VcardModule:
        found = VcardModule.of(mod.server, host.lower())
        if found is None:
            raise CommandError(f"no mod_vcard on host {host!r}", "not_found")
        return found

    async def owner(user: str, host: str) -> tuple[VcardModule, JID]:
        m = module(host)
        try:
            jid = JID(user, m.host)
        except JIDError as e:
            raise CommandError(str(e)) from None
        if await mod.server.accounts.get(m.host, jid.local or "") is None:
            raise CommandError(f"user {jid} does not exist", "not_found")
        return m, jid

    async def get(user: str, host: str, path: list[str]) -> str:
        m, jid = await owner(user, host)
        el: Optional[Element] = await m.card(jid)
        for name in path:
            el = el.find(_field(name)) if el is not None else None
        return el.text if el is not None else ""

    async def put(user: str, host: str, path: list[str], content: str) -> str:
        m, jid = await owner(user, host)
        card = await m.card(jid) or Element(VCARD)
        el = card
        for name in path:
            el.raw = None  # (serialized again: a child changes)
            child = el.find(_field(name))
            el = child if child is not None else el.add(_field(name))
        el.children = [content] if content else []
        el.raw = None
        await m.put_card(jid, card, "admin")
        return ""

    async def get_vcard(user: str, host: str, name: str) -> str:
        return await get(user, host, [name])

    async def get_vcard2(user: str, host: str, name: str, subname: str) -> str:
        return await get(user, host, [name, subname])

    async def set_vcard(user: str, host: str, name: str, content: str) -> str:
        return await put(user, host, [name], content)

    async def set_vcard2(user: str, host: str, name: str, subname: str, content: str) -> str:
        return await put(user, host, [name, subname], content)

    async def set_nickname(user: str, host: str, nickname: str) -> str:
        return await put(user, host, ["NICKNAME"], nickname)

    for name, fn in (("get_vcard", get_vcard), ("get_vcard2", get_vcard2),
                     ("set_vcard", set_vcard), ("set_vcard2", set_vcard2),
                     ("set_nickname", set_nickname)):
        mod.api.add_command(name, fn, HELP[name])
