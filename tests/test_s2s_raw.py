"""Raw sockets against xmppd's s2s listener: dialback step by step, and bad input."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any, Callable

import pytest
from conftest import run
from helpers.procs import XmppdServer
from helpers.raw import STREAM, TLS, RawClient
from helpers.s2speer import DB_RESULT, DB_VERIFY, S, FakePeer, RawS2S

from xmppd.s2s.dialback import make_key

SECRET = "a shared secret for the tests"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture
def server(make_server: Callable[..., XmppdServer]) -> XmppdServer:
    srv = make_server(hosts=("a.test",), config={"s2s_dialback_secret": SECRET})
    srv.register("alice", "pw", host="a.test")
    return srv.start()


async def start_with_peer(make_server: Callable[..., XmppdServer], verdict: str,
                          **config: Any) -> tuple[XmppdServer, FakePeer]:
    peer = await FakePeer("r.test", verdict).start()
    srv = make_server(hosts=("a.test",), config={
        "s2s_hosts": {"r.test": {"host": "127.0.0.1", "port": peer.port}}, **config})
    srv.register("alice", "pw", host="a.test")
    await asyncio.get_running_loop().run_in_executor(None, srv.start)
    return srv, peer


async def dialback_in(srv: XmppdServer, peer: FakePeer) -> RawS2S:
    """A raw stream from r.test, authenticated with dialback through ``peer``."""
    c = await RawS2S(srv.s2s).connect()
    feats = await c.open_s2s("r.test", "a.test")
    assert feats.find("{urn:xmpp:features:dialback}dialback") is not None
    await c.send("<db:result from='r.test' to='a.test'>k3y</db:result>")
    res = await c.recv(15)
    assert res.tag == DB_RESULT and res.get("type") == "valid", ET.tostring(res)
    assert (res.get("from"), res.get("to")) == ("a.test", "r.test")
    asked = await asyncio.wait_for(peer.verifies.get(), 5)
    assert asked.get("id") == c.stream_id and (asked.text or "").strip() == "k3y"
    assert (asked.get("from"), asked.get("to")) == ("a.test", "r.test")
    return c


def test_header_and_features(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawS2S(server.s2s).connect()
        feats = await c.open_s2s("r.test", "a.test")
        assert feats.tag == f"{{{STREAM}}}features"
        assert c.root is not None and c.root.get("from") == "a.test"
        assert c.root.get("to") == "r.test" and c.stream_id
        starttls = feats.find(f"{{{TLS}}}starttls")
        assert starttls is not None and starttls.find(f"{{{TLS}}}required") is None
        assert feats.find("{urn:xmpp:features:dialback}dialback/"
                          "{urn:xmpp:features:dialback}errors") is not None
        # no SASL EXTERNAL without s2s_cafile (certificates are not checked)
        assert feats.find("{urn:ietf:params:xml:ns:xmpp-sasl}mechanisms") is None
        await c.close()
    run(main())


def test_stanza_before_authentication(server: XmppdServer) -> None:
    async def main() -> None:
        c = await RawS2S(server.s2s).connect()
        await c.open_s2s("r.test", "a.test")
        await c.send("<message from='x@r.test' to='alice@a.test'><body>hi</body></message>")
        assert await c.stream_error() == "not-authorized"
        assert await c.closed()
    run(main())


@pytest.mark.parametrize("header,condition", [
    ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
     "from='r.test' to='a.test' version='1.0'>", "invalid-namespace"),
    ("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
     "from='r.test' to='nope.test' version='1.0'>", "host-unknown"),
    ("<stream:stream xmlns='jabber:server' xmlns:stream='urn:wrong' from='r.test' "
     "to='a.test' version='1.0'>", "invalid-namespace"),
    ("<!DOCTYPE x [<!ENTITY e 'boom'>]><stream:stream xmlns='jabber:server' "
     "xmlns:stream='http://etherx.jabber.org/streams' from='r.test' to='a.test' "
     "version='1.0'>", "restricted-xml"),
])
def test_bad_stream_headers(server: XmppdServer, header: str, condition: str) -> None:
    async def main() -> None:
        c = await RawClient(server.s2s).connect()
        await c.send(header)
        assert await c.stream_error() == condition
        assert await c.closed()
    run(main())


def test_authoritative_answers_db_verify(server: XmppdServer) -> None:
    """a.test as the Authoritative Server: keys are HMACs of the configured secret."""
    async def main() -> None:
        c = await RawS2S(server.s2s).connect()
        await c.open_s2s("r.test", "a.test")
        good = make_key(SECRET.encode(), "r.test", "a.test", "S1D")
        await c.send(f"<db:verify from='r.test' to='a.test' id='S1D'>{good}</db:verify>")
        res = await c.recv()
        assert res.tag == DB_VERIFY and res.get("type") == "valid"
        assert (res.get("from"), res.get("to"), res.get("id")) == ("a.test", "r.test", "S1D")
        # the same key for another stream id, or another receiving domain, is invalid
        await c.send(f"<db:verify from='r.test' to='a.test' id='OTHER'>{good}</db:verify>")
        assert (await c.recv()).get("type") == "invalid"
        await c.send(f"<db:verify from='q.test' to='a.test' id='S1D'>{good}</db:verify>")
        assert (await c.recv()).get("type") == "invalid"
        # a domain not served here: a dialback error, the stream stays open
        await c.send(f"<db:verify from='r.test' to='z.test' id='S1D'>{good}</db:verify>")
        res = await c.recv()
        assert res.get("type") == "error"
        assert res.find(f"{S}error/{{{STANZAS}}}item-not-found") is not None
        await c.send("<db:result from='r.test' to='z.test'>abc</db:result>")
        res = await c.recv()
        assert res.tag == DB_RESULT and res.get("type") == "error"
        assert res.find(f"{S}error/{{{STANZAS}}}item-not-found") is not None
        await c.close()
    run(main())


def test_dialback_with_a_scripted_peer(make_server: Callable[..., XmppdServer]) -> None:
    async def main() -> None:
        srv, peer = await start_with_peer(make_server, "valid")
        c = await dialback_in(srv, peer)
        # an authenticated stanza is routed; the answer goes out on xmppd's own stream
        await c.send("<iq from='u@r.test/x' to='a.test' type='get' id='i1'>"
                     "<ping xmlns='urn:xmpp:ping'/></iq>")
        answer = await asyncio.wait_for(peer.stanzas.get(), 15)
        assert answer.tag == f"{S}iq" and answer.get("id") == "i1"
        assert answer.get("type") == "result" and answer.get("to") == "u@r.test/x"
        # an unknown user: the error goes back to the remote sender
        await c.send("<message from='u@r.test/x' to='nobody@a.test' id='m1'><body>?</body>"
                     "</message>")
        err = await asyncio.wait_for(peer.stanzas.get(), 15)
        assert err.get("id") == "m1" and err.get("type") == "error"
        assert err.find(f"{S}error/{{{STANZAS}}}service-unavailable") is not None
        # a domain that was never authenticated on this stream
        await c.send("<message from='u@other.test' to='alice@a.test'><body>x</body></message>")
        assert await c.stream_error() == "invalid-from"
        assert await c.closed()
        peer.stop()
    run(main(), 90)


@pytest.mark.parametrize("stanza,condition", [
    ("<message to='alice@a.test'><body>x</body></message>", "improper-addressing"),
    ("<message from='u@r.test'><body>x</body></message>", "improper-addressing"),
    ("<message from='u@r.test' to='x@elsewhere.test'><body>x</body></message>", "host-unknown"),
    ("<message from='@r.test' to='alice@a.test'><body>x</body></message>",
     "improper-addressing"),
    ("<foo xmlns='urn:example'/>", "unsupported-stanza-type"),
])
def test_bad_stanzas_after_dialback(make_server: Callable[..., XmppdServer], stanza: str,
                                    condition: str) -> None:
    async def main() -> None:
        srv, peer = await start_with_peer(make_server, "valid")
        c = await dialback_in(srv, peer)
        await c.send(stanza)
        assert await c.stream_error() == condition
        peer.stop()
    run(main(), 90)


def test_stanza_rate_on_the_s2s_listener(make_server: Callable[..., XmppdServer]) -> None:
    """A remote server over the listener's ``max_stanza_rate`` is read more slowly:
    every stanza still arrives, in order."""
    async def main() -> None:
        peer = await FakePeer("r.test", "valid").start()
        srv = make_server(hosts=("a.test",), config={
            "s2s_hosts": {"r.test": {"host": "127.0.0.1", "port": peer.port}}})
        srv.config["listen"][2]["max_stanza_rate"] = 40
        srv.write_config()
        srv.register("alice", "pw", host="a.test")
        await asyncio.get_running_loop().run_in_executor(None, srv.start)
        alice = RawClient(srv.c2s_tls, tls=True, host="a.test")
        await alice.login("alice", "pw", "r")
        c = await dialback_in(srv, peer)
        n = 200
        for first in range(0, n, 20):
            await c.send("".join(f"<message from='u@r.test/x' to='alice@a.test/r' id='s{i}'>"
                                 f"<body>{i}</body></message>" for i in range(first, first + 20)))
        got = []
        while len(got) < n:
            m = await alice.recv_until(lambda e: e.tag == "{jabber:client}message", 30)
            got.append(m.get("id"))
        assert got == [f"s{i}" for i in range(n)]
        await alice.close()
        peer.stop()
        assert "throttling <S2SIn r.test" in srv.log
    run(main(), 90)


def test_invalid_key_closes_the_stream(make_server: Callable[..., XmppdServer]) -> None:
    async def main() -> None:
        srv, peer = await start_with_peer(make_server, "invalid")
        c = await RawS2S(srv.s2s).connect()
        await c.open_s2s("r.test", "a.test")
        await c.send("<db:result from='r.test' to='a.test'>forged</db:result>")
        res = await c.recv(15)
        assert res.tag == DB_RESULT and res.get("type") == "invalid"
        assert await c.closed()
        peer.stop()
    run(main(), 90)


def test_starttls_required(make_server: Callable[..., XmppdServer]) -> None:
    srv = make_server(hosts=("a.test",), config={"s2s_use_starttls": "required"})
    srv.start()

    async def main() -> None:
        c = await RawS2S(srv.s2s).connect()
        feats = await c.open_s2s("r.test", "a.test")
        assert feats.find(f"{{{TLS}}}starttls/{{{TLS}}}required") is not None
        assert feats.find("{urn:xmpp:features:dialback}dialback") is None
        await c.send("<db:result from='r.test' to='a.test'>abc</db:result>")
        res = await c.recv()
        assert res.get("type") == "error"
        assert res.find(f"{S}error/{{{STANZAS}}}policy-violation") is not None
        # after STARTTLS, dialback is offered
        await c.send(f"<starttls xmlns='{TLS}'/>")
        assert (await c.recv()).tag == f"{{{TLS}}}proceed"
        from helpers.raw import no_verify
        assert c.writer is not None
        await c.writer.start_tls(no_verify(), server_hostname="a.test")
        c._new_parser()
        feats = await c.open_s2s("r.test", "a.test")
        assert feats.find(f"{{{TLS}}}starttls") is None
        assert feats.find("{urn:xmpp:features:dialback}dialback") is not None
        await c.close()
    run(main())


def test_connections_per_address(make_server: Callable[..., XmppdServer]) -> None:
    srv = make_server(hosts=("a.test",))
    srv.config["listen"][2].update({"max_sessions_per_ip": 2, "shaper": "fast"})
    srv.config["shaper"] = {"fast": 50000}
    srv.write_config()
    srv.start()

    async def main() -> None:
        first = [await RawS2S(srv.s2s).connect() for _ in range(2)]
        for c in first:
            feats = await c.open_s2s("r.test", "a.test")
            assert feats.tag == f"{{{STREAM}}}features"
        third = await RawS2S(srv.s2s).connect()
        await third.send("<stream:stream xmlns='jabber:server' xmlns:stream="
                         f"'{STREAM}' from='q.test' to='a.test' version='1.0'>")
        assert await third.stream_error() == "policy-violation"
        await first[0].close()
        for _ in range(50):  # once the server has seen the close, there is room again
            again = await RawS2S(srv.s2s).connect()
            el = await again.open_s2s("r.test", "a.test")
            if el.tag == f"{{{STREAM}}}features":
                break
            await asyncio.sleep(0.1)
        assert el.tag == f"{{{STREAM}}}features"
    run(main())


def test_connection_rate_per_address(make_server: Callable[..., XmppdServer]) -> None:
    """The s2s listener's ``max_connection_rate``: a server that connects too often
    gets ``policy-violation``."""
    srv = make_server(hosts=("a.test",))
    srv.config["listen"][2].update({"max_connection_rate": 3})
    srv.write_config()
    srv.start()

    async def main() -> list[bool]:
        outcomes = []
        for _ in range(8):
            c = await RawS2S(srv.s2s).connect()
            el = await c.open_s2s("r.test", "a.test")
            outcomes.append(el.tag == f"{{{STREAM}}}error")
            await c.close()
        return outcomes
    outcomes = run(main())
    assert outcomes[0] is False and any(outcomes)
    assert "connecting too often" in srv.log


def test_outgoing_needs_starttls_when_required(make_server: Callable[..., XmppdServer]
                                               ) -> None:
    """The scripted peer offers no STARTTLS: with s2s_use_starttls: required, no stream."""
    async def main() -> None:
        srv, peer = await start_with_peer(make_server, "valid", s2s_use_starttls="required")
        alice = RawClient(srv.c2s_tls, tls=True, host="a.test")
        await alice.login("alice", "pw", "r")
        await alice.send("<message to='u@r.test' id='n1'><body>x</body></message>")
        e = await alice.recv_until(lambda e: e.get("id") == "n1", 15)
        assert e.get("type") == "error"
        assert e.find(f"{{jabber:client}}error/{{{STANZAS}}}remote-server-not-found") is not None
        assert peer.stanzas.empty()  # nothing was sent in the clear
        await alice.close()
        peer.stop()
    run(main(), 90)
