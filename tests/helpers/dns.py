"""A tiny authoritative DNS server on loopback (UDP), built on dnspython.

Tests give it SRV and A records for made-up domains, so that a real server
(Prosody) or xmppd's resolver finds the test's ports through real DNS queries.
"""

from __future__ import annotations

import socket
import threading
from typing import Optional

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DNSServer:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, name: str, rtype: str, *values: str) -> None:
        """``add('_xmpp-server._tcp.a.test', 'SRV', '0 5 5269 host.a.test.')``."""
        key = (name.rstrip(".").lower() + ".", rtype.upper())
        self.records.setdefault(key, []).extend(values)

    def start(self) -> "DNSServer":
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                continue
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - ignore garbage
                continue
            self.sock.sendto(self._answer(query).to_wire(), addr)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        if not query.question:
            return resp
        q = query.question[0]
        name = q.name.to_text().lower()
        rtype = dns.rdatatype.to_text(q.rdtype)
        self.queries.append((name, rtype))
        values = self.records.get((name, rtype))
        if values:
            resp.answer.append(dns.rrset.from_text(name, 60, "IN", rtype, *values))
        elif not any(n == name for n, _ in self.records):
            resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.sock.close()
