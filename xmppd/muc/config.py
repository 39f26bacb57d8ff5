"""Room configuration: ejabberd's room options and the XEP-0004 muc#roomconfig form.

One dataclass holds a room's options under ejabberd's names (the keys of
``default_room_options``); :func:`config_form` renders it as the owner's form
and :func:`apply_form` reads a submitted form back (XEP-0045 10.2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from ..confval import ConfigError, join
from ..dataforms import add_field
from ..stanza import StanzaError
from ..xml import Element
from .ns import DATA, ROOMCONFIG, q

ALLOWPM = ("anyone", "participants", "moderators", "none")
BROADCAST_ROLES = ("moderator", "participant", "visitor")


@dataclass
class RoomConfig:
    title: str = ""
    description: str = ""
    lang: str = ""
    persistent: bool = False
    public: bool = True
    public_list: bool = True
    password_protected: bool = False
    password: str = ""
    anonymous: bool = True          # semi-anonymous: real JIDs for moderators only
    members_only: bool = False
    moderated: bool = True
    members_by_default: bool = True
    allow_change_subj: bool = True
    allowpm: str = "anyone"
    allow_user_invites: bool = False
    allow_query_users: bool = True
    allow_visitor_status: bool = True
    allow_visitor_nickchange: bool = True
    allow_voice_requests: bool = True
    voice_request_min_interval: int = 1800
    max_users: int = 200
    mam: bool = True                # the room's archive (XEP-0313); status 170
    presence_broadcast: list[str] = field(default_factory=lambda: list(BROADCAST_ROLES))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoomConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def copy(self) -> RoomConfig:
        return dataclasses.replace(self, presence_broadcast=list(self.presence_broadcast))


# ejabberd spells some options differently in default_room_options
_ALIASES = {"allow_private_messages": "allowpm", "logging": "mam"}


def validate_room_options(value: Any, path: str, warnings: Optional[list[str]] = None) -> dict[str, Any]:
    """``default_room_options`` from the YAML: known keys with the right types."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, "a mapping of room options", value)
    fields = {f.name: f for f in dataclasses.fields(RoomConfig)}
    defaults = RoomConfig()
    out: dict[str, Any] = {}
    for key, v in value.items():
        p = join(path, key)
        name = _ALIASES.get(key, key)
        if name not in fields:
            if warnings is not None:
                warnings.append(f"{p}: room option not supported by xmppd, ignored")
            continue
        if name == "allowpm" and isinstance(v, bool):
            v = "anyone" if v else "none"
        current = getattr(defaults, name)
        if isinstance(current, bool):
            if not isinstance(v, bool):
                raise ConfigError(p, "true or false", v)
        elif isinstance(current, int):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(p, "a non-negative integer", v)
        elif isinstance(current, list):
            items = v if isinstance(v, list) else [v]
            if any(r not in BROADCAST_ROLES for r in items):
                raise ConfigError(p, "a list of moderator, participant, visitor", v)
            v = list(items)
        elif name == "allowpm":
            if v not in ALLOWPM:
                raise ConfigError(p, "one of " + ", ".join(ALLOWPM), v)
        else:
            v = "" if v is None else str(v)
        out[name] = v
    return out


# -- the XEP-0004 form ------------------------------------------------------------

def _b(v: bool) -> list[str]:
    return ["1" if v else "0"]


def config_form(cfg: RoomConfig, room: str, max_users: int, owners: list[str],
                admins: list[str]) -> Element:
    """The room configuration form an owner fills in (XEP-0045 10.2)."""
    form = Element(q(DATA, "x"), {"type": "form"})
    form.add(q(DATA, "title"), None, f"Configuration of room {room}")
    form.add(q(DATA, "instructions"), None,
             "Complete this form to change the room's configuration.")
    add_field(form, "FORM_TYPE", "hidden", "", [ROOMCONFIG])
    add_field(form, "muc#roomconfig_roomname", "text-single", "Room title", [cfg.title])
    add_field(form, "muc#roomconfig_roomdesc", "text-single", "Room description", [cfg.description])
    add_field(form, "muc#roomconfig_lang", "text-single", "Natural language of the room", [cfg.lang])
    add_field(form, "muc#roomconfig_persistentroom", "boolean", "Make room persistent",
              _b(cfg.persistent))
    add_field(form, "muc#roomconfig_publicroom", "boolean", "Make room public searchable",
              _b(cfg.public))
    add_field(form, "public_list", "boolean", "Make participants list public", _b(cfg.public_list))
    add_field(form, "muc#roomconfig_passwordprotectedroom", "boolean", "Make room password protected",
              _b(cfg.password_protected))
    add_field(form, "muc#roomconfig_roomsecret", "text-private", "Password", [cfg.password])
    sizes = sorted({n for n in (5, 10, 20, 30, 50, 100, 200, 500, 1000) if n <= max_users}
                   | {max_users, cfg.max_users})
    add_field(form, "muc#roomconfig_maxusers", "list-single", "Maximum number of occupants",
              [str(cfg.max_users)], [(str(n), str(n)) for n in sizes])
    add_field(form, "muc#roomconfig_whois", "list-single", "Who may discover real JIDs",
              ["moderators" if cfg.anonymous else "anyone"],
              [("moderators", "Moderators only"), ("anyone", "Anyone")])
    add_field(form, "muc#roomconfig_presencebroadcast", "list-multi",
              "Roles for which presence is broadcast", list(cfg.presence_broadcast),
              [(r, r.capitalize()) for r in BROADCAST_ROLES])
    add_field(form, "muc#roomconfig_membersonly", "boolean", "Make room members-only",
              _b(cfg.members_only))
    add_field(form, "muc#roomconfig_moderatedroom", "boolean", "Make room moderated",
              _b(cfg.moderated))
    add_field(form, "members_by_default", "boolean", "Default occupants as participants",
              _b(cfg.members_by_default))
    add_field(form, "muc#roomconfig_changesubject", "boolean", "Allow occupants to change the subject",
              _b(cfg.allow_change_subj))
    add_field(form, "muc#roomconfig_allowpm", "list-single", "Who may send private messages",
              [cfg.allowpm], [(v, v.capitalize()) for v in ALLOWPM])
    add_field(form, "muc#roomconfig_allowinvites", "boolean", "Allow occupants to send invitations",
              _b(cfg.allow_user_invites))
    add_field(form, "allow_query_users", "boolean", "Allow occupants to query other occupants",
              _b(cfg.allow_query_users))
    add_field(form, "allow_visitor_status", "boolean", "Allow visitors to send status text",
              _b(cfg.allow_visitor_status))
    add_field(form, "allow_visitor_nickchange", "boolean", "Allow visitors to change nickname",
              _b(cfg.allow_visitor_nickchange))
    add_field(form, "muc#roomconfig_allowvoicerequests", "boolean", "Allow visitors to request voice",
              _b(cfg.allow_voice_requests))
    add_field(form, "muc#roomconfig_voicerequestmininterval", "text-single",
              "Minimum seconds between voice requests", [str(cfg.voice_request_min_interval)])
    add_field(form, "muc#roomconfig_enablearchiving", "boolean",
              "Archive messages (members who were away can catch up)", _b(cfg.mam))
    add_field(form, "muc#roomconfig_roomowners", "jid-multi", "Room owners", owners)
    add_field(form, "muc#roomconfig_roomadmins", "jid-multi", "Room admins", admins)
    return form


def _bool(vals: list[str], var: str) -> bool:
    v = vals[0].strip().lower() if vals else ""
    if v in ("1", "true"):
        return True
    if v in ("0", "false", ""):
        return False
    raise StanzaError("bad-request", "modify", f"{var}: expected a boolean")


_BOOLS = {
    "muc#roomconfig_persistentroom": "persistent",
    "muc#roomconfig_publicroom": "public",
    "public_list": "public_list",
    "muc#roomconfig_passwordprotectedroom": "password_protected",
    "muc#roomconfig_membersonly": "members_only",
    "muc#roomconfig_moderatedroom": "moderated",
    "members_by_default": "members_by_default",
    "muc#roomconfig_changesubject": "allow_change_subj",
    "muc#roomconfig_allowinvites": "allow_user_invites",
    "allow_query_users": "allow_query_users",
    "allow_visitor_status": "allow_visitor_status",
    "allow_visitor_nickchange": "allow_visitor_nickchange",
    "muc#roomconfig_allowvoicerequests": "allow_voice_requests",
    "muc#roomconfig_enablearchiving": "mam",
    "muc#roomconfig_enablelogging": "mam",
    "mam": "mam",
}
_TEXTS = {
    "muc#roomconfig_roomname": "title",
    "muc#roomconfig_roomdesc": "description",
    "muc#roomconfig_lang": "lang",
    "muc#roomconfig_roomsecret": "password",
}


def apply_form(cfg: RoomConfig, values: dict[str, list[str]], max_users: int) -> RoomConfig:
    """A new configuration from a submitted form; absent fields keep their value."""
    new = cfg.copy()
    for var, attr in _BOOLS.items():
        if var in values:
            setattr(new, attr, _bool(values[var], var))
    for var, attr in _TEXTS.items():
        if var in values:
            setattr(new, attr, "\n".join(values[var]))
    if "muc#roomconfig_maxusers" in values:
        raw = (values["muc#roomconfig_maxusers"] or [""])[0].strip()
        if raw in ("", "none"):
            new.max_users = max_users
        else:
            try:
                n = int(raw)
            except ValueError:
                raise StanzaError("bad-request", "modify",
                                  "muc#roomconfig_maxusers: expected a number") from None
            if n < 1:
                raise StanzaError("bad-request", "modify", "muc#roomconfig_maxusers: at least 1")
            new.max_users = min(n, max_users)
    if "muc#roomconfig_whois" in values:
        v = (values["muc#roomconfig_whois"] or ["moderators"])[0]
        if v not in ("moderators", "anyone"):
            raise StanzaError("bad-request", "modify", "muc#roomconfig_whois: moderators or anyone")
        new.anonymous = v == "moderators"
    if "muc#roomconfig_allowpm" in values:
        v = (values["muc#roomconfig_allowpm"] or ["anyone"])[0]
        if v not in ALLOWPM:
            raise StanzaError("bad-request", "modify", "muc#roomconfig_allowpm: " + "/".join(ALLOWPM))
        new.allowpm = v
    if "muc#roomconfig_presencebroadcast" in values:
        roles = values["muc#roomconfig_presencebroadcast"]
        if any(r not in BROADCAST_ROLES for r in roles):
            raise StanzaError("bad-request", "modify", "muc#roomconfig_presencebroadcast: roles")
        new.presence_broadcast = list(roles)
    if "muc#roomconfig_voicerequestmininterval" in values:
        raw = (values["muc#roomconfig_voicerequestmininterval"] or ["0"])[0].strip() or "0"
        try:
            new.voice_request_min_interval = max(0, int(raw))
        except ValueError:
            raise StanzaError("bad-request", "modify",
                              "muc#roomconfig_voicerequestmininterval: a number") from None
    if (values.get("muc#roomconfig_roomsecret") or [""])[0] and \
            "muc#roomconfig_passwordprotectedroom" not in values:
        new.password_protected = True  # a password alone protects the room
    if new.password_protected and not new.password:
        raise StanzaError("not-acceptable", "modify", "a password-protected room needs a password")
    if not new.password_protected:
        new.password = ""
    return new
