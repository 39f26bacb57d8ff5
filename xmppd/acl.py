"""ejabberd ACLs, access rules and shaper rules.

``acl`` names match users by ``user``, ``server``, ``resource``, ``ip`` and
their ``_regexp`` / ``_glob`` forms. ``access_rules`` evaluate in order to
``allow`` or ``deny``; ``shaper_rules`` evaluate to a value (a number or a
shaper name). The predefined ACL ``all`` matches everything, ``none`` nothing.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Optional, Union

from .confval import ConfigError, join
from .jid import JID, JIDError

_KINDS = ("user", "server", "resource", "ip", "user_regexp", "server_regexp",
          "resource_regexp", "node_regexp", "user_glob", "server_glob", "resource_glob",
          "node_glob", "shared_group", "acl")

IPNet = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class AclSpec:
    kind: str
    value: Any


AclRef = Union[str, tuple[AclSpec, ...]]


def _compile(kind: str, value: Any, path: str) -> AclSpec:
    if kind == "ip":
        try:
            return AclSpec(kind, ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise ConfigError(path, "an IP network such as 127.0.0.0/8", value) from None
    if kind.endswith("_regexp"):
        try:
            return AclSpec(kind, re.compile(str(value)))
        except re.error:
            raise ConfigError(path, "a valid regular expression", value) from None
    if kind == "node_regexp" or kind == "node_glob":
        if not isinstance(value, dict):
            raise ConfigError(path, "a mapping of user pattern to server pattern", value)
    if isinstance(value, dict):  # old style {user: server}
        ((u, s),) = value.items()
        return AclSpec(kind, (str(u), str(s)))
    return AclSpec(kind, str(value))


def _parse_spec(raw: Any, path: str) -> tuple[AclSpec, ...]:
    if isinstance(raw, list):
        out: list[AclSpec] = []
        for i, item in enumerate(raw):
            out.extend(_parse_spec(item, join(path, i)))
        return tuple(out)
    if not isinstance(raw, dict):
        raise ConfigError(path, "a mapping such as {user: admin} or {ip: 127.0.0.0/8}", raw)
    specs: list[AclSpec] = []
    for kind, values in raw.items():
        if kind not in _KINDS:
            raise ConfigError(join(path, kind), "one of " + ", ".join(_KINDS), kind,
                              show_got=False)
        vals = values if isinstance(values, list) else [values]
        for i, v in enumerate(vals):
            specs.append(_compile(kind, v, join(join(path, kind), i) if len(vals) > 1
                                  else join(path, kind)))
    return tuple(specs)


def parse_acls(raw: Any, path: str) -> dict[str, tuple[AclSpec, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "a mapping of ACL names", raw)
    out = {str(name): _parse_spec(spec, join(path, name)) for name, spec in raw.items()}
    for name, specs in out.items():
        if any(s.kind == "acl" for s in specs):  # (one ACL naming another could loop)
            raise ConfigError(join(join(path, name), "acl"),
                              "users, servers or addresses: an ACL does not name another ACL",
                              show_got=False)
    return out


def parse_acl_ref(raw: Any, path: str, acls: dict[str, Any]) -> AclRef:
    if isinstance(raw, str):
        return raw  # an undefined ACL matches nobody, as in ejabberd
    if isinstance(raw, (int, float)):
        raise ConfigError(path, "an ACL name or an inline ACL", raw)
    return _parse_spec(raw, path)


Rule = tuple[str, Union[AclRef, list[AclRef]]]


def _parse_rules(raw: Any, path: str, acls: dict[str, Any],
                 value_kind: str) -> list[tuple[Any, list[AclRef]]]:
    """Parse ``{action: acl, ...}`` or ``[{action: acl}, action, ...]``."""
    rules: list[tuple[Any, list[AclRef]]] = []
    items: list[tuple[Any, Any, str]] = []
    if isinstance(raw, dict):
        items = [(k, v, join(path, k)) for k, v in raw.items()]
    elif isinstance(raw, list):
        for i, entry in enumerate(raw):
            p = join(path, i)
            if isinstance(entry, dict):
                items.extend((k, v, join(p, k)) for k, v in entry.items())
            else:
                items.append((entry, "all", p))
    else:
        items = [(raw, "all", path)]
    for action, ref, p in items:
        if value_kind == "access" and action not in ("allow", "deny"):
            raise ConfigError(p, "allow or deny", action)
        refs = ref if isinstance(ref, list) and all(isinstance(r, str) for r in ref) else [ref]
        rules.append((action, [parse_acl_ref(r, p, acls) for r in refs]))
    return rules


def parse_access_rules(raw: Any, path: str, acls: dict[str, Any]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "a mapping of access rule names", raw)
    return {str(name): _parse_rules(rules, join(path, name), acls, "access")
            for name, rules in raw.items()}


def parse_shaper_rules(raw: Any, path: str, acls: dict[str, Any]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "a mapping of shaper rule names", raw)
    return {str(name): _parse_rules(rules, join(path, name), acls, "shaper")
            for name, rules in raw.items()}


def parse_inline_access(raw: Any, path: str, acls: dict[str, Any]) -> Any:
    """A module's ``access`` option: a rule name or an inline rule list."""
    if isinstance(raw, str):
        return raw
    return _parse_rules(raw, path, acls, "access")


def v_access(value: Any, path: str) -> Any:
    """A module option naming an access rule, or giving one inline."""
    if isinstance(value, str):
        return value
    return parse_inline_access(value, path, {})


class AccessControl:
    """Evaluates ACLs, access rules and shaper rules of a configuration."""

    def __init__(self, acls: dict[str, tuple[AclSpec, ...]], access_rules: dict[str, Any],
                 shaper_rules: dict[str, Any], hosts: tuple[str, ...]) -> None:
        self.acls = acls
        self.access_rules = access_rules
        self.shaper_rules = shaper_rules
        self.hosts = hosts

    def _spec_match(self, spec: AclSpec, jid: Optional[JID], ip: Optional[str]) -> bool:
        kind, value = spec.kind, spec.value
        if kind == "ip":
            if ip is None:
                return False
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            return addr.version == value.version and addr in value
        if kind == "acl":  # a named ACL, inside access rules
            return self.acl_match(value, jid, ip)
        if jid is None:
            return False
        local = jid.local or ""
        if kind == "user":
            if isinstance(value, tuple):
                return local == value[0] and jid.domain == value[1]
            if "@" in value:
                try:
                    return jid.bare == JID.parse(value).bare
                except JIDError:
                    return False
            return local == value and jid.domain in self.hosts
        if kind == "server":
            return jid.domain == value
        if kind == "resource":
            return jid.resource == value
        if kind == "user_regexp":
            if isinstance(value, tuple):
                return bool(re.search(value[0], local)) and jid.domain == value[1]
            return jid.local is not None and bool(value.search(local)) and jid.domain in self.hosts
        if kind == "server_regexp":
            return bool(value.search(jid.domain))
        if kind == "resource_regexp":
            return jid.resource is not None and bool(value.search(jid.resource))
        if kind == "node_regexp":
            return bool(re.search(value[0], local)) and bool(re.search(value[1], jid.domain))
        if kind == "user_glob":
            return jid.local is not None and fnmatch.fnmatchcase(local, value) and jid.domain in self.hosts
        if kind == "server_glob":
            return fnmatch.fnmatchcase(jid.domain, value)
        if kind == "resource_glob":
            return jid.resource is not None and fnmatch.fnmatchcase(jid.resource, value)
        if kind == "node_glob":
            return fnmatch.fnmatchcase(local, value[0]) and fnmatch.fnmatchcase(jid.domain, value[1])
        return False

    def acl_match(self, ref: AclRef, jid: Optional[JID], ip: Optional[str] = None) -> bool:
        if isinstance(ref, str):
            if ref == "all":
                return True
            if ref == "none":
                return False
            specs = self.acls.get(ref, ())
        else:
            specs = ref
        return any(self._spec_match(s, jid, ip) for s in specs)

    def _first(self, rules: list[tuple[Any, list[AclRef]]], jid: Optional[JID],
               ip: Optional[str]) -> Any:
        for value, refs in rules:
            if all(self.acl_match(r, jid, ip) for r in refs):
                return value
        return None

    def access(self, rule: Any, jid: Optional[JID], ip: Optional[str] = None) -> bool:
        """True when ``rule`` (a name or inline rules) allows ``jid``/``ip``."""
        if rule == "all" or rule == "allow":
            return True
        if rule == "none" or rule == "deny":
            return False
        rules = self.access_rules.get(rule) if isinstance(rule, str) else rule
        if rules is None:
            # an ACL name used directly as an access rule (ejabberd allows it)
            if isinstance(rule, str) and rule in self.acls:
                return self.acl_match(rule, jid, ip)
            return False
        return self._first(rules, jid, ip) == "allow"

    def access_or_local(self, rule: Any, jid: JID) -> bool:
        """:meth:`access`, where a rule ``local`` that the configuration does not define
        means ejabberd's default: the users of this server's hosts."""
        if rule == "local" and rule not in self.access_rules and rule not in self.acls:
            return jid.domain in self.hosts
        return self.access(rule, jid)

    def shaper_value(self, rule: Any, jid: Optional[JID], ip: Optional[str] = None,
                     default: Any = None) -> Any:
        """Evaluate a shaper rule name (or a constant) to its value."""
        if isinstance(rule, (int, float)) and not isinstance(rule, bool):
            return rule
        rules = self.shaper_rules.get(rule) if isinstance(rule, str) else None
        if rules is None:
            return rule if rule is not None else default
        value = self._first(rules, jid, ip)
        return default if value is None else value
