"""JIDs (RFC 7622): parsing, PRECIS enforcement and comparison.

Localparts are enforced with the PRECIS UsernameCaseMapped profile, resource
parts with OpaqueString, domain parts are lower-cased, IDNA-mapped and
checked. Parsed JIDs are cached: the same strings recur on every stanza.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import precis_i18n

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")
_LOCAL_FORBIDDEN = set('"&\'/:<>@')
_ASCII_DOMAIN_OK = set("abcdefghijklmnopqrstuvwxyz0123456789-.")


class JIDError(ValueError):
    """The string is not a valid JID (stanza error ``jid-malformed``)."""


def _part_len(part: str, what: str) -> None:
    if not part:
        raise JIDError(f"empty {what}")
    if len(part.encode("utf-8")) > 1023:
        raise JIDError(f"{what} longer than 1023 bytes")


@lru_cache(maxsize=65536)
def nodeprep(local: str) -> str:
    if local.isascii() and local.isalnum():
        out = local.lower()
    else:
        try:
            out = _USERNAME.enforce(local)
        except UnicodeError as e:
            raise JIDError(f"invalid localpart: {getattr(e, 'reason', e)}") from None
    if _LOCAL_FORBIDDEN.intersection(out):
        raise JIDError("invalid character in localpart")
    _part_len(out, "localpart")
    return out


@lru_cache(maxsize=65536)
def resourceprep(resource: str) -> str:
    if resource.isascii() and resource.isprintable():
        out = resource
    else:
        try:
            out = _OPAQUE.enforce(resource)
        except UnicodeError as e:
            raise JIDError(f"invalid resourcepart: {getattr(e, 'reason', e)}") from None
    _part_len(out, "resourcepart")
    return out


@lru_cache(maxsize=4096)
def nameprep(domain: str) -> str:
    if domain.endswith("."):
        domain = domain[:-1]
    d = domain.lower()
    if not d.isascii():
        try:
            d = d.encode("idna").decode("ascii")
        except UnicodeError:
            raise JIDError("invalid domainpart") from None
    _part_len(d, "domainpart")
    if d.startswith("[") and d.endswith("]"):
        return d  # IPv6 literal
    if not _ASCII_DOMAIN_OK.issuperset(d) or ".." in d or d.startswith(".") \
            or any(label.startswith("-") or label.endswith("-") or len(label) > 63
                   for label in d.split(".")):
        raise JIDError("invalid domainpart")
    return d


class JID:
    """An immutable, normalized JID. Use :func:`JID.parse` for strings."""

    __slots__ = ("local", "domain", "resource", "_str", "_bare")

    def __init__(self, local: Optional[str], domain: str, resource: Optional[str] = None,
                 *, prepped: bool = False) -> None:
        if not prepped:
            local = nodeprep(local) if local is not None else None
            domain = nameprep(domain)
            resource = resourceprep(resource) if resource is not None else None
        self.local = local
        self.domain = domain
        self.resource = resource
        s = domain
        if local is not None:
            s = f"{local}@{s}"
        if resource is not None:
            s = f"{s}/{resource}"
        self._str = s
        self._bare: Optional[JID] = None

    @staticmethod
    def parse(text: str) -> JID:
        return _parse(text)

    @property
    def bare(self) -> JID:
        if self.resource is None:
            return self
        b = self._bare
        if b is None:
            b = self._bare = JID(self.local, self.domain, None, prepped=True)
        return b

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    @property
    def is_domain(self) -> bool:
        return self.local is None and self.resource is None

    def with_resource(self, resource: Optional[str]) -> JID:
        return JID(self.local, self.domain, resource)

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"JID({self._str!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JID):
            return self._str == other._str
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._str)


@lru_cache(maxsize=131072)
def _parse(text: str) -> JID:
    if not text:
        raise JIDError("empty JID")
    slash = text.find("/")
    if slash >= 0:
        resource: Optional[str] = text[slash + 1:]
        rest = text[:slash]
    else:
        resource = None
        rest = text
    at = rest.find("@")
    if at >= 0:
        local: Optional[str] = rest[:at]
        domain = rest[at + 1:]
    else:
        local = None
        domain = rest
    if resource is not None and not resource:
        raise JIDError("empty resourcepart")
    if local is not None and not local:
        raise JIDError("empty localpart")
    return JID(local, domain, resource)


def parse_jid(text: str) -> JID:
    return _parse(text)
