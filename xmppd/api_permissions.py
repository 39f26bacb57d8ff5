"""ejabberd's ``api_permissions``: who may call which admin command from where.

The option is a mapping of named groups. Each group has:

- ``from``: the front ends it applies to (``mod_http_api``, ``ejabberd_ctl``...);
  every front end when left out;
- ``who``: ``all``, ``none``, an ACL name, or entries ``ip: NETWORK``,
  ``user: JID``, ``acl: ACL`` (a name or an inline ACL) and ``access: RULE`` (a
  name or inline rules); a list, or a mapping of several entries, matches when
  one of its entries does. ``oauth: {scope: SCOPES, ...}`` matches a caller with an
  OAuth token (:mod:`xmppd.oauth`) that has one of the scopes, when the token's
  account passes the entry's other keys (as ``who`` has them; none: any account).
  A caller with a token matches only ``oauth`` entries;
- ``what``: command names, ``"*"`` for every command, ``"!NAME"`` to take one
  out again.

A call is allowed when one group allows it. ``xmppd ctl`` talks through a socket
that only the server's own user may open, so it is always allowed (the stock
"console commands" group). Without the option, the members of the ``admin`` ACL
may call every command but ``stop`` and ``start``, as in ejabberd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .acl import AccessControl, parse_acl_ref, parse_inline_access
from .confval import ConfigError, join
from .jid import JID


@dataclass(frozen=True)
class Who:
    kind: str  # all, none, acl (names, inline ACLs: ip, user...), access, oauth
    value: Any = None
    # oauth: the scopes, and who among the tokens' accounts (empty: anybody)
    scopes: frozenset[str] = frozenset()
    inner: tuple[Who, ...] = ()


@dataclass(frozen=True)
class Caller:
    """Who calls: the account (None: nobody logged in), from where, and the scopes of
    the OAuth token it used (None: no token)."""
    jid: Optional[JID]
    ip: Optional[str]
    scopes: Optional[frozenset[str]] = None


@dataclass(frozen=True)
class Permission:
    name: str
    fronts: Optional[frozenset[str]]  # None: every front end
    who: tuple[Who, ...]
    every: bool  # "*": every command not taken out
    commands: frozenset[str]
    taken_out: frozenset[str]

    def covers(self, command: str) -> bool:
        if command in self.taken_out:
            return False
        return self.every or command in self.commands


DEFAULT = (Permission("admin access", None, (Who("acl", "admin"),), True, frozenset(),
                      frozenset({"stop", "start"})),)


def _who_entry(key: str, value: Any, path: str, acls: dict[str, Any],
               warnings: list[str]) -> list[Who]:
    entry = join(path, key)
    if key in ("ip", "user"):
        return [Who("acl", parse_acl_ref({key: value}, path, acls))]
    if key == "acl":
        return [Who("acl", parse_acl_ref(value, entry, acls))]
    if key == "access":
        return [Who("access", parse_inline_access(value, entry, acls))]
    if key == "oauth":
        return [_oauth(value, entry, acls, warnings)]
    raise ConfigError(entry, "one of ip, user, acl, access, oauth", key)


def _oauth(raw: Any, path: str, acls: dict[str, Any], warnings: list[str]) -> Who:
    if not isinstance(raw, dict) or "scope" not in raw:
        raise ConfigError(path, "a mapping with a scope (and who may use it)", raw)
    scope = raw["scope"]
    scopes = scope if isinstance(scope, list) else [scope]
    if not scopes or not all(isinstance(s, str) and s for s in scopes):
        raise ConfigError(join(path, "scope"), "a scope such as ejabberd:admin, or a list",
                          scope)
    rest = {k: v for k, v in raw.items() if k != "scope"}
    inner = _who(rest, path, acls, warnings) if rest else ()
    if any(w.kind == "oauth" for w in inner):
        raise ConfigError(join(path, "oauth"), "ip, user, acl or access", "oauth")
    return Who("oauth", None, frozenset(scopes), inner)


def _who(raw: Any, path: str, acls: dict[str, Any], warnings: list[str]) -> tuple[Who, ...]:
    if raw in ("all", "none"):
        return (Who(raw),)
    if isinstance(raw, str):
        return (Who("acl", raw),)
    out: list[Who] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            out += _who_entry(str(key), value, path, acls, warnings)
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            out += _who(item, join(path, i), acls, warnings)
    else:
        raise ConfigError(path, "all, none, an ACL name, or ip/user/acl/access entries", raw)
    return tuple(out)


def _what(raw: Any, path: str, warnings: list[str]) -> tuple[bool, frozenset[str], frozenset[str]]:
    items = raw if isinstance(raw, list) else [raw]
    every, names, out = False, set(), set()
    for i, item in enumerate(items):
        p = join(path, i) if isinstance(raw, list) else path
        if not isinstance(item, str) or not item:
            raise ConfigError(p, "a command name, \"*\" or \"!name\"", item)
        if item == "*":
            every = True
        elif item.startswith("!"):
            out.add(item[1:])
        elif item.startswith("["):
            warnings.append(f"{p}: command tags such as {item} are not available in xmppd; "
                            "name the commands")
        else:
            names.add(item)
    return every, frozenset(names), frozenset(out)


def parse_api_permissions(raw: Any, path: str, acls: dict[str, Any],
                          warnings: list[str]) -> tuple[Permission, ...]:
    """The groups of ``api_permissions``; :data:`DEFAULT` when the option is not set."""
    if raw is None:
        return DEFAULT
    if not isinstance(raw, dict):
        raise ConfigError(path, "a mapping of permission group names", raw)
    out = []
    for name, group in raw.items():
        gpath = join(path, name)
        if not isinstance(group, dict):
            raise ConfigError(gpath, "a mapping with from, who and what", group)
        for key in group:
            if key not in ("from", "who", "what"):
                raise ConfigError(join(gpath, key), "one of from, who, what", key)
        fronts = None
        if "from" in group:
            f = group["from"]
            f = f if isinstance(f, list) else [f]
            if not all(isinstance(x, str) for x in f):
                raise ConfigError(join(gpath, "from"), "front end names such as mod_http_api",
                                  group["from"])
            fronts = frozenset(f)
        who = _who(group.get("who", "none"), join(gpath, "who"), acls, warnings)
        every, names, taken_out = _what(group.get("what", []), join(gpath, "what"), warnings)
        out.append(Permission(str(name), fronts, who, every, names, taken_out))
    return tuple(out)


def _matches(who: Who, access: AccessControl, caller: Caller) -> bool:
    if (who.kind == "oauth") != (caller.scopes is not None):
        return False   # a token matches oauth entries only, and only a token does
    if who.kind == "oauth":
        assert caller.scopes is not None
        return bool(who.scopes & caller.scopes) and (
            not who.inner or any(_matches(w, access, Caller(caller.jid, caller.ip))
                                 for w in who.inner))
    if who.kind in ("all", "none"):
        return who.kind == "all"
    if who.kind == "acl":
        return access.acl_match(who.value, caller.jid, caller.ip)
    return access.access(who.value, caller.jid, caller.ip)


def allowed(perms: tuple[Permission, ...], access: AccessControl, front: str, command: str,
            jid: Optional[JID], ip: Optional[str],
            scopes: Optional[frozenset[str]] = None) -> bool:
    """May ``jid`` (None: nobody logged in) from ``ip`` (with an OAuth token of
    ``scopes``) call ``command`` through ``front``?"""
    caller = Caller(jid, ip, scopes)
    for p in perms:
        if p.fronts is not None and front not in p.fronts:
            continue
        if p.covers(command) and any(_matches(w, access, caller) for w in p.who):
            return True
    return False
