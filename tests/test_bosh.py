"""BOSH (XEP-0124, XEP-0206) at /bosh, checked from outside with raw HTTP
requests (aiohttp) and TCP clients, against a real xmppd process."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import pytest
from conftest import run
from helpers.raw import RawClient, local, no_verify
from helpers.smclient import ack_too_much
from helpers.web import BOSH, STREAM, XBOSH, BoshClient, web_listeners

PING = "<iq xmlns='jabber:client' type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"


@pytest.fixture
def bare(make_server: Any) -> Any:
    return web_listeners(make_server()).start()


@pytest.fixture
def server(make_server: Any) -> Any:
    srv = web_listeners(make_server(), tls=True)
    srv.register("alice", "alice-pw")
    return srv.start()


def url(srv: Any) -> str:
    return f"http://127.0.0.1:{srv.http}/bosh"


def test_session_login_chat_and_terminate(server: Any) -> None:
    server.register("bob", "bob-pw")

    async def main() -> None:
        c = BoshClient(url(server), wait=3)
        created = await c.create(ack="1")
        a = created.attrib
        assert a["sid"] and a["wait"] == "3" and a["hold"] == "1" and a["requests"] == "2"
        assert a["ver"] == "1.11" and a["from"] == "localhost" and a["authid"]
        assert a["inactivity"] == "30" and a["polling"] and a["maxpause"] == "120"
        assert a[f"{{{XBOSH}}}version"] == "1.0" and a[f"{{{XBOSH}}}restartlogic"] == "true"
        assert a["secure"] == "true" and a["ack"] == str(c.rid)
        feats = await c.recv()  # in the creation response (XEP-0206 6)
        assert feats.tag == f"{{{STREAM}}}features"
        res = await c.auth_scram("alice", "alice-pw")
        assert local(res.tag) == "success"
        await c.open()  # xmpp:restart='true'
        assert await c.bind("web") == "alice@localhost/web"
        await c.send("<presence xmlns='jabber:client'/>")

        bob = RawClient(server.c2s)
        await bob.login("bob", "bob-pw", "tcp")
        await c.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'>"
                     "<body>over bosh</body></message>")
        got = await bob.recv_until(lambda e: local(e.tag) == "message")
        assert got.get("from") == "alice@localhost/web"
        assert got.findtext("{jabber:client}body") == "over bosh"

        # a held request is answered as soon as something arrives
        c.pending.clear()
        poll = asyncio.ensure_future(c.post())
        await asyncio.sleep(0.5)
        assert not poll.done()
        await bob.send("<message to='alice@localhost/web' type='chat'><body>to bosh</body></message>")
        resp = await asyncio.wait_for(poll, 5)
        msgs = [m for m in resp if m.tag == "{jabber:client}message"]
        assert len(msgs) == 1 and msgs[0].findtext("{jabber:client}body") == "to bosh"

        end = await c.post("<presence xmlns='jabber:client' type='unavailable'/>", type="terminate")
        assert end.get("type") == "terminate" and end.get("condition") is None
        # the session is gone
        c.eof = False
        gone = await c.post()
        assert gone.get("type") == "terminate" and gone.get("condition") == "item-not-found"
        await bob.send("<message to='alice@localhost/web' type='chat' id='m2'><body>?</body></message>")
        bounce = await bob.recv_until(lambda e: e.get("id") == "m2")
        assert bounce.get("type") == "error"
        await bob.close()
        await c.close()
    run(main())


def test_wait_expires_with_an_empty_body(server: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(server), wait=1)
        await c.login("alice", "alice-pw")
        c.pending.clear()
        t = time.monotonic()
        resp = await c.post()
        assert list(resp) == [] and resp.get("type") is None
        assert time.monotonic() - t >= 0.9
        await c.close()
    run(main())


def test_unknown_sid_and_rid_out_of_window(bare: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(bare))
        await c.create()
        sid = c.sid
        c.sid = "no-such-session"
        resp = await c.post()
        assert resp.get("type") == "terminate" and resp.get("condition") == "item-not-found"
        c.sid, c.eof = sid, False
        resp = await c.post(rid=c.rid + 10)  # far past the window of `requests`
        assert resp.get("condition") == "item-not-found"
        c.eof = False
        resp = await c.post()  # the session ended
        assert resp.get("condition") == "item-not-found"
        await c.close()
    run(main())


def test_repeated_rid_gets_the_same_response(server: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(server))
        await c.login("alice", "alice-pw", presence=False)
        c.pending.clear()
        rid = c.next_rid()
        first = await c.post(PING.format(id="r1"), rid=rid)
        again = await c.post(PING.format(id="r1"), rid=rid)  # as if the answer was lost
        assert ET.tostring(first) == ET.tostring(again)
        assert [e.get("id") for e in first] == ["r1"]
        await c.close()
    run(main())


def test_requests_are_processed_in_rid_order(server: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(server))
        await c.login("alice", "alice-pw", presence=False)
        c.pending.clear()
        first, second = c.rid + 1, c.rid + 2
        c.rid = second
        late = asyncio.ensure_future(c.post(PING.format(id="second"), rid=second))
        await asyncio.sleep(0.3)
        assert not late.done()  # waits for the gap to be filled
        early = await c.post(PING.format(id="first"), rid=first)
        assert [e.get("id") for e in early] == ["first"]
        assert [e.get("id") for e in await asyncio.wait_for(late, 5)] == ["second"]
        await c.close()
    run(main())


def test_polling_too_often_is_a_policy_violation(bare: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(bare), hold=0)
        created = await c.create()
        assert created.get("hold") == "0" and created.get("requests") == "1"
        await c.post()
        resp = await c.post()
        assert resp.get("type") == "terminate" and resp.get("condition") == "policy-violation"
        await c.close()
    run(main())


def test_pause(server: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(server), wait=60)
        await c.login("alice", "alice-pw", presence=False)
        # answered at once (not held for `wait`), and the session is kept
        resp = await asyncio.wait_for(c.post(pause="60"), 30)
        assert resp.get("type") is None
        c.pending.clear()
        resp = await c.post(PING.format(id="after-pause"))
        assert [e.get("id") for e in resp] == ["after-pause"]
        resp = await c.post(pause="100000")
        assert resp.get("condition") == "policy-violation"
        await c.close()
    run(main())


def test_inactivity_ends_the_session(make_server: Any) -> None:
    srv = web_listeners(make_server(modules={"mod_bosh": {"max_inactivity": 1}}))
    srv.register("alice", "alice-pw")
    srv.start()

    async def main() -> None:
        c = BoshClient(url(srv), wait=1)
        await c.login("alice", "alice-pw", "idle")
        assert c.last is not None
        await asyncio.sleep(2.5)
        resp = await c.post()
        assert resp.get("condition") == "item-not-found"
        bob = RawClient(srv.c2s)
        await bob.login("alice", "alice-pw", "tcp")
        await bob.send("<message to='alice@localhost/idle' id='x'><body>?</body></message>")
        assert (await bob.recv_until(lambda e: e.get("id") == "x")).get("type") == "error"
        await bob.close()
        await c.close()
    run(main())


@pytest.mark.parametrize("data,condition", [
    ("<body xmlns='%s' rid='1' to='localhost'" % BOSH, "bad-request"),
    ("<notbody xmlns='%s' rid='1' to='localhost'/>" % BOSH, "bad-request"),
    ("<body xmlns='%s' to='localhost' wait='5' hold='1'/>" % BOSH, "bad-request"),
    ("<body xmlns='%s' rid='1' to='nowhere.example' wait='5' hold='1'/>" % BOSH, "host-unknown"),
    ("<!DOCTYPE body [<!ENTITY x 'y'>]><body xmlns='%s' rid='1' to='localhost'/>" % BOSH,
     "bad-request"),
], ids=["incomplete", "root", "no-rid", "host", "dtd"])
def test_bad_session_requests(bare: Any, data: str, condition: str) -> None:
    async def main() -> None:
        c = BoshClient(url(bare))
        resp = await c.post_raw(data)
        assert resp.get("type") == "terminate" and resp.get("condition") == condition
        await c.close()
    run(main())


def test_bad_body_ends_its_session(bare: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(bare))
        await c.create()
        resp = await c.post_raw(f"<body xmlns='{BOSH}' sid='{c.sid}' rid='{c.next_rid()}'>"
                                "<message xmlns='jabber:client'><body>cut</message></body>")
        assert resp.get("condition") == "bad-request"
        c.eof = False
        assert (await c.post()).get("condition") == "item-not-found"
        await c.close()
    run(main())


def test_stream_errors_are_remote_stream_errors(bare: Any) -> None:
    async def main() -> None:
        c = BoshClient(url(bare))
        await c.open()
        resp = await c.post("<message xmlns='jabber:client' to='bob@localhost'><body>x</body>"
                            "</message>")
        assert resp.get("type") == "terminate"
        assert resp.get("condition") == "remote-stream-error"
        err = resp.find(f"{{{STREAM}}}error")
        assert err is not None
        assert err.find("{urn:ietf:params:xml:ns:xmpp-streams}not-authorized") is not None
        await c.close()
    run(main())


def test_stream_management_error_keeps_its_condition(make_server: Any) -> None:
    """The XEP-0198 <handled-count-too-high/> child reaches a BOSH client inside the
    remote-stream-error (it was lost there)."""
    srv = web_listeners(make_server(modules={"mod_stream_mgmt": {}}))
    srv.register("alice", "alice-pw")
    srv.start()

    async def main() -> None:
        c = BoshClient(url(srv), wait=1)
        await c.login("alice", "alice-pw")
        # the terminate body carries the stream error (XEP-0206 7.4)
        too_high = await ack_too_much(c, 3)
        assert too_high.get("h") == "3"
    run(main())


def test_oversize_stanza(make_server: Any) -> None:
    srv = web_listeners(make_server(), max_stanza_size=5000)
    srv.start()

    async def main() -> None:
        c = BoshClient(url(srv))
        await c.open()
        resp = await c.post("<message xmlns='jabber:client'><body>" + "z" * 8000 + "</body></message>")
        assert resp.get("condition") == "policy-violation"
        c.eof = False
        assert (await c.post()).get("condition") == "item-not-found"
        # a body far over every limit is refused without reading it all
        c2 = BoshClient(url(srv))
        resp = await c2.post_raw(f"<body xmlns='{BOSH}' rid='1' to='localhost'>" + "x" * 100000
                                 + "</body>")
        assert resp.get("condition") == "policy-violation"
        await c.close()
        await c2.close()
    run(main())


def test_sessions_per_ip(make_server: Any) -> None:
    srv = web_listeners(make_server(), max_sessions_per_ip=1)
    srv.start()

    async def main() -> None:
        one = BoshClient(url(srv))
        await one.create()
        two = BoshClient(url(srv))
        resp = await two.create()
        assert resp.get("type") == "terminate" and resp.get("condition") == "policy-violation"
        await one.post(type="terminate")
        three = BoshClient(url(srv))
        assert (await three.create()).get("sid")
        for c in (one, two, three):
            await c.close()
    run(main())


def test_cors_and_origin(make_server: Any) -> None:
    srv = web_listeners(make_server(), allowed_origins=["http://app.example"])
    srv.start()

    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.options(url(srv), headers={
                    "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type"}) as resp:
                assert resp.status == 204
                assert resp.headers["Access-Control-Allow-Origin"] == "http://app.example"
                assert "POST" in resp.headers["Access-Control-Allow-Methods"]
                assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
            async with http.post(url(srv), data="<body/>",
                                 headers={"Origin": "http://evil.example"}) as resp:
                assert resp.status == 403
            async with http.get(url(srv)) as resp:
                assert resp.status == 200 and "BOSH" in await resp.text()
        c = BoshClient(url(srv), origin="http://app.example")
        assert (await c.create()).get("sid")
        await c.close()
    run(main())


def test_https_listener_is_secure(server: Any) -> None:
    server.register("bob", "bob-pw")

    async def main() -> None:
        c = BoshClient(f"https://127.0.0.1:{server.https}/bosh", ssl=no_verify())
        created = await c.create()
        assert created.get("secure") == "true"
        feats = await c.recv()
        mechs = [m.text for m in feats.iter("{urn:ietf:params:xml:ns:xmpp-sasl}mechanism")]
        assert "PLAIN" in mechs and "SCRAM-SHA-1-PLUS" in mechs
        res = await c.auth_plain("bob", "bob-pw")
        assert local(res.tag) == "success"
        await c.open()
        assert await c.bind("s") == "bob@localhost/s"
        await c.close()
    run(main())


def test_plain_http_login_refused_for_remote_clients(make_server: Any) -> None:
    srv = web_listeners(make_server(config={"trusted_proxies": ["127.0.0.0/8"]}))
    srv.start()

    async def main() -> None:
        c = BoshClient(url(srv))
        data = c.wrap("", to="localhost", wait="5", hold="1", xmpp__version="1.0")
        resp = await c.post_raw(data, headers={"X-Forwarded-For": "192.0.2.1"})
        assert resp.get("condition") == "policy-violation"
        resp = await c.post_raw(data, headers={"X-Forwarded-For": "192.0.2.1",
                                               "X-Forwarded-Proto": "https"})
        assert resp.get("sid")
        await c.close()
    run(main())
