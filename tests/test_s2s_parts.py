"""s2s building blocks without a server: dialback keys, SRV order and lookups
(against a real DNS server on loopback), certificate identities, stanza bytes.
"""

from __future__ import annotations

import datetime
from collections import Counter

import pytest
from conftest import run
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from helpers.dns import DNSServer

from xmppd.s2s import dialback
from xmppd.s2s.certs import XMPP_ADDR, cert_identities, names_domain
from xmppd.s2s.outgoing import wire
from xmppd.s2s.resolver import NoService, Resolver, Target, order_srv
from xmppd.xmlstream import parse_stanza


def test_dialback_key_matches_the_xep_0220_example() -> None:
    key = dialback.make_key(b"s3cr3tf0rd14lb4ck", "montague.example", "capulet.example",
                            "D60000229F")
    assert key == "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
    assert dialback.key_matches(b"s3cr3tf0rd14lb4ck", "montague.example", "capulet.example",
                                "D60000229F", f"\n  {key}\n")
    assert not dialback.key_matches(b"other", "montague.example", "capulet.example",
                                    "D60000229F", key)


def test_dialback_elements_use_the_db_prefix() -> None:
    assert dialback.result("a.test", "b.test", key="k") == \
        b"<db:result from='a.test' to='b.test'>k</db:result>"
    assert dialback.verify("a.test", "b.test", "i'd", type="valid") == \
        b"<db:verify from='a.test' to='b.test' id='i&apos;d' type='valid'/>"
    err = dialback.result("a.test", "b.test", error="item-not-found")
    assert b"type='error'" in err and b"<error type='cancel'><item-not-found" in err


def test_srv_order_priority_then_weight() -> None:
    records = [(20, 0, 5269, "backup.test"), (10, 60, 5269, "big.test"),
               (10, 40, 5270, "small.test"), (10, 0, 5271, "zero.test")]
    seen: Counter[str] = Counter()
    for _ in range(400):
        order = order_srv(records)
        assert order[-1] == Target("backup.test", 5269)
        assert {t.host for t in order[:3]} == {"big.test", "small.test", "zero.test"}
        seen[order[0].host] += 1
    # weight 60 comes first more often than weight 40; weight 0 almost never first
    assert seen["big.test"] > seen["small.test"] > seen["zero.test"]


def test_resolver_against_a_real_dns_server() -> None:
    dns = DNSServer()
    dns.add("_xmpp-server._tcp.srv.test", "SRV", "10 0 5999 xmpp2.srv.test.",
            "5 0 5888 xmpp1.srv.test.")
    dns.add("_xmpp-server._tcp.none.test", "SRV", "0 0 0 .")
    dns.add("plain.test", "A", "127.0.0.1")
    dns.start()
    try:
        r = Resolver({"static.test": {"host": "127.0.0.9", "port": 7000}}, 5269, 3,
                     nameservers=[("127.0.0.1", dns.port)])

        async def main() -> None:
            assert await r.targets("srv.test") == [Target("xmpp1.srv.test", 5888),
                                                    Target("xmpp2.srv.test", 5999)]
            # no SRV records: the domain itself on the default port
            assert await r.targets("plain.test") == [Target("plain.test", 5269)]
            assert await r.targets("missing.test") == [Target("missing.test", 5269)]
            with pytest.raises(NoService):
                await r.targets("none.test")
            with pytest.raises(NoService):  # RFC 6761: never looked up
                await r.targets("x.invalid")
            # s2s_hosts wins without any query
            n = len(dns.queries)
            assert await r.targets("static.test") == [Target("127.0.0.9", 7000)]
            assert len(dns.queries) == n

        run(main())
        assert ("_xmpp-server._tcp.srv.test.", "SRV") in dns.queries
    finally:
        dns.stop()


def _cert(san: list[x509.GeneralName]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cn.test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_certificate_identities() -> None:
    # xmppAddr is a UTF8String in an otherName (RFC 6120 13.7.1.4)
    xmpp_addr = x509.OtherName(XMPP_ADDR, b"\x0c\x0bchat.b.test")
    ids = cert_identities(_cert([x509.DNSName("*.a.test"), x509.DNSName("a.test"), xmpp_addr]))
    assert ids == ["*.a.test", "a.test", "chat.b.test"]
    assert names_domain(ids, "a.test") and names_domain(ids, "muc.a.test")
    assert names_domain(ids, "CHAT.b.test")
    assert not names_domain(ids, "x.muc.a.test") and not names_domain(ids, "b.test")
    assert cert_identities(_cert([])) == ["cn.test"]  # no SAN: the common name


def test_stanza_bytes_on_a_server_stream() -> None:
    el = parse_stanza(b"<message to='b@b.test' from='a@a.test/r'><body>hi</body></message>")
    assert wire(el) == b"<message to='b@b.test' from='a@a.test/r'><body>hi</body></message>"
    # raw bytes that name jabber:client explicitly are re-serialized (copy on write)
    el = parse_stanza(b"<message to='b@b.test'><body xmlns='jabber:client'>hi</body>"
                      b"</message>")
    assert el.raw is not None
    assert wire(el) == b"<message to='b@b.test'><body>hi</body></message>"
    assert el.raw is not None  # the original was not touched

