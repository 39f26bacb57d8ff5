"""Reliable delivery end to end: stream management, offline storage, receipts, markers,
carbons, de-duplication and resumption, with raw SM clients on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Iterator

import pytest
from conftest import run
from helpers.procs import PostgresServer, XmppdServer
from helpers.raw import RawClient, local
from helpers.smclient import SM, SMClient, ack_too_much, body, stanza_id

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "ken", "lena", "mike", "nina", "oscar", "pat", "quinn", "rita", "sam")
MODULES = {"mod_disco": {}, "mod_ping": {}, "mod_stream_mgmt": {"max_resume_timeout": 60},
           "mod_offline": {}, "mod_carboncopy": {}, "mod_receipts": {}}
CONFIG = {"acl": {"tiny": {"user": "carol"}},
          "shaper_rules": {"max_user_offline_messages": {3: "tiny", 100: "all"}}}
DELAY = "{urn:xmpp:delay}delay"
RECEIPTS = "urn:xmpp:receipts"
MARKERS = "urn:xmpp:chat-markers:0"
CARBONS = "urn:xmpp:carbons:2"


@pytest.fixture(scope="module", params=["sqlite", "pgsql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    pg: PostgresServer | None = request.getfixturevalue("postgres") if request.param == "pgsql" else None
    srv = XmppdServer(tmp_path_factory.mktemp(f"delivery-{request.param}"), db=request.param,
                      pg=pg, modules=MODULES, config=CONFIG)
    for user in USERS:
        srv.register(user, "pw")
    srv.start()
    yield srv
    srv.stop()


def chat(to: str, text: str, mid: str, extra: str = "") -> str:
    return f"<message to='{to}' type='chat' id='{mid}'><body>{text}</body>{extra}</message>"


def test_online_delivery_acked_with_stanza_id(server: XmppdServer) -> None:
    async def main() -> None:
        a = await SMClient(server.c2s, "alice", "pw", "phone").connect()
        b = await SMClient(server.c2s, "bob", "pw", "laptop").connect()
        for i in range(20):
            await a.send(chat("bob@localhost", f"hello {i}", f"on{i}"))
        await a.wait_acked()
        got = await b.messages(20)
        assert [body(m) for m in got] == [f"hello {i}" for i in range(20)]
        assert all(m.get("from") == "alice@localhost/phone" for m in got)
        ids = [stanza_id(m) for m in got]
        assert None not in ids and len(set(ids)) == 20
        assert all(m.find("{urn:xmpp:sid:0}stanza-id").get("by") == "bob@localhost" for m in got)
        await a.close()
        await b.close()
    run(main())


def test_forged_stanza_id_is_replaced(server: XmppdServer) -> None:
    async def main() -> None:
        a = await SMClient(server.c2s, "alice", "pw", "forger").connect()
        b = await SMClient(server.c2s, "bob", "pw", "victim").connect()
        await a.send(chat("bob@localhost", "forged", "f1",
                          "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='fake'/>"))
        (m,) = await b.messages(1)
        sids = m.findall("{urn:xmpp:sid:0}stanza-id")
        assert len(sids) == 1 and sids[0].get("id") != "fake"
        await a.close()
        await b.close()
    run(main())


def test_offline_storage_in_order_with_delay_then_deleted(server: XmppdServer) -> None:
    async def main() -> None:
        a = await SMClient(server.c2s, "dave", "pw").connect()
        for i in range(10):
            await a.send(chat("erin@localhost", f"while you were out {i}", f"off{i}"))
        await a.wait_acked()
        # a chat state alone is not stored (XEP-0160), a headline neither
        await a.send("<message to='erin@localhost' type='chat'>"
                     "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await a.send("<message to='erin@localhost' type='headline'><body>news</body></message>")
        await a.wait_acked()
        e = await SMClient(server.c2s, "erin", "pw", "one").connect()
        got = await e.messages(10)
        assert [body(m) for m in got] == [f"while you were out {i}" for i in range(10)]
        for m in got:
            d = m.find(DELAY)
            assert d is not None and d.get("from") == "localhost" and d.get("stamp", "").endswith("Z")
            assert m.get("from") == "dave@localhost/sm"
        assert await e.quiet(0.5) == []
        await e.close()
        e2 = await SMClient(server.c2s, "erin", "pw", "two").connect()
        assert [x for x in await e2.quiet(0.7) if x.tag.endswith("message")] == []
        await e2.close()
        await a.close()
    run(main())


def test_a_message_retracted_before_delivery_never_arrives(server: XmppdServer) -> None:
    """XEP-0424: the author takes back a message while it waits in offline storage: the
    recipient gets the retraction, never the message; nobody else can take it back."""
    retract = ("<message to='rita@localhost' type='chat' id='{id}'>"
               "<retract xmlns='urn:xmpp:message-retract:1' id='{target}'/>"
               "<body>{text}</body></message>")

    async def main() -> None:
        q = await SMClient(server.c2s, "quinn", "pw").connect()
        s = await SMClient(server.c2s, "sam", "pw").connect()
        await q.send(chat("rita@localhost", "a secret", "keep-1"))
        await q.send(chat("rita@localhost", "not for you", "take-back-1"))
        await q.wait_acked()
        await s.send(retract.format(id="r0", target="keep-1", text="not mine to take"))
        await s.wait_acked()
        await q.send(retract.format(id="r1", target="take-back-1", text="retracted"))
        await q.wait_acked()
        r = await SMClient(server.c2s, "rita", "pw").connect()
        got = await r.messages(3)
        assert [body(m) for m in got] == ["a secret", "not mine to take", "retracted"]
        assert await r.quiet(0.5) == []
        for c in (q, s, r):
            await c.close()
    run(main())


def test_offline_limit_answers_service_unavailable(server: XmppdServer) -> None:
    async def main() -> None:
        a = await SMClient(server.c2s, "frank", "pw").connect()
        for i in range(5):
            await a.send(chat("carol@localhost", f"m{i}", f"lim{i}"))
        await a.wait_acked()
        errors = [m for m in await a.messages(2, timeout=10) if m.get("type") == "error"]
        assert {m.get("id") for m in errors} == {"lim3", "lim4"}
        for m in errors:
            assert m.find("{jabber:client}error/"
                          "{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None
        c = await SMClient(server.c2s, "carol", "pw").connect()
        assert [body(m) for m in await c.messages(3)] == ["m0", "m1", "m2"]
        assert await c.quiet(0.5) == []
        await c.close()
        await a.close()
    run(main())


def test_receipts_and_markers_to_online_and_offline_sender(server: XmppdServer) -> None:
    async def main() -> None:
        g = await SMClient(server.c2s, "grace", "pw", "mobile").connect()
        h = await SMClient(server.c2s, "heidi", "pw", "desk").connect()
        await g.send(chat("heidi@localhost", "ping", "r1",
                          f"<request xmlns='{RECEIPTS}'/><markable xmlns='{MARKERS}'/>"))
        (m,) = await h.messages(1)
        assert m.find(f"{{{RECEIPTS}}}request") is not None
        # online sender: delivered and read ticks come straight back
        await h.send(f"<message to='grace@localhost/mobile' id='rc1'>"
                     f"<received xmlns='{RECEIPTS}' id='r1'/></message>")
        await h.send(f"<message to='grace@localhost/mobile' type='chat' id='mk1'>"
                     f"<displayed xmlns='{MARKERS}' id='r1'/></message>")
        r, d = await g.messages(2)
        assert r.find(f"{{{RECEIPTS}}}received").get("id") == "r1"
        assert d.find(f"{{{MARKERS}}}displayed").get("id") == "r1"
        # offline sender: the ticks wait in offline storage
        await g.send(chat("heidi@localhost", "bye", "r2", f"<request xmlns='{RECEIPTS}'/>"))
        await g.wait_acked()
        await g.close()
        (m,) = await h.messages(1)
        assert body(m) == "bye"
        await asyncio.sleep(1)
        await h.send(f"<message to='grace@localhost/mobile' id='rc2'>"
                     f"<received xmlns='{RECEIPTS}' id='r2'/></message>")
        await h.send(f"<message to='grace@localhost/mobile' type='chat' id='mk2'>"
                     f"<displayed xmlns='{MARKERS}' id='r2'/></message>")
        await h.wait_acked()
        g2 = await SMClient(server.c2s, "grace", "pw", "mobile").connect()
        r, d = await g2.messages(2)
        assert r.find(f"{{{RECEIPTS}}}received").get("id") == "r2"
        assert d.find(f"{{{MARKERS}}}displayed").get("id") == "r2"
        assert r.find(DELAY) is not None and d.find(DELAY) is not None
        await g2.close()
        await h.close()
    run(main())


def test_server_advertises_receipts_markers_carbons_sm(server: XmppdServer) -> None:
    async def main() -> None:
        c = RawClient(server.c2s)
        await c.login("ivan", "pw")
        await c.send("<iq type='get' to='localhost' id='d1'>"
                     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        res = await c.recv_until(lambda e: e.get("id") == "d1")
        feats = {f.get("var") for f in res.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert {RECEIPTS, MARKERS, CARBONS, "msgoffline"} <= feats
        await c.close()
    run(main())


async def _carbons_on(c: SMClient, iq_id: str) -> None:
    await c.send(f"<iq type='set' id='{iq_id}'><enable xmlns='{CARBONS}'/></iq>")
    while True:
        el = await c.receive()
        if el.get("id") == iq_id:
            assert el.get("type") == "result", ET.tostring(el)
            return


def test_carbons_between_two_resources_including_markers(server: XmppdServer) -> None:
    async def main() -> None:
        phone = await SMClient(server.c2s, "judy", "pw", "phone").connect()
        laptop = await SMClient(server.c2s, "judy", "pw", "laptop").connect()
        other = await SMClient(server.c2s, "ken", "pw", "x").connect()
        await _carbons_on(phone, "c1")
        await _carbons_on(laptop, "c2")
        await phone.quiet(0.3)
        await laptop.quiet(0.3)
        # received on the phone (full JID): the laptop gets a <received/> carbon
        await other.send(chat("judy@localhost/phone", "to your phone", "k1",
                              f"<markable xmlns='{MARKERS}'/>"))
        (direct,) = await phone.messages(1)
        assert body(direct) == "to your phone"
        (copy,) = await laptop.messages(1)
        fwd = copy.find(f"{{{CARBONS}}}received/{{urn:xmpp:forward:0}}forwarded/"
                        "{jabber:client}message")
        assert copy.get("from") == "judy@localhost" and fwd is not None
        assert body(fwd) == "to your phone"
        # the phone reads it: the marker goes to ken and as <sent/> carbon to the laptop
        await phone.send(f"<message to='ken@localhost/x' type='chat' id='mk'>"
                         f"<displayed xmlns='{MARKERS}' id='k1'/></message>")
        (mk,) = await other.messages(1)
        assert mk.find(f"{{{MARKERS}}}displayed") is not None
        (sent,) = await laptop.messages(1)
        fwd = sent.find(f"{{{CARBONS}}}sent/{{urn:xmpp:forward:0}}forwarded/"
                        "{jabber:client}message")
        assert fwd is not None and fwd.find(f"{{{MARKERS}}}displayed").get("id") == "k1"
        assert await phone.quiet(0.3) == []
        # private messages are not copied; after disabling, nothing is copied
        await phone.send(chat("ken@localhost", "secret", "p1", f"<private xmlns='{CARBONS}'/>"))
        await other.messages(1)
        assert await laptop.quiet(0.4) == []
        await laptop.send(f"<iq type='set' id='c3'><disable xmlns='{CARBONS}'/></iq>")
        await phone.send(chat("ken@localhost", "plain", "p2"))
        await other.messages(1)
        assert [x for x in await laptop.quiet(0.4) if x.tag.endswith("message")] == []
        for c in (phone, laptop, other):
            await c.close()
    run(main())


def test_retried_messages_are_delivered_once(server: XmppdServer) -> None:
    async def main() -> None:
        a = await SMClient(server.c2s, "lena", "pw").connect()
        b = await SMClient(server.c2s, "mike", "pw").connect()
        oid = "<origin-id xmlns='urn:xmpp:sid:0' id='o-1'/>"
        await a.send(chat("mike@localhost", "once", "x1", oid))
        await a.send(chat("mike@localhost", "once", "x2", oid))      # same origin-id
        await a.send(chat("mike@localhost", "by id", "same-id"))
        await a.send(chat("mike@localhost", "by id", "same-id"))     # same id
        await a.send(chat("mike@localhost/sm", "by id", "same-id"))  # to a full JID
        await a.send(chat("mike@localhost", "new", "x3"))
        await a.send(chat("mike@localhost", "other text", "same-id"))  # an id used again
        await a.wait_acked()
        got = await b.messages(4)
        assert [body(m) for m in got] == ["once", "by id", "new", "other text"]
        assert await b.quiet(0.5) == []
        # the same id towards someone else is another message
        c = await SMClient(server.c2s, "nina", "pw").connect()
        await a.send(chat("nina@localhost", "by id", "same-id"))
        assert [body(m) for m in await c.messages(1)] == ["by id"]
        for x in (a, b, c):
            await x.close()
    run(main())


def test_resumption_after_dropped_connection_loses_and_duplicates_nothing(
        server: XmppdServer) -> None:
    async def main() -> None:
        a = await SMClient(server.c2s, "oscar", "pw", "roaming").connect()
        b = await SMClient(server.c2s, "pat", "pw", "home").connect()
        for i in range(5):
            await b.send(chat("oscar@localhost/roaming", f"before {i}", f"b{i}"))
        await a.messages(5)
        await a.wait_acked()
        a.mute = True                 # what comes now is never acknowledged...
        for i in range(3):
            await b.send(chat("oscar@localhost/roaming", f"unacked {i}", f"u{i}"))
        await a.messages(3)
        for i in range(4):            # ...and these are sent blind
            await a.send(chat("pat@localhost", f"from oscar {i}", f"o{i}"))
        a.drop()                      # the TCP connection dies
        await asyncio.sleep(0.3)
        for i in range(3):            # the session still receives, in its queue
            await b.send(chat("oscar@localhost/roaming", f"meanwhile {i}", f"w{i}"))
        await b.wait_acked()
        a.h -= 3                      # the client lost what it had not acknowledged
        a.mute = False
        res = await a.resume()
        assert local(res.tag) == "resumed", ET.tostring(res)
        got = await a.messages(6)
        assert [body(m) for m in got] == [f"unacked {i}" for i in range(3)] + \
            [f"meanwhile {i}" for i in range(3)]
        await a.wait_acked()
        got_b = await b.messages(4)
        assert [body(m) for m in got_b] == [f"from oscar {i}" for i in range(4)]
        assert await b.quiet(0.5) == [] and await a.quiet(0.3) == []
        # the session kept its JID: a new message still reaches it
        await b.send(chat("oscar@localhost/roaming", "after", "z"))
        assert [body(m) for m in await a.messages(1)] == ["after"]
        await a.close()
        await b.close()
    run(main())


def test_resumption_timeout_sends_unacked_to_offline_storage(server: XmppdServer) -> None:
    async def main() -> None:
        a = SMClient(server.c2s, "alice", "pw", "flaky", ack_each=False)
        a.mute = True  # never acknowledges: the message stays in the session's queue
        raw = a.raw = await a._authenticate()
        a.jid = await raw.bind("flaky")
        await raw.send(f"<enable xmlns='{SM}' resume='true' max='1'/>")
        enabled = await raw.recv()
        assert enabled.get("max") == "1"
        a.sm_id = enabled.get("id")
        a._start_reader()
        await a.send("<presence/>")
        b = await SMClient(server.c2s, "bob", "pw", "sender").connect()
        await b.send(chat("alice@localhost/flaky", "are you there?", "t1"))
        await a.messages(1)
        a.drop()
        await asyncio.sleep(2.5)      # past the resumption timeout
        res = await a.resume()
        assert local(res.tag) == "failed"
        a2 = await SMClient(server.c2s, "alice", "pw", "again").connect()
        (m,) = await a2.messages(1)
        assert body(m) == "are you there?" and m.find(DELAY) is not None
        await a2.close()
        await b.close()
    run(main())


def test_sm_protocol_errors(server: XmppdServer) -> None:
    async def main() -> None:
        a = SMClient(server.c2s, "bob", "pw", "errs")
        raw = await a._authenticate()
        await raw.send(f"<enable xmlns='{SM}'/>")  # before bind
        el = await raw.recv()
        assert local(el.tag) == "failed" and \
            el.find("{urn:ietf:params:xml:ns:xmpp-stanzas}unexpected-request") is not None
        await raw.send(f"<resume xmlns='{SM}' previd='nope' h='0'/>")
        el = await raw.recv()
        assert local(el.tag) == "failed" and \
            el.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
        await raw.bind("errs")
        await raw.send(f"<enable xmlns='{SM}'/>")
        el = await raw.recv()
        assert local(el.tag) == "enabled" and el.get("resume") is None
        await raw.send(f"<a xmlns='{SM}' h='7'/>")  # nothing was sent yet
        assert await raw.stream_error() == "undefined-condition"
        await raw.close()
    run(main())



def test_acking_more_than_was_sent_is_a_stream_error(server: XmppdServer) -> None:
    """XEP-0198 5: h above what the server sent ends the stream with
    <undefined-condition/> and <handled-count-too-high/> (h and send-count)."""
    async def main() -> None:
        c = RawClient(server.c2s)
        await c.login(USERS[0], "pw", "sm")
        too_high = await ack_too_much(c, 7)
        assert too_high.get("h") == "7" and too_high.get("send-count") == "0"
        assert await c.closed()
    run(main())
