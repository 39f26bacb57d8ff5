"""Room administration commands of ejabberd's mod_muc_admin, for ``xmppd ctl`` and the
HTTP API: create and destroy rooms, read and change their options and affiliations.

Each command runs on every node of a cluster; the node that holds the room (one per
room, :meth:`MucService.holds`) acts, loading a persistent room from the database if
it is not in memory, and the others answer nothing. Changes go through the same code
as the owner's and admins' requests (XEP-0045 sections 9 and 10): occupants are told,
and what is persistent is stored.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

import yaml

from ..commands import CommandError, all_lines
from ..confval import ConfigError
from ..jid import JID, JIDError
from . import admin, owner
from .config import RoomConfig, validate_room_options
from .roles import AFFILIATIONS
from .room import Room

if TYPE_CHECKING:
    from .service import MucService

HELP = {
    "create_room": "create_room NAME SERVICE HOST: a persistent room with the default options",
    "create_room_with_opts": "create_room_with_opts NAME SERVICE HOST OPTIONS: the same, with "
                             "options as 'name:value' words (or a JSON object)",
    "destroy_room": "destroy_room NAME SERVICE: occupants are told, the room and its archive go",
    "get_room_options": "get_room_options NAME SERVICE: a line per option: name, value",
    "change_room_option": "change_room_option NAME SERVICE OPTION VALUE: e.g. members_only true",
    "get_room_affiliations": "get_room_affiliations NAME SERVICE: a line per affiliation: "
                             "user, domain, affiliation, reason",
    "set_room_affiliation": "set_room_affiliation NAME SERVICE JID AFFILIATION: owner, admin, "
                            "member, outcast or none",
    "get_user_rooms": "get_user_rooms USER HOST: the rooms the user is in now",
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_options(text: str) -> dict[str, Any]:
    """``name:value`` words (ejabberdctl) or JSON (a mapping, or ejabberd's list of
    ``{"name": ..., "value": ...}``), values as in YAML; validated as room options."""
    text = text.strip()
    raw: Any
    if text.startswith(("{", "[")):
        try:
            raw = json.loads(text)
        except ValueError:
            raise CommandError("OPTIONS: not valid JSON") from None
        if isinstance(raw, list):
            try:
                raw = {str(o["name"]): o["value"] for o in raw}
            except (KeyError, TypeError):
                raise CommandError("OPTIONS: a list of {name, value} objects") from None
        if not isinstance(raw, dict):
            raise CommandError("OPTIONS: a JSON object of room options")
    else:
        raw = {}
        for word in text.split():
            key, sep, value = word.partition(":")
            if not sep or not key:
                raise CommandError(f"OPTIONS: expected name:value, got {word!r}")
            raw[key] = value
    parsed = {k: yaml.safe_load(v) if isinstance(v, str) and v else v for k, v in raw.items()}
    known = {f.name for f in dataclasses.fields(RoomConfig)} | {"allow_private_messages",
                                                                 "logging"}
    unknown = sorted(k for k in parsed if k not in known)
    if unknown:
        raise CommandError("unknown room options: " + ", ".join(unknown))
    for key in ("title", "description", "password", "lang"):
        if key in parsed and parsed[key] is not None:
            parsed[key] = str(raw[key])  # (text, even when it looks like a number)
    try:
        return validate_room_options(parsed, "OPTIONS")
    except ConfigError as e:
        raise CommandError(str(e)) from None


def install(muc: MucService) -> None:
    server = muc.server

    def service(name: str) -> MucService:
        found = muc.service_for(name)
        if found is None:
            raise CommandError(f"no MUC service {name}", "not_found")
        return found

    def room_jid(svc: MucService, name: str) -> JID:
        try:
            jid = JID(name, svc.domain)
        except JIDError as e:
            raise CommandError(f"room name {name!r}: {e}") from None
        if jid.local is None:
            raise CommandError("a room needs a name")
        return jid

    async def held(name: str, service_name: str) -> tuple[MucService, Room] | None:
        """The room, if this node holds it (None on the other nodes)."""
        svc = service(service_name)
        jid = room_jid(svc, name)
        if not svc.holds(jid):
            return None
        room = await svc.room_for_command(jid)
        if room is None:
            raise CommandError(f"room {jid} does not exist", "not_found")
        return svc, room

    async def create(name: str, service_name: str, host: str, options: dict[str, Any]) -> str:
        svc = service(service_name)
        if host.lower() not in server.hosts:
            raise CommandError(f"unknown host {host}", "not_found")
        jid = room_jid(svc, name)
        if not svc.holds(jid):
            return ""
        if len(name) > svc.opts["max_room_id"]:
            raise CommandError("the room name is too long")
        if await svc.room_for_command(jid) is not None or jid in svc.rooms:
            raise CommandError(f"room {jid} exists", "conflict")
        # persistent always: nobody is in it to keep a temporary room alive
        cfg = dataclasses.replace(svc.defaults.copy(), **{**options, "persistent": True})
        room = svc.rooms[jid] = Room(jid, svc, cfg)
        svc.idle_since[jid] = time.monotonic()
        svc.run_in(room, lambda: room.out.effect("save"))
        return ""

    async def create_room(name: str, service: str, host: str) -> str:
        return await create(name, service, host, {})

    async def create_room_with_opts(name: str, service: str, host: str, options: str) -> str:
        return await create(name, service, host, parse_options(options))

    async def destroy_room(name: str, service: str) -> str:
        found = await held(name, service)
        if found is not None:
            svc, room = found
            svc.run_in(room, lambda: owner.destroy_room(room, None, None, None))
        return ""

    async def get_room_options(name: str, service: str) -> str:
        found = await held(name, service)
        if found is None:
            return ""
        return "\n".join(f"{k}\t{_text(v)}" for k, v in found[1].config.to_dict().items())

    async def change_room_option(name: str, service: str, option: str, value: str) -> str:
        found = await held(name, service)
        if found is None:
            return ""
        svc, room = found
        vals = parse_options(json.dumps({option: value}))

        def change() -> None:
            old, was_locked = room.config, room.locked
            room.config, room.locked = dataclasses.replace(old, **vals), False
            owner.settle(room, old, room.config, was_locked)
        svc.run_in(room, change)
        return ""

    async def get_room_affiliations(name: str, service: str) -> str:
        found = await held(name, service)
        if found is None:
            return ""
        lines = []
        for bare, (aff, reason) in sorted(found[1].affiliations.items()):
            user, _, domain = bare.rpartition("@")
            lines.append(f"{user}\t{domain}\t{aff}\t{reason}")
        return "\n".join(lines)

    async def set_room_affiliation(name: str, service: str, jid: str, affiliation: str) -> str:
        if affiliation not in AFFILIATIONS:
            raise CommandError("AFFILIATION is one of " + ", ".join(AFFILIATIONS))
        try:
            bare = str(JID.parse(jid).bare)
        except JIDError as e:
            raise CommandError(f"JID {jid!r}: {e}") from None
        found = await held(name, service)
        if found is None:
            return ""
        svc, room = found

        def change() -> None:
            admin.set_affiliation(room, bare, affiliation, None, "")
            if room.config.persistent:
                room.out.effect("save")
        svc.run_in(room, change)
        return ""

    def get_user_rooms(user: str, host: str) -> str:
        try:
            bare = JID(user, host)
        except JIDError as e:
            raise CommandError(str(e)) from None
        return "\n".join(sorted(str(r) for m in muc.services()
                                 for r in m.user_rooms.get(bare, ())))

    for fn in (create_room, create_room_with_opts, destroy_room, get_room_options,
               change_room_option, get_room_affiliations, set_room_affiliation, get_user_rooms):
        muc.api.add_command(fn.__name__, fn, HELP[fn.__name__], merge=all_lines)
