"""Federation between two xmppd processes on loopback (a.test and b.test)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.federation import federated_pair, s2s_connections
from helpers.procs import XmppdServer, free_port
from helpers.raw import C, STANZA_ERR, RawClient

PING = "urn:xmpp:ping"


def error_of(el: ET.Element) -> str:
    err = el.find(f"{C}error")
    assert err is not None, ET.tostring(el)
    return next(c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZA_ERR}}}")
                and not c.tag.endswith("}text"))


@pytest.fixture
def pair(make_server: Callable[..., XmppdServer]) -> tuple[XmppdServer, XmppdServer]:
    a, b = federated_pair(make_server)
    a.register("alice", "pw", host="a.test")
    b.register("bob", "pw", host="b.test")
    a.start()
    b.start()
    return a, b


async def login(srv: XmppdServer, user: str, host: str, resource: str) -> RawClient:
    c = RawClient(srv.c2s_tls, tls=True, host=host)
    await c.login(user, "pw", resource)
    return c


def test_users_on_two_servers_talk(pair: tuple[XmppdServer, XmppdServer]) -> None:
    a, b = pair

    async def main() -> None:
        alice = await login(a, "alice", "a.test", "home")
        bob = await login(b, "bob", "b.test", "phone")
        # a message each way, with the sender's full JID as 'from'
        await alice.send("<message to='bob@b.test' id='m1' type='chat'><body>hi bob</body>"
                         "</message>")
        m = await bob.recv_until(lambda e: e.get("id") == "m1", 20)
        assert m.get("from") == "alice@a.test/home"
        assert m.findtext(f"{C}body") == "hi bob"
        await bob.send("<message to='alice@a.test/home' id='m2' type='chat'>"
                       "<body>hello alice &amp; co</body></message>")
        m = await alice.recv_until(lambda e: e.get("id") == "m2", 20)
        assert m.get("from") == "bob@b.test/phone"
        assert m.findtext(f"{C}body") == "hello alice & co"
        # iq ping to the other server, and to a user on it (who answers)
        await alice.send(f"<iq to='b.test' id='p1' type='get'><ping xmlns='{PING}'/></iq>")
        r = await alice.recv_until(lambda e: e.get("id") == "p1", 10)
        assert r.get("type") == "result" and r.get("from") == "b.test"
        await alice.send(f"<iq to='bob@b.test/phone' id='p2' type='get'>"
                         f"<ping xmlns='{PING}'/></iq>")
        q = await bob.recv_until(lambda e: e.get("id") == "p2", 10)
        assert q.get("from") == "alice@a.test/home"
        await bob.send("<iq to='alice@a.test/home' id='p2' type='result'/>")
        r = await alice.recv_until(lambda e: e.get("id") == "p2", 10)
        assert r.get("type") == "result" and r.get("from") == "bob@b.test/phone"
        # directed presence, both ways
        await alice.send("<presence to='bob@b.test/phone'><status>here</status></presence>")
        p = await bob.recv_until(lambda e: e.tag == f"{C}presence"
                                 and e.get("from") == "alice@a.test/home", 10)
        assert p.findtext(f"{C}status") == "here"
        await bob.send("<presence to='alice@a.test/home' type='unavailable'/>")
        p = await alice.recv_until(lambda e: e.tag == f"{C}presence"
                                   and e.get("from") == "bob@b.test/phone", 10)
        assert p.get("type") == "unavailable"
        # errors from the remote server come back: unknown user, unknown resource
        await alice.send("<message to='nobody@b.test' id='e1' type='chat'><body>?</body>"
                         "</message>")
        e = await alice.recv_until(lambda e: e.get("id") == "e1", 10)
        assert e.get("type") == "error" and e.get("from") == "nobody@b.test"
        assert error_of(e) == "service-unavailable"
        await alice.send(f"<iq to='bob@b.test/gone' id='e2' type='get'>"
                         f"<ping xmlns='{PING}'/></iq>")
        e = await alice.recv_until(lambda e: e.get("id") == "e2", 10)
        assert e.get("type") == "error" and error_of(e) == "service-unavailable"
        await alice.close()
        await bob.close()

    run(main())
    # both directions were authenticated with dialback, inside TLS
    for srv, local, remote in ((a, "a.test", "b.test"), (b, "b.test", "a.test")):
        lines = s2s_connections(srv)
        assert any(line.startswith(f"out {local} {remote} tls dialback") for line in lines), lines
        assert any(line.startswith(f"in {local} {remote} tls dialback") for line in lines), lines
    assert a.ctl("outgoing_s2s_number").stdout.strip() == "1"
    assert a.ctl("incoming_s2s_number").stdout.strip() == "1"


def test_slixmpp_users_chat_across_servers(pair: tuple[XmppdServer, XmppdServer]) -> None:
    a, b = pair

    async def main() -> None:
        alice = Slix("alice@a.test/slix", "pw")
        bob = Slix("bob@b.test/slix", "pw")
        await alice.login(a.c2s)
        await bob.login(b.c2s)
        for i in range(5):
            alice.send_message(mto="bob@b.test/slix", mbody=f"ping {i}", mtype="chat")
        got = [await asyncio.wait_for(bob.messages.get(), 20) for _ in range(5)]
        assert [m["body"] for m in got] == [f"ping {i}" for i in range(5)]  # in order
        assert str(got[0]["from"]) == "alice@a.test/slix"
        bob.send_message(mto="alice@a.test/slix", mbody="pong", mtype="chat")
        reply = await asyncio.wait_for(alice.messages.get(), 20)
        assert reply["body"] == "pong"
        # XEP-0199 through the slixmpp plugin, to the remote server
        rtt = await alice["xep_0199"].ping("b.test", timeout=10)
        assert rtt >= 0
        await alice.logout()
        await bob.logout()

    run(main())


def test_unreachable_server_bounces_queued_stanzas(make_server: Callable[..., XmppdServer]
                                                    ) -> None:
    dead = free_port()  # nothing listens there
    srv = make_server(hosts=("a.test",), config={
        "s2s_hosts": {"down.test": {"host": "127.0.0.1", "port": dead}}})
    srv.register("alice", "pw", host="a.test")
    srv.start()

    async def main() -> None:
        alice = await login(srv, "alice", "a.test", "r")
        for i in range(3):
            await alice.send(f"<message to='x@down.test' id='d{i}' type='chat'>"
                             f"<body>{i}</body></message>")
        for i in range(3):
            e = await alice.recv_until(lambda e, i=i: e.get("id") == f"d{i}", 15)
            assert e.get("type") == "error" and error_of(e) == "remote-server-not-found"
            assert e.findtext(f"{C}body") == str(i)  # the original content comes back
        # a presence bounces as well; an error never gets an error back
        await alice.send("<presence to='x@down.test' id='d9'/>")
        e = await alice.recv_until(lambda e: e.get("id") == "d9", 15)
        assert e.tag == f"{C}presence" and error_of(e) == "remote-server-not-found"
        await alice.close()

    run(main())


def test_silent_server_times_out(make_server: Callable[..., XmppdServer]) -> None:
    """A server that accepts the connection and says nothing: remote-server-timeout."""
    async def main() -> None:
        accepted: list[asyncio.StreamWriter] = []

        async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append(w)

        mute = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = mute.sockets[0].getsockname()[1]
        srv = make_server(hosts=("a.test",), config={
            "negotiation_timeout": 2,
            "s2s_hosts": {"mute.test": {"host": "127.0.0.1", "port": port}}})
        srv.register("alice", "pw", host="a.test")
        await asyncio.get_running_loop().run_in_executor(None, srv.start)
        alice = await login(srv, "alice", "a.test", "r")
        await alice.send("<message to='x@mute.test' id='t1'><body>anyone?</body></message>")
        e = await alice.recv_until(lambda e: e.get("id") == "t1", 20)
        assert error_of(e) == "remote-server-timeout"
        assert accepted, "xmppd never connected"
        await alice.close()
        mute.close()

    run(main(), 90)


def test_s2s_access_blocks_a_domain(make_server: Callable[..., XmppdServer]) -> None:
    a, b = federated_pair(make_server, config={
        "acl": {"blocked_servers": {"server": "b.test"}},
        "access_rules": {"s2s": [{"deny": "blocked_servers"}, {"allow": "all"}]},
        "s2s_access": "s2s"}, config_b={})
    a.register("alice", "pw", host="a.test")
    b.register("bob", "pw", host="b.test")
    a.start()
    b.start()

    async def main() -> None:
        alice = await login(a, "alice", "a.test", "r")
        bob = await login(b, "bob", "b.test", "r")
        await alice.send("<message to='bob@b.test' id='x1'><body>x</body></message>")
        e = await alice.recv_until(lambda e: e.get("id") == "x1", 10)
        assert error_of(e) == "forbidden"
        # b.test may not federate into a.test either: dialback is refused
        await bob.send("<message to='alice@a.test' id='x2'><body>x</body></message>")
        e = await bob.recv_until(lambda e: e.get("id") == "x2", 20)
        assert e.get("type") == "error" and error_of(e) == "remote-server-timeout"
        await alice.close()
        await bob.close()

    run(main())
    assert "may not federate" in a.log


def test_idle_streams_close_and_come_back(make_server: Callable[..., XmppdServer]) -> None:
    a, b = federated_pair(make_server, config={"s2s_timeout": 1})
    a.register("alice", "pw", host="a.test")
    b.register("bob", "pw", host="b.test")
    a.start()
    b.start()

    async def main() -> None:
        alice = await login(a, "alice", "a.test", "r")
        bob = await login(b, "bob", "b.test", "r")
        await alice.send("<message to='bob@b.test/r' id='i1'><body>1</body></message>")
        await bob.recv_until(lambda e: e.get("id") == "i1", 20)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + 20
        while await loop.run_in_executor(None, s2s_connections, a):
            assert time.monotonic() < deadline, "idle s2s streams were not closed"
            await asyncio.sleep(0.5)
        await alice.send("<message to='bob@b.test/r' id='i2'><body>2</body></message>")
        m = await bob.recv_until(lambda e: e.get("id") == "i2", 20)
        assert m.findtext(f"{C}body") == "2"
        await alice.close()
        await bob.close()

    run(main())
    # the sending servers closed their idle streams (receivers wait twice as long)
    assert "closing idle stream a.test -> b.test" in a.log
    assert "closing idle stream b.test -> a.test" in b.log


def ca_and_certs(base: Path, domains: tuple[str, ...]) -> tuple[Path, dict[str, Path]]:
    """A private CA and a certificate (with key) per domain, signed by it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xmppd test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    base.mkdir(parents=True, exist_ok=True)
    ca_path = base / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out: dict[str, Path] = {}
    for d in domains:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, d)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(d)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([
                    x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                    x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        p = base / f"{d}.pem"
        p.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
                      + cert.public_bytes(serialization.Encoding.PEM))
        out[d] = p
    return ca_path, out


def test_sasl_external_with_certificates_from_a_shared_ca(
        make_server: Callable[..., XmppdServer], tmp_path: Path) -> None:
    ca, certs = ca_and_certs(tmp_path / "pki", ("a.test", "b.test"))
    a, b = federated_pair(
        make_server,
        config={"s2s_cafile": str(ca), "certfiles": [str(certs["a.test"])]},
        config_b={"s2s_cafile": str(ca), "certfiles": [str(certs["b.test"])]})
    a.register("alice", "pw", host="a.test")
    b.register("bob", "pw", host="b.test")
    a.start()
    b.start()

    async def main() -> None:
        alice = await login(a, "alice", "a.test", "r")
        bob = await login(b, "bob", "b.test", "r")
        await alice.send("<message to='bob@b.test/r' id='c1'><body>signed</body></message>")
        m = await bob.recv_until(lambda e: e.get("id") == "c1", 20)
        assert m.findtext(f"{C}body") == "signed"
        await bob.send("<message to='alice@a.test/r' id='c2'><body>back</body></message>")
        await alice.recv_until(lambda e: e.get("id") == "c2", 20)
        await alice.close()
        await bob.close()

    run(main())
    for srv, local, remote in ((a, "a.test", "b.test"), (b, "b.test", "a.test")):
        lines = s2s_connections(srv)
        assert any(line.startswith(f"out {local} {remote} tls external") for line in lines), lines
        assert any(line.startswith(f"in {local} {remote} tls external") for line in lines), lines


def test_config_errors_name_the_s2s_option() -> None:
    from xmppd.config import ConfigError, parse_config

    bad: list[tuple[dict[str, Any], str]] = [
        ({"s2s_hosts": {"b.test": {"port": 5269}}}, "s2s_hosts.b.test.host"),
        ({"s2s_hosts": {"b.test": {"host": "h", "port": 70000}}}, "s2s_hosts.b.test.port"),
        ({"s2s_hosts": {"b.test": {"host": "h", "prot": 1}}}, "s2s_hosts.b.test.prot"),
        ({"s2s_use_starttls": "sometimes"}, "s2s_use_starttls"),
        ({"outgoing_s2s_families": ["ipx"]}, "outgoing_s2s_families[0]"),
        ({"s2s_dns_timeout": "soon"}, "s2s_dns_timeout"),
    ]
    for data, path in bad:
        with pytest.raises(ConfigError) as e:
            parse_config(data)
        assert str(e.value).startswith(path + ":"), str(e.value)
    ok = parse_config({"s2s_hosts": {"B.Test": "10.1.2.3"}})
    assert ok["s2s_hosts"] == {"b.test": {"host": "10.1.2.3", "port": 5269, "tls": False}}
    with pytest.raises(ConfigError) as e:
        parse_config({"s2s_hosts": {"b.test": {"host": "h", "tls": "maybe"}}})
    assert str(e.value).startswith("s2s_hosts.b.test.tls:")


def test_remote_user_in_a_group_chat(make_server: Callable[..., XmppdServer]) -> None:
    """bob@b.test joins a room on conference.a.test: the room's domain federates too."""
    from helpers.muc import MucSlix

    a, b = federated_pair(make_server)
    a.config["modules"]["mod_muc"] = {"host": "conference.@HOST@"}
    a.write_config()
    b.config["s2s_hosts"]["conference.a.test"] = {"host": "127.0.0.1", "port": a.s2s}
    b.write_config()
    a.register("alice", "pw", host="a.test")
    b.register("bob", "pw", host="b.test")
    a.start()
    b.start()
    room = "lobby@conference.a.test"

    async def main() -> None:
        alice = MucSlix("alice@a.test/m", "pw")
        bob = MucSlix("bob@b.test/m", "pw")
        await alice.login(a.c2s)
        await bob.login(b.c2s)
        await alice.join(room, "alice")
        await alice.instant(room)
        await bob.join(room, "bob")
        await alice.presence_from(f"{room}/bob", timeout=20)
        bob.send_message(mto=room, mbody="hello room", mtype="groupchat")
        got = await alice.next_body(20)
        assert got["body"] == "hello room" and str(got["from"]) == f"{room}/bob"
        alice.send_message(mto=room, mbody="welcome", mtype="groupchat")
        while True:
            got = await bob.next_body(20)
            if got["body"] == "welcome":
                break
        assert str(got["from"]) == f"{room}/alice"
        await alice.logout()
        await bob.logout()

    run(main(), 120)
    lines = s2s_connections(a)
    assert any(line.startswith("out conference.a.test b.test tls dialback")
               for line in lines), lines
    assert any(line.startswith("in conference.a.test b.test tls dialback")
               for line in lines), lines
