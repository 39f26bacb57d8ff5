"""XMPP over WebSocket (RFC 7395) at /ws, checked from outside with a raw
WebSocket client (aiohttp) and TCP clients, against a real xmppd process."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import pytest
from conftest import run
from helpers.raw import RawClient, local, no_verify
from helpers.web import FRAMING, STREAM, WSClient, web_listeners

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
CLOSE = f"<close xmlns='{FRAMING}'/>"


def mechanisms(features: ET.Element) -> list[str]:
    return [m.text or "" for m in features.iter(f"{{{SASL}}}mechanism")]


async def stream_error(ws: WSClient) -> str:
    """Wait for a stream error; check the <close/> and the end of the WebSocket."""
    condition = await ws.stream_error()
    assert (await ws.recv()).tag == f"{{{FRAMING}}}close"
    assert await ws.closed()
    return condition


@pytest.fixture
def server(make_server: Any) -> Any:
    srv = web_listeners(make_server(), tls=True)
    srv.register("alice", "alice-pw")
    return srv.start()


def test_login_chat_and_close(server: Any) -> None:
    server.register("bob", "bob-pw")

    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{server.http}/ws")
        await ws.connect()
        await ws.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        head = await ws.recv()
        assert head.tag == f"{{{FRAMING}}}open"
        assert head.get("from") == "localhost" and head.get("version") == "1.0" and head.get("id")
        feats = await ws.recv()
        # RFC 7395 3.3.3: features declare the stream prefix in the message itself
        assert ws.messages[-1].startswith(f"<stream:features xmlns:stream='{STREAM}'>")
        # plain ws from loopback: SCRAM, no PLAIN (no TLS), no STARTTLS
        assert mechanisms(feats) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        assert feats.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
        res = await ws.auth_scram("alice", "alice-pw", "sha256")
        assert local(res.tag) == "success"
        await ws.open()
        jid = await ws.bind("browser")
        assert jid == "alice@localhost/browser"
        await ws.send("<presence xmlns='jabber:client'/>")

        bob = RawClient(server.c2s)
        await bob.login("bob", "bob-pw", "tcp")
        await ws.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'>"
                      "<body>over websocket</body></message>")
        got = await bob.recv_until(lambda e: local(e.tag) == "message")
        assert got.get("from") == "alice@localhost/browser"
        assert got.findtext("{jabber:client}body") == "over websocket"

        await bob.send("<message to='alice@localhost/browser' type='chat'><body>&lt;over&gt; "
                       "tcp</body></message>")
        got = await ws.recv_until(lambda e: local(e.tag) == "message")
        assert got.tag == "{jabber:client}message"  # each message declares its namespace
        assert ws.messages[-1].startswith("<message xmlns='jabber:client'")
        assert got.get("from") == "bob@localhost/tcp"
        assert got.findtext("{jabber:client}body") == "<over> tcp"

        await ws.send("<iq xmlns='jabber:client' type='get' id='p1' to='localhost'>"
                      "<ping xmlns='urn:xmpp:ping'/></iq>")
        pong = await ws.recv_until(lambda e: e.get("id") == "p1")
        assert pong.get("type") == "result"

        await ws.send(CLOSE)
        assert (await ws.recv()).tag == f"{{{FRAMING}}}close"
        assert await ws.closed()
        await ws.close()
        # the session is gone: a message to it bounces
        await bob.send("<message to='alice@localhost/browser' type='chat' id='m2'>"
                       "<body>gone?</body></message>")
        bounce = await bob.recv_until(lambda e: e.get("id") == "m2")
        assert bounce.get("type") == "error"
        await bob.close()
    run(main())


def test_a_message_during_the_closing_handshake_bounces(server: Any) -> None:
    """After the client's <close/> the server answers <close/> and waits for the
    WebSocket close frame; a message for the session meanwhile must bounce, not be
    written to a stream that is over (it was dropped)."""
    server.register("bob", "bob-pw")

    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{server.http}/ws")
        assert await ws.login("alice", "alice-pw", "closing") == "alice@localhost/closing"
        bob = RawClient(server.c2s)
        await bob.login("bob", "bob-pw", "tcp")
        await ws.send(CLOSE)
        assert (await ws.recv()).tag == f"{{{FRAMING}}}close"
        # the client does not answer the close frame yet: the WebSocket stays open
        await bob.send("<message to='alice@localhost/closing' type='chat' id='late'>"
                       "<body>too late</body></message>")
        bounce = await bob.recv_until(lambda e: e.get("id") == "late")
        assert bounce.get("type") == "error"
        assert bounce.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}"
                           "service-unavailable") is not None
        await ws.close()
        await bob.close()
    run(main())


def test_wss_offers_plain_and_channel_binding(server: Any) -> None:
    server.register("bob", "bob-pw")

    async def main() -> None:
        ws = WSClient(f"wss://127.0.0.1:{server.https}/ws", ssl=no_verify())
        await ws.connect()
        feats = await ws.open()
        mechs = mechanisms(feats)
        assert "PLAIN" in mechs and "SCRAM-SHA-1-PLUS" in mechs, mechs
        res = await ws.auth_plain("bob", "bob-pw")
        assert local(res.tag) == "success"
        await ws.open()
        assert await ws.bind("secure") == "bob@localhost/secure"
        await ws.close()
    run(main())


def test_sub_protocol_and_upgrade_required(server: Any) -> None:
    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{server.http}/ws", protocols=())
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await ws.connect()
        assert e.value.status == 400
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.http}/ws") as resp:
                assert resp.status == 426
    run(main())


def test_origin_check(make_server: Any) -> None:
    srv = web_listeners(make_server(), allowed_origins=["https://chat.example.org"])
    srv.register("alice", "alice-pw")
    srv.start()

    async def main() -> None:
        url = f"ws://127.0.0.1:{srv.http}/ws"
        evil = WSClient(url, origin="https://evil.example.net")
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await evil.connect()
        assert e.value.status == 403
        for origin in ("https://chat.example.org", "HTTPS://Chat.Example.org/", None):
            ws = WSClient(url, origin=origin)
            assert await ws.login("alice", "alice-pw", "o")
            await ws.close()
    run(main())


def test_top_level_websocket_origin(make_server: Any) -> None:
    srv = web_listeners(make_server(config={"websocket_origin": ["http://good.example"]}))
    srv.start()

    async def main() -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await WSClient(f"ws://127.0.0.1:{srv.http}/ws", origin="http://bad.example").connect()
        assert e.value.status == 403
        ws = WSClient(f"ws://127.0.0.1:{srv.http}/ws", origin="http://good.example")
        await ws.connect()
        await ws.open()
        await ws.close()
    run(main())


def test_sessions_per_ip(make_server: Any) -> None:
    srv = web_listeners(make_server(), max_sessions_per_ip=1)
    srv.register("alice", "alice-pw")
    srv.start()

    async def main() -> None:
        url = f"ws://127.0.0.1:{srv.http}/ws"
        first = WSClient(url)
        await first.login("alice", "alice-pw", "one")
        second = WSClient(url)
        await second.connect()
        assert (await second.recv()).tag == f"{{{FRAMING}}}open"
        assert await stream_error(second) == "policy-violation"
        await second.close()
        await first.close()
        await asyncio.sleep(0.3)
        third = WSClient(url)  # the first one's place is free again
        assert await third.login("alice", "alice-pw", "three")
        await third.close()
    run(main())


OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"


@pytest.mark.parametrize("messages,condition", [
    ([OPEN, "<message xmlns='jabber:client' to='a@localhost'><body>cut"], "not-well-formed"),
    ([OPEN, "<!-- a comment --><message xmlns='jabber:client'/>"], "restricted-xml"),
    ([OPEN, "<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"], "restricted-xml"),
    (["<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
      "to='localhost' version='1.0'>"], "invalid-namespace"),
    ([f"<open xmlns='{FRAMING}' to='elsewhere.example' version='1.0'/>"], "host-unknown"),
    ([OPEN, "<message xmlns='jabber:client' to='a@localhost'><body>early</body></message>"],
     "not-authorized"),
    ([OPEN, "<message xmlns='jabber:client'><body>" + "x" * 20000 + "</body></message>"],
     "policy-violation"),
], ids=["incomplete", "comment", "dtd", "tcp-header", "host", "before-auth", "oversize"])
def test_framing_errors(make_server: Any, messages: list[str], condition: str) -> None:
    srv = web_listeners(make_server(), max_stanza_size=10000)
    srv.start()

    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{srv.http}/ws")
        await ws.connect()
        for m in messages:
            await ws.send(m)
        assert await stream_error(ws) == condition
        await ws.close()
    run(main())


def test_binary_message_and_message_too_big_for_websocket(make_server: Any) -> None:
    srv = web_listeners(make_server(), max_stanza_size=10000)
    srv.start()

    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{srv.http}/ws")
        await ws.connect()
        await ws.open()
        assert ws.ws is not None
        await ws.ws.send_bytes(b"<presence xmlns='jabber:client'/>")
        assert await stream_error(ws) == "unsupported-encoding"
        await ws.close()
        # far over the limit: the WebSocket layer refuses it (close code 1009)
        ws = WSClient(f"ws://127.0.0.1:{srv.http}/ws")
        await ws.connect()
        await ws.open()
        await ws.send("<message xmlns='jabber:client'><body>" + "y" * 100000 + "</body></message>")
        assert await ws.closed()
        assert ws.ws is not None and ws.ws.close_code == 1009
        await ws.close()
    run(main())


def test_websocket_ping_and_xml_declaration(server: Any) -> None:
    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{server.http}/ws")
        await ws.connect()
        assert ws.ws is not None
        await ws.ws.ping(b"are you there")
        # an XML declaration in front of a message is tolerated
        await ws.send("<?xml version='1.0'?>" + OPEN)
        assert (await ws.recv()).tag == f"{{{FRAMING}}}open"
        assert (await ws.recv()).tag == f"{{{STREAM}}}features"
        await ws.close()
    run(main())


def test_plain_login_only_from_loopback_or_tls_proxies(make_server: Any) -> None:
    srv = web_listeners(make_server(config={"trusted_proxies": ["127.0.0.1"]}))
    srv.register("alice", "alice-pw")
    srv.start()

    async def main() -> None:
        url = f"ws://127.0.0.1:{srv.http}/ws"
        http = aiohttp.ClientSession()
        try:
            # a proxy says the client is remote and came over plain http: refused
            ws = await http.ws_connect(url, protocols=("xmpp",),
                                       headers={"X-Forwarded-For": "203.0.113.7"})
            await ws.send_str(OPEN)
            texts = []
            async for msg in ws:
                texts.append(msg.data)
            assert any("policy-violation" in t and "wss://" in t for t in texts), texts
            # the proxy terminated TLS for it: allowed
            ws = await http.ws_connect(url, protocols=("xmpp",), headers={
                "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
            await ws.send_str(OPEN)
            head = ET.fromstring((await ws.receive()).data)
            feats = ET.fromstring((await ws.receive()).data)
            assert head.get("from") == "localhost"
            assert "SCRAM-SHA-1" in mechanisms(feats)
            await ws.close()
        finally:
            await http.close()
    run(main())


def test_plain_login_from_anywhere_when_allowed(make_server: Any) -> None:
    # starttls_required: false on the listener allows logins over plain ws (as ejabberd)
    srv = web_listeners(make_server(config={"trusted_proxies": "all"}), starttls_required=False)
    srv.register("alice", "alice-pw")
    srv.start()

    async def main() -> None:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(f"ws://127.0.0.1:{srv.http}/ws", protocols=("xmpp",),
                                       headers={"X-Forwarded-For": "198.51.100.1"})
            await ws.send_str(OPEN)
            await ws.receive()
            feats = ET.fromstring((await ws.receive()).data)
            assert "SCRAM-SHA-1" in mechanisms(feats)
            await ws.close()
        finally:
            await http.close()
    run(main())


def test_session_replaced_over_websocket(server: Any) -> None:
    async def main() -> None:
        url = f"ws://127.0.0.1:{server.http}/ws"
        one = WSClient(url)
        await one.login("alice", "alice-pw", "same")
        two = WSClient(url)
        await two.login("alice", "alice-pw", "same")
        assert await stream_error(one) == "conflict"
        await two.send("<iq xmlns='jabber:client' type='get' id='v' to='localhost'><query "
                       "xmlns='jabber:iq:version'/></iq>")
        assert (await two.recv_until(lambda e: e.get("id") == "v")).get("type") == "result"
        await one.close()
        await two.close()
    run(main())


def test_auth_failure_over_websocket(server: Any) -> None:
    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{server.http}/ws")
        await ws.connect()
        await ws.open()
        data = base64.b64encode(b"n,,n=alice,r=abc").decode()
        await ws.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>{data}</auth>")
        await ws.recv()  # the challenge
        await ws.send(f"<response xmlns='{SASL}'>"
                      f"{base64.b64encode(b'c=biws,r=wrong,p=AAAA').decode()}</response>")
        res = await ws.recv()
        assert local(res.tag) == "failure"
        await ws.close()
    run(main())


def test_server_pings_and_drops_a_silent_peer(make_server: Any) -> None:
    srv = web_listeners(make_server(config={"websocket_ping_interval": 1}))
    srv.start()

    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"ws://127.0.0.1:{srv.http}/ws", protocols=("xmpp",),
                                       autoping=False)
            msg = await ws.receive(5)
            assert msg.type == aiohttp.WSMsgType.PING
            # no pong: the server gives up on us
            while msg.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                msg = await ws.receive(10)
            await ws.close()
    run(main())


def test_listener_shaper_slows_reading_down(make_server: Any) -> None:
    srv = web_listeners(make_server(config={"shaper": {"slow": {"rate": 2000,
                                                                "burst_size": 2000}}}),
                        shaper="slow")
    srv.register("alice", "alice-pw")
    srv.start()

    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{srv.http}/ws")
        await ws.login("alice", "alice-pw", "s")
        loop = asyncio.get_running_loop()
        t = loop.time()
        for i in range(6):  # 6 x ~1000 bytes at 2000 bytes/s, after the burst
            await ws.send(f"<iq xmlns='jabber:client' type='get' id='s{i}' to='localhost'>"
                          f"<ping xmlns='urn:xmpp:ping'/></iq>")
            await ws.send("<message xmlns='jabber:client' to='nobody@localhost'><body>"
                          + "z" * 900 + "</body></message>")
        await ws.recv_until(lambda e: e.get("id") == "s5", timeout=15)
        assert loop.time() - t > 1.0  # shaped: nothing was dropped, reading paused
        await ws.close()
    run(main())


def test_stream_management_resumes_over_websocket(make_server: Any) -> None:
    """XEP-0198 over WebSocket (as Converse.js uses it): the WebSocket drops, a new one
    resumes the session, gets what arrived meanwhile, and the session goes on there."""
    server = web_listeners(make_server(modules={"mod_stream_mgmt": {}, "mod_ping": {}}))
    server.register("alice", "alice-pw")
    server.register("bob", "bob-pw")
    server.start()
    sm = "urn:xmpp:sm:3"

    async def main() -> None:
        url = f"ws://127.0.0.1:{server.http}/ws"
        ws = WSClient(url)
        await ws.login("alice", "alice-pw", "web")
        await ws.send(f"<enable xmlns='{sm}' resume='true'/>")
        enabled = await ws.recv_until(lambda e: e.tag == f"{{{sm}}}enabled")
        previd = enabled.get("id")
        assert previd and enabled.get("resume") == "true"
        assert ws.ws is not None
        await ws.ws.close()  # the WebSocket ends without </close>: the session waits
        await ws.close()

        bob = RawClient(server.c2s)
        await bob.login("bob", "bob-pw", "tcp")
        await bob.send("<message to='alice@localhost/web' type='chat' id='m1'>"
                       "<body>while away</body></message>")

        again = WSClient(url)
        await again.connect()
        await again.open()
        res = await again.auth_scram("alice", "alice-pw")
        assert local(res.tag) == "success"
        await again.open()
        await again.send(f"<resume xmlns='{sm}' previd='{previd}' h='0'/>")
        resumed = await again.recv_until(lambda e: e.tag == f"{{{sm}}}resumed")
        assert resumed.get("previd") == previd
        got = await again.recv_until(lambda e: e.get("id") == "m1")
        assert got.findtext("{jabber:client}body") == "while away"
        # the resumed session reads from the new WebSocket
        await again.send("<iq xmlns='jabber:client' type='get' id='p1' to='localhost'>"
                         "<ping xmlns='urn:xmpp:ping'/></iq>")
        pong = await again.recv_until(lambda e: e.get("id") == "p1")
        assert pong.get("type") == "result"
        await again.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat' "
                         "id='m2'><body>back</body></message>")
        back = await bob.recv_until(lambda e: e.get("id") == "m2")
        assert back.get("from") == "alice@localhost/web"
        await again.close()
        await bob.close()
    run(main())
