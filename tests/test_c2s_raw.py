"""Client streams with raw sockets: negotiation, routing, and every bad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterator

import pytest
from conftest import run
from helpers.procs import XmppdServer
from helpers.raw import BIND, SASL, STANZA_ERR, STREAM, C, RawClient, local


@pytest.fixture(scope="module", params=["sqlite", "pgsql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    pg = request.getfixturevalue("postgres") if request.param == "pgsql" else None
    srv = XmppdServer(tmp_path_factory.mktemp(f"c2s-{request.param}"),
                      hosts=("localhost", "example.net"), db=request.param, pg=pg)
    for user in ("alice", "bob", "carol", "dave", "erin"):
        srv.register(user, "secret")
    srv.register("alice", "other", host="example.net")
    srv.start()
    yield srv
    srv.stop()


def test_features_before_tls_require_starttls(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s).connect()
        feats = await c.open()
        tls = feats.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls")
        assert tls is not None and tls.find("{urn:ietf:params:xml:ns:xmpp-tls}required") is not None
        assert feats.find(f"{{{SASL}}}mechanisms") is None
        # trying to authenticate before TLS is refused
        await c.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>")
        assert await c.stream_error() == "policy-violation"
        assert await c.closed()
    run(main())


def test_mechanisms_after_tls(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s).connect()
        await c.open()
        feats = await c.starttls()
        mechs = [m.text for m in feats.iter(f"{{{SASL}}}mechanism")]
        for m in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "PLAIN"):
            assert m in mechs
        cb = feats.find("{urn:xmpp:sasl-cb:0}sasl-channel-binding")
        assert cb is not None
        assert "tls-server-end-point" in [x.get("type") for x in cb]
        await c.close()
    run(main())


@pytest.mark.parametrize("hashname", ["sha1", "sha256"])
def test_scram_login_and_bind(server: XmppdServer, hashname: str) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s).connect()
        await c.open()
        await c.starttls()
        res = await c.auth_scram("alice", "secret", hashname)
        assert local(res.tag) == "success"
        c._new_parser()
        feats = await c.open()
        assert feats.find(f"{{{BIND}}}bind") is not None
        assert feats.find("{http://jabber.org/protocol/caps}c") is not None
        jid = await c.bind("laptop")
        assert jid == "alice@localhost/laptop"
        await c.close()
    run(main())


@pytest.mark.parametrize("hashname", ["sha1", "sha256"])
def test_scram_plus_with_channel_binding(server: XmppdServer, hashname: str) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s_tls, tls=True).connect()
        await c.open()
        res = await c.auth_scram("alice", "secret", hashname,
                                 cb=("tls-server-end-point", c.server_end_point()))
        assert local(res.tag) == "success"
        # a binding to another TLS connection (a man in the middle) fails
        c2 = await RawClient(server.c2s_tls, tls=True).connect()
        await c2.open()
        res = await c2.auth_scram("alice", "secret", hashname,
                                  cb=("tls-server-end-point", b"\0" * 32))
        assert local(res.tag) == "failure"
        await c.close()
        await c2.close()
    run(main())


def test_disco_on_an_account(server: XmppdServer) -> None:
    async def main() -> None:
        c = RawClient(server.c2s_tls, tls=True)
        await c.login("bob", "secret", "d")
        await c.send("<iq type='get' id='a' to='alice@localhost'>"
                     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        el = await c.recv_until(lambda e: e.get("id") == "a")
        assert el.get("type") == "result" and el.get("from") == "alice@localhost"
        ident = el.find("{http://jabber.org/protocol/disco#info}query/"
                        "{http://jabber.org/protocol/disco#info}identity")
        assert ident is not None and ident.get("category") == "account"
        await c.close()
    run(main())


def test_plain_inside_tls_and_direct_tls(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s_tls, tls=True).connect()
        feats = await c.open()
        assert feats.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
        res = await c.auth_plain("bob", "secret")
        assert local(res.tag) == "success"
        c._new_parser()
        await c.open()
        assert (await c.bind()).startswith("bob@localhost/")
        await c.close()
    run(main())


def test_wrong_password(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s_tls, tls=True).connect()
        await c.open()
        res = await c.auth_scram("alice", "wrong")
        assert local(res.tag) == "failure"
        assert res.find(f"{{{SASL}}}not-authorized") is not None
        res = await c.auth_scram("nosuchuser", "secret")
        assert local(res.tag) == "failure"
        res = await c.auth_plain("alice", "wrong")
        assert local(res.tag) == "failure"
        # three failures close the stream
        assert await c.stream_error() == "policy-violation"
    run(main())


def test_same_user_on_other_host(server: XmppdServer) -> None:
    async def main() -> None:
        c = RawClient(server.c2s_tls, tls=True, host="example.net")
        jid = await c.login("alice", "other")
        assert jid == "alice@example.net/raw"
        c2 = RawClient(server.c2s_tls, tls=True, host="example.net")
        await c2.connect()
        await c2.open()
        res = await c2.auth_scram("alice", "secret")  # the localhost password
        assert local(res.tag) == "failure"
        await c.close()
        await c2.close()
    run(main())


def test_unknown_host(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s).connect()
        await c.send(f"<stream:stream to='nowhere.invalid' version='1.0' xmlns='jabber:client' "
                     f"xmlns:stream='{STREAM}'>")
        assert await c.stream_error() == "host-unknown"
    run(main())


def test_stanza_before_auth(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s_tls, tls=True).connect()
        await c.open()
        await c.send("<message to='bob@localhost'><body>sneaky</body></message>")
        assert await c.stream_error() == "not-authorized"
    run(main())


def test_stanza_before_bind(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s_tls, tls=True).connect()
        await c.open()
        await c.restarted_after_auth("alice", "secret")
        await c.send("<message to='bob@localhost'><body>sneaky</body></message>")
        assert await c.stream_error() == "not-authorized"
    run(main())


def test_the_caps_the_features_advertise_answer_disco_info(server: XmppdServer) -> None:
    """XEP-0115 in the stream features (made once and kept as bytes by mod_disco):
    disco#info answers for the node and hash they advertise, not for another hash."""
    async def main() -> None:
        c = await RawClient(server.c2s_tls, tls=True).connect()
        await c.open()
        feats = await c.restarted_after_auth("dave", "secret")
        assert feats.find(f"{{{BIND}}}bind") is not None
        caps = feats.find("{http://jabber.org/protocol/caps}c")
        assert caps is not None and caps.get("hash") == "sha-1" and caps.get("ver")
        await c.bind("caps")
        info = "http://jabber.org/protocol/disco#info"
        for n, node in enumerate((f"{caps.get('node')}#{caps.get('ver')}",
                                  f"{caps.get('node')}#not-the-hash")):
            await c.send(f"<iq type='get' id='caps{n}' to='localhost'>"
                         f"<query xmlns='{info}' node='{node}'/></iq>")
            res = await c.recv_until(lambda e, want=f"caps{n}": e.get("id") == want)
            if n == 0:
                assert res.get("type") == "result"
                assert res.find(f"{{{info}}}query/{{{info}}}feature") is not None
            else:
                assert res.get("type") == "error"
                assert res.find(f"{C}error/{{{STANZA_ERR}}}item-not-found") is not None
        await c.close()
    run(main())


def test_the_answer_to_binding_escapes_the_id_and_the_jid(server: XmppdServer) -> None:
    """The answer to a binding is written without the serializer (every login gets
    one): an id and a resource with XML's special characters come back as sent."""
    async def main() -> None:
        c = await RawClient(server.c2s_tls, tls=True).connect()
        await c.open()
        await c.restarted_after_auth("erin", "secret")
        await c.send(f"<iq type='set' id=\"b'&amp;&quot;&lt;1\"><bind xmlns='{BIND}'>"
                     "<resource>desk &amp; &lt;chair&gt; 'x'</resource></bind></iq>")
        res = await c.recv()
        assert res.get("type") == "result" and res.get("id") == "b'&\"<1"
        assert res.findtext(f"{{{BIND}}}bind/{{{BIND}}}jid") == "erin@localhost/desk & <chair> 'x'"
        await c.close()
    run(main())


async def _pair(server: XmppdServer, a: str = "alice", b: str = "bob") -> tuple[RawClient, RawClient]:
    ca = RawClient(server.c2s_tls, tls=True)
    cb = RawClient(server.c2s_tls, tls=True)
    await ca.login(a, "secret", "one")
    await cb.login(b, "secret", "two")
    return ca, cb


def test_message_routing_and_from_stamping(server: XmppdServer) -> None:
    async def main() -> None:
        ca, cb = await _pair(server, "carol", "dave")
        await ca.send("<message to='dave@localhost' type='chat' id='x1'><body>hi dave</body></message>")
        msg = await cb.recv_until(lambda e: e.tag == C + "message")
        assert msg.get("from") == "carol@localhost/one"
        assert msg.findtext(C + "body") == "hi dave"
        # full JID of an online resource
        await ca.send("<message to='dave@localhost/two' type='chat'><body>direct</body></message>")
        msg = await cb.recv_until(lambda e: e.tag == C + "message")
        assert msg.findtext(C + "body") == "direct"
        # a from naming the sender's own bare JID is accepted and replaced by the full JID
        await ca.send("<message from='carol@localhost' to='dave@localhost'><body>b</body></message>")
        msg = await cb.recv_until(lambda e: e.tag == C + "message")
        assert msg.get("from") == "carol@localhost/one"
        await ca.close()
        await cb.close()
    run(main())


def test_spoofed_from_is_a_stream_error(server: XmppdServer) -> None:
    async def main() -> None:
        ca, cb = await _pair(server, "erin", "bob")
        await ca.send("<message from='bob@localhost/two' to='bob@localhost'><body>x</body></message>")
        assert await ca.stream_error() == "invalid-from"
        # nothing reached bob
        await cb.send("<iq type='get' id='pp'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await cb.recv_until(lambda e: e.tag in (C + "iq", C + "message"))
        assert el.tag == C + "iq" and el.get("id") == "pp"
        await cb.close()
    run(main())


def test_two_resources_of_one_user(server: XmppdServer) -> None:
    async def main() -> None:
        c1 = RawClient(server.c2s_tls, tls=True)
        c2 = RawClient(server.c2s_tls, tls=True)
        await c1.login("bob", "secret", "desk")
        await c2.login("bob", "secret", "phone")
        await c1.send("<message to='bob@localhost/phone' type='chat'><body>note</body></message>")
        msg = await c2.recv_until(lambda e: e.tag == C + "message")
        assert msg.get("from") == "bob@localhost/desk"
        await c1.close()
        await c2.close()
    run(main())


def test_errors_for_offline_and_unknown(server: XmppdServer) -> None:
    async def main() -> None:
        c = RawClient(server.c2s_tls, tls=True)
        await c.login("alice", "secret", "err")
        # iq to an offline full JID
        await c.send("<iq type='get' id='q1' to='erin@localhost/none'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await c.recv_until(lambda e: e.get("id") == "q1")
        assert el.get("type") == "error"
        assert el.find(f"{C}error/{{{STANZA_ERR}}}service-unavailable") is not None
        # unknown iq payload to the server
        await c.send("<iq type='get' id='q2' to='localhost'><nope xmlns='urn:nope'/></iq>")
        el = await c.recv_until(lambda e: e.get("id") == "q2")
        assert el.find(f"{C}error/{{{STANZA_ERR}}}service-unavailable") is not None
        # malformed to
        await c.send("<message to='a@b@c' id='q3'><body>x</body></message>")
        el = await c.recv_until(lambda e: e.get("id") == "q3")
        assert el.find(f"{C}error/{{{STANZA_ERR}}}jid-malformed") is not None
        # iq without id
        await c.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await c.recv_until(lambda e: e.tag == C + "iq")
        assert el.find(f"{C}error/{{{STANZA_ERR}}}bad-request") is not None
        # message to a user without sessions (no offline storage configured)
        await c.send("<message to='erin@localhost' id='q4' type='chat'><body>x</body></message>")
        el = await c.recv_until(lambda e: e.get("id") == "q4")
        assert el.find(f"{C}error/{{{STANZA_ERR}}}service-unavailable") is not None
        # remote domain (no federation configured)
        await c.send("<message to='x@remote.invalid' id='q5'><body>x</body></message>")
        el = await c.recv_until(lambda e: e.get("id") == "q5")
        assert el.find(f"{C}error/{{{STANZA_ERR}}}remote-server-not-found") is not None
        await c.close()
    run(main())


def test_ping_and_disco(server: XmppdServer) -> None:
    async def main() -> None:
        c = RawClient(server.c2s_tls, tls=True)
        await c.login("alice", "secret", "disco")
        await c.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await c.recv_until(lambda e: e.get("id") == "p")
        assert el.get("type") == "result" and el.get("from") == "localhost"
        await c.send("<iq type='get' id='d' to='localhost'>"
                     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        el = await c.recv_until(lambda e: e.get("id") == "d")
        q = el.find("{http://jabber.org/protocol/disco#info}query")
        assert q is not None
        feats = {f.get("var") for f in q.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert {"urn:xmpp:ping", "jabber:iq:version", "urn:xmpp:time"} <= feats
        ident = q.find("{http://jabber.org/protocol/disco#info}identity")
        assert ident is not None and ident.get("category") == "server"
        form = q.find("{jabber:x:data}x")
        assert form is not None and b"mailto:abuse@localhost" in ET.tostring(form)
        await c.close()
    run(main())


def test_resource_conflict_replaces_old_session(server: XmppdServer) -> None:
    async def main() -> None:
        c1 = RawClient(server.c2s_tls, tls=True)
        await c1.login("alice", "secret", "same")
        c2 = RawClient(server.c2s_tls, tls=True)
        await c2.login("alice", "secret", "same")
        assert await c1.stream_error() == "conflict"
        await c2.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await c2.recv_until(lambda e: e.get("id") == "p")
        assert el.get("type") == "result"
        await c2.close()
    run(main())


@pytest.mark.parametrize("bad,condition", [
    (b"<message><body>unclosed</message>", "not-well-formed"),
    (b"<!-- comment -->", "restricted-xml"),
    (b"<?pi data?>", "restricted-xml"),
    (b"<message><body>&ent;</body></message>", "restricted-xml"),
    (b"<foo xmlns='urn:unknown'/>", "unsupported-stanza-type"),
])
def test_bad_input_after_login(server: XmppdServer, bad: bytes, condition: str) -> None:
    async def main() -> None:
        c = RawClient(server.c2s_tls, tls=True)
        await c.login("bob", "secret", "bad")
        await c.send(bad)
        assert await c.stream_error() == condition
        assert await c.closed()
    run(main())


def test_doctype_in_header(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s).connect()
        await c.send("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]>"
                     f"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' "
                     f"xmlns:stream='{STREAM}'>")
        assert await c.stream_error() == "restricted-xml"
    run(main())


def test_tls_handshake_on_a_starttls_port(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s).connect()
        # the start of a TLS ClientHello, as a client set up for Direct TLS sends it
        await c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32)
        assert await c.stream_error() == "not-well-formed"
        assert "a TLS handshake on a port without Direct TLS" in server.log
    run(main())


def test_oversized_stanza(server: XmppdServer) -> None:
    async def main() -> None:
        c = RawClient(server.c2s_tls, tls=True)
        await c.login("bob", "secret", "big")
        other = RawClient(server.c2s_tls, tls=True)
        await other.login("alice", "secret", "watch")
        await c.send(b"<message to='alice@localhost'><body>" + b"x" * 70000 + b"</body></message>")
        assert await c.stream_error() == "policy-violation"
        # other users are untouched
        await other.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await other.recv_until(lambda e: e.get("id") == "p")
        assert el.get("type") == "result"
        await other.close()
    run(main())


def test_wrong_namespace_and_version(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawClient(server.c2s).connect()
        await c.send(f"<stream:stream to='localhost' version='1.0' xmlns='jabber:server' "
                     f"xmlns:stream='{STREAM}'>")
        assert await c.stream_error() == "invalid-namespace"
        c = await RawClient(server.c2s).connect()
        await c.send(f"<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='{STREAM}'>")
        assert await c.stream_error() == "unsupported-version"
    run(main())


def test_client_closes_stream(server: XmppdServer) -> None:
    async def main() -> None:
        c = RawClient(server.c2s_tls, tls=True)
        await c.login("bob", "secret", "bye")
        await c.send("</stream:stream>")
        assert await c.closed()
        assert c.eof
    run(main())

