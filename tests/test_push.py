"""Push notifications (XEP-0357, mod_push): a phone whose connection is gone (its
session kept for resumption) or that is offline gets a notification through its app
server, which here is a raw client's full JID; errors of the app server remove the
registration."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable

from conftest import run
from helpers.peer import Peer
from helpers.procs import XmppdServer
from helpers.raw import C
from helpers.smclient import SMClient

MakeServer = Callable[..., XmppdServer]
MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_offline": {},
           "mod_stream_mgmt": {"max_resume_timeout": 60},
           "mod_push": {"include_sender": True, "notify_on": "messages"}}
PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
APP = "app@localhost/push"


def enable(node: str, secret: str = "s3cr3t") -> str:
    return (f"<iq type='set' id='en-{node}'><enable xmlns='{PUSH}' jid='{APP}' node='{node}'>"
            f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'>"
            f"<value>{PUBSUB}#publish-options</value></field>"
            f"<field var='secret'><value>{secret}</value></field></x></enable></iq>")


def is_push(node: str) -> Callable[[ET.Element], bool]:
    def pred(el: ET.Element) -> bool:
        pub = el.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        return el.tag == C + "iq" and pub is not None and pub.get("node") == node
    return pred


def summary(iq: ET.Element) -> dict[str, str]:
    form = iq.find(f".//{{{PUSH}}}notification/{{{DATA}}}x")
    assert form is not None, ET.tostring(iq)
    return {f.get("var", ""): f.findtext(f"{{{DATA}}}value") or ""
            for f in form.iter(f"{{{DATA}}}field")}


async def sleeping_phone(port: int, resource: str) -> SMClient:
    """alice's phone with stream management enables push (node n-RESOURCE), then its
    connection dies: the session waits for resumption."""
    phone = await SMClient(port, "alice", "pw", resource).connect()
    await phone.send(enable(f"n-{resource}"))
    while (await phone.receive()).get("id") != f"en-n-{resource}":
        pass
    phone.drop()
    return phone


def chat(to: str, text: str) -> str:
    return f"<message to='{to}' type='chat'><body>{text}</body></message>"


def test_notifications_for_a_sleeping_phone_and_an_offline_one(make_server: MakeServer) -> None:
    srv = make_server(modules=MODULES)
    for u in ("alice", "bob", "carol", "app"):
        srv.register(u, "pw")
    srv.start()

    async def main() -> None:
        app = await Peer(srv.c2s, "app", "pw", resource="push").login()
        bob = await Peer(srv.c2s, "bob", "pw").login()
        info = await bob.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>",
                            to="bob@localhost")
        assert info.find(f".//{{http://jabber.org/protocol/disco#info}}feature[@var='{PUSH}']") \
            is not None

        # a phone with stream management enables push, then its connection dies
        phone = await SMClient(srv.c2s, "alice", "pw", "phone").connect()
        await phone.send(enable("n-alice"))
        while True:
            el = await phone.receive()
            if el.get("id") == "en-n-alice":
                assert el.get("type") == "result", ET.tostring(el)
                break
        phone.drop()
        await asyncio.sleep(0.3)
        await bob.send(chat("alice@localhost/phone", "wake up"))
        iq = await app.expect(is_push("n-alice"))
        assert iq.get("from") == "alice@localhost" and iq.get("type") == "set"
        fields = summary(iq)
        assert fields["FORM_TYPE"] == "urn:xmpp:push:summary"
        assert fields["message-count"] == "1"
        assert fields["last-message-sender"].startswith("bob@localhost")
        assert fields["last-message-body"] == "New message"   # not the text itself
        secret = iq.find(f".//{{{PUBSUB}}}publish-options//{{{DATA}}}field[@var='secret']")
        assert secret is not None and secret.findtext(f"{{{DATA}}}value") == "s3cr3t"
        await app.send(f"<iq type='result' id='{iq.get('id')}' to='alice@localhost'/>")
        # a chat state alone wakes nobody
        await bob.send("<message to='alice@localhost/phone' type='chat'>"
                       "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await app.nothing(is_push("n-alice"), 1.0)
        # the phone comes back and gets the message
        res = await phone.resume()
        assert res.tag.endswith("resumed")
        assert [m.findtext(C + "body") for m in await phone.messages(1)] == ["wake up"]
        await phone.close()

        # a session that is not resumed in time: its messages go to offline storage,
        # without a second notification
        flaky = SMClient(srv.c2s, "alice", "pw", "flaky")
        raw = flaky.raw = await flaky._authenticate()
        flaky.jid = await raw.bind("flaky")
        await raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true' max='1'/>")
        assert (await raw.recv()).get("max") == "1"
        flaky._start_reader()
        await flaky.send(enable("n-flaky").replace("id='en-n-flaky'", "id='e0'"))
        while (await flaky.receive()).get("id") != "e0":
            pass
        flaky.drop()
        await asyncio.sleep(0.3)
        await bob.send("<message to='alice@localhost/flaky' type='chat' id='m-flaky'>"
                       "<body>late</body></message>")
        iq = await app.expect(is_push("n-flaky"))
        await app.send(f"<iq type='result' id='{iq.get('id')}' to='alice@localhost'/>")
        await asyncio.sleep(2.5)   # past the resumption timeout: stored offline
        await app.nothing(is_push("n-flaky"), 1.0)

        # offline: every registration of the account; an app server's error of type
        # cancel removes the registration
        carol = await Peer(srv.c2s, "carol", "pw").login()
        await carol.send(enable("n-carol").replace("id='en-n-carol'", "id='e1'"))
        await carol.expect(lambda el: el.get("id") == "e1" and el.get("type") == "result")
        await carol.close()
        await bob.send(chat("carol@localhost", "are you there?"))
        iq = await app.expect(is_push("n-carol"))
        await app.send(f"<iq type='error' id='{iq.get('id')}' to='carol@localhost'>"
                       "<error type='cancel'><item-not-found "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        await asyncio.sleep(0.5)
        await bob.send(chat("carol@localhost", "hello?"))
        await app.nothing(is_push("n-carol"), 1.5)
        assert "registration removed" in srv.log

        # disable: no more notifications
        carol = await Peer(srv.c2s, "carol", "pw").login()
        await carol.send(enable("n-carol").replace("id='en-n-carol'", "id='e2'"))
        await carol.expect(lambda el: el.get("id") == "e2" and el.get("type") == "result")
        await carol.iq(f"<disable xmlns='{PUSH}' jid='{APP}' node='n-carol'/>", "set")
        await carol.close()
        await bob.send(chat("carol@localhost", "last try"))
        await app.nothing(is_push("n-carol"), 1.5)
        # errors
        carol = await Peer(srv.c2s, "carol", "pw").login()
        res = await carol.iq(f"<enable xmlns='{PUSH}' jid='{APP}'/>", "set", ok=False)
        assert res.get("type") == "error"
        await carol.close()
        await bob.close()
        await app.close()

    run(main())


def test_keepalive_keeps_push_sessions_longer_and_wakes_them(make_server: MakeServer) -> None:
    """mod_push_keepalive: with mod_stream_mgmt's resume_timeout at 1 s and the
    keepalive's at 3 s, a sleeping phone with push is still there after 1.8 s; one that
    was sent a notification is not (the 1 s applies from then on); and one nobody wrote
    to gets a wake-up notification (no message) at 3 s, then has 1 s more."""
    srv = make_server(modules={**MODULES, "mod_stream_mgmt": {"resume_timeout": 1},
                               "mod_push_keepalive": {"resume_timeout": 3}})
    for u in ("alice", "bob", "app"):
        srv.register(u, "pw")
    srv.start()

    async def main() -> None:
        app = await Peer(srv.c2s, "app", "pw", resource="push").login()
        bob = await Peer(srv.c2s, "bob", "pw").login()
        keep = await sleeping_phone(srv.c2s, "keep")
        wake = await sleeping_phone(srv.c2s, "wake")
        told = await sleeping_phone(srv.c2s, "told")
        await asyncio.sleep(0.3)
        await bob.send(chat("alice@localhost/told", "hi"))
        iq = await app.expect(is_push("n-told"))
        assert summary(iq)["message-count"] == "1"
        await app.send(f"<iq type='result' id='{iq.get('id')}' to='alice@localhost'/>")
        await asyncio.sleep(1.8)
        assert (await keep.resume()).tag.endswith("resumed")   # kept by the keepalive
        assert (await told.resume()).tag.endswith("failed")    # notified: 1 s from then
        iq = await app.expect(is_push("n-wake"), timeout=5)
        assert "message-count" not in summary(iq)              # a wake-up, no message
        await app.send(f"<iq type='result' id='{iq.get('id')}' to='alice@localhost'/>")
        assert (await wake.resume()).tag.endswith("resumed")   # it has 1 s more
        for c in (keep, wake):
            await c.close()
    run(main())
    # wake_on_start: at start every account with a registration is woken (here the app
    # server is not connected, so its refusal shows in the log)
    srv.stop()
    srv.config["modules"]["mod_push_keepalive"]["wake_on_start"] = True
    srv.write_config()
    srv.start()

    async def woken() -> None:
        for _ in range(100):
            if "refused a notification for alice@localhost" in srv.log:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("no wake-up at start")
    run(woken())


def test_notify_on_all_wakes_for_any_stanza_and_old_registrations_go(
        make_server: MakeServer) -> None:
    """ejabberd's default ``notify_on: all``: a chat state (no body) for a sleeping
    phone notifies too, with a summary that tells nothing of it; a message afterwards
    notifies with its count and sender. ``delete_old_push_sessions 0`` removes the
    registrations, and nothing notifies any more."""
    mods = {**MODULES, "mod_push": {"include_sender": True}}
    srv = make_server(modules=mods)
    for u in ("alice", "bob", "app"):
        srv.register(u, "pw")
    srv.start()

    async def main() -> None:
        app = await Peer(srv.c2s, "app", "pw", resource="push").login()
        bob = await Peer(srv.c2s, "bob", "pw").login()
        phone = await sleeping_phone(srv.c2s, "all")
        await asyncio.sleep(0.3)
        await bob.send("<message to='alice@localhost/all' type='chat'>"
                       "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        iq = await app.expect(is_push("n-all"))
        fields = summary(iq)
        assert fields["FORM_TYPE"] == "urn:xmpp:push:summary"
        assert "message-count" not in fields and "last-message-sender" not in fields
        await app.send(f"<iq type='result' id='{iq.get('id')}' to='alice@localhost'/>")
        await bob.send("<message to='alice@localhost/all' type='chat' id='m-all'>"
                       "<body>now a message</body></message>")
        iq = await app.expect(is_push("n-all"))
        assert summary(iq)["message-count"] == "1"
        await app.send(f"<iq type='result' id='{iq.get('id')}' to='alice@localhost'/>")
        await phone.resume()
        await phone.close()
        assert srv.ctl("delete_old_push_sessions", "x", check=False).returncode != 0
        srv.ctl("delete_old_push_sessions", "0")
        assert "1 push registrations deleted" in srv.log
        await bob.send(chat("alice@localhost", "anyone?"))   # stored offline
        await app.nothing(is_push("n-all"), 1.5)
        await bob.close()
        await app.close()
    run(main())
