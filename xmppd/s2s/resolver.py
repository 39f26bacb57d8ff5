"""Where a remote domain's server listens (RFC 6120 3.2).

1. ``s2s_hosts`` (static overrides for tests and private deployments; ``tls: true``
   for Direct TLS);
2. DNS SRV ``_xmpps-server._tcp.DOMAIN`` (Direct TLS, XEP-0368) and
   ``_xmpp-server._tcp.DOMAIN`` (STARTTLS), merged by priority (Direct TLS first at the
   same priority), then weight (RFC 2782); a single target of ``.`` means the domain
   offers no service;
3. when there are no SRV records (or DNS fails): the domain itself on
   ``outgoing_s2s_port``.

Addresses of each target are looked up with ``getaddrinfo`` when connecting.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Optional

log = logging.getLogger(__name__)


class NoService(Exception):
    """The domain says it has no XMPP server (SRV target '.')."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool = False   # Direct TLS (XEP-0368): TLS from the first byte


def order_srv(records: list[tuple[int, int, int, str]], tls: bool = False) -> list[Target]:
    """RFC 2782 order: ascending priority; weighted random order within one priority."""
    out: list[Target] = []
    for prio in sorted({r[0] for r in records}):
        group = [r for r in records if r[0] == prio]
        while group:
            total = sum(r[1] for r in group)
            if total == 0:
                pick = group[0]
            else:
                n = random.randint(0, total)
                acc = 0
                pick = group[-1]
                for r in group:
                    acc += r[1]
                    if acc >= n and r[1] > 0:
                        pick = r
                        break
            group.remove(pick)
            out.append(Target(pick[3], pick[2], tls))
    return out


def merge_srv(direct: list[tuple[int, int, int, str]],
              plain: list[tuple[int, int, int, str]]) -> list[Target]:
    """Both services' targets: by priority, Direct TLS first where priorities tie
    (XEP-0368 3)."""
    by_prio: dict[int, list[Target]] = {}
    for records, tls in ((direct, True), (plain, False)):
        for prio in sorted({r[0] for r in records}):
            by_prio.setdefault(prio, []).extend(
                order_srv([r for r in records if r[0] == prio], tls))
    return [t for prio in sorted(by_prio) for t in by_prio[prio]]


class Resolver:
    def __init__(self, overrides: dict[str, dict[str, Any]], default_port: int,
                 timeout: float, nameservers: Optional[list[tuple[str, int]]] = None) -> None:
        self.overrides = overrides
        self.default_port = default_port
        self.timeout = timeout
        self.nameservers = nameservers
        self._dns: Any = None

    def _resolver(self) -> Any:
        if self._dns is None:
            import dns.asyncresolver
            import dns.resolver
            if self.nameservers:
                r = dns.asyncresolver.Resolver(configure=False)
                r.nameservers = [ip for ip, _ in self.nameservers]
                r.port = self.nameservers[0][1]
            else:
                try:
                    r = dns.asyncresolver.Resolver()
                except dns.resolver.NoResolverConfiguration:
                    r = None
            self._dns = r if r is not None else False
        return self._dns or None

    async def targets(self, domain: str) -> list[Target]:
        """Targets to try in order; raises :class:`NoService`."""
        static = self.overrides.get(domain)
        if static is not None:
            return [Target(static["host"], static["port"], bool(static.get("tls")))]
        if domain == "invalid" or domain.endswith(".invalid"):
            raise NoService(f"{domain} is under .invalid, which never resolves (RFC 6761)")
        import asyncio
        found_direct, records = await asyncio.gather(self._srv(domain, "xmpps-server"),
                                                     self._srv(domain))
        direct = [r for r in found_direct or [] if r[3] not in (".", "")]
        if records is None and not direct:
            return [Target(domain, self.default_port)]
        records = records or []
        if len(records) == 1 and records[0][3] in (".", "") and not direct:
            raise NoService(f"{domain} has no XMPP service (SRV target '.')")
        return merge_srv(direct, [r for r in records if r[3] not in (".", "")])

    async def _srv(self, domain: str, service: str = "xmpp-server"
                   ) -> Optional[list[tuple[int, int, int, str]]]:
        resolver = self._resolver()
        if resolver is None:
            return None
        import dns.exception
        import dns.resolver
        name = f"_{service}._tcp.{domain}."
        try:
            answer = await resolver.resolve(name, "SRV", lifetime=self.timeout,
                                            raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return None
        except dns.exception.DNSException as e:
            log.info("SRV lookup of %s failed (%s); trying the domain itself", name, e)
            return None
        records = [(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
                   for r in answer]
        return records or None
