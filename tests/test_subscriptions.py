"""Subscriptions and presence broadcast (RFC 6121 sections 3 and 4), raw sockets.

Scenarios read as conversations: "Romeo sends ..., Juliet receives ...".
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from conftest import run
from helpers.peer import Peer, befriend, is_presence, is_push, push_state
from helpers.procs import XmppdServer

MODULES = {"mod_disco": {}, "mod_roster": {}}
USERS = ["romeo", "juliet", "nurse", "tybalt", "paris", "peter", "sampson", "gregory",
         "abram", "balthasar", "lady", "prince", "mercutio", "benvolio", "friar", "john",
         "rosaline", "anne", "chorus", "watch"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("subs"), modules=MODULES)
    pairs = tmp_path_factory.mktemp("subs-users") / "users.txt"
    pairs.write_text("".join(f"{u} secret\n" for u in USERS))
    srv.ctl("register_bulk", str(pairs), "localhost")
    srv.start()
    yield srv
    srv.stop()


def test_mutual_subscription_and_coming_and_going(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await Peer(server.c2s, "romeo", resource="balcony").login()
        juliet = await Peer(server.c2s, "juliet", resource="garden").login()
        # Romeo asks; his roster shows the pending request
        await romeo.send("<presence type='subscribe' to='juliet@localhost'>"
                         "<status>It is my lady</status></presence>")
        assert push_state(await romeo.expect(is_push("juliet@localhost"))) == ("none", "subscribe")
        req = await juliet.expect(is_presence("romeo@localhost", "subscribe"))
        assert req.get("from") == "romeo@localhost"   # stamped with the bare JID
        assert req.findtext("{jabber:client}status") == "It is my lady"
        await juliet.nothing(is_push("romeo@localhost"), 0.3)   # not in her roster yet
        # Juliet approves: she gets a 'from' item, Romeo gets 'to' and her presence
        await juliet.send("<presence type='subscribed' to='romeo@localhost'/>")
        assert push_state(await juliet.expect(is_push("romeo@localhost"))) == ("from", None)
        assert push_state(await romeo.expect(is_push("juliet@localhost"))) == ("to", None)
        await romeo.expect(is_presence("juliet@localhost", "subscribed"))
        await romeo.expect(is_presence("juliet@localhost/garden"))
        # Romeo's presence does not go to Juliet yet (she is not subscribed)
        await romeo.send("<presence><show>chat</show></presence>")
        await juliet.nothing(is_presence("romeo@localhost/balcony"), 0.5)
        # ... until she asks and he approves
        await juliet.send("<presence type='subscribe' to='romeo@localhost'/>")
        await romeo.expect(is_presence("juliet@localhost", "subscribe"))
        await romeo.send("<presence type='subscribed' to='juliet@localhost'/>")
        assert push_state(await romeo.expect(is_push("juliet@localhost"))) == ("both", None)
        assert push_state(await juliet.expect(is_push("romeo@localhost"))) == ("from", "subscribe")
        assert push_state(await juliet.expect(is_push("romeo@localhost"))) == ("both", None)
        pres = await juliet.expect(is_presence("romeo@localhost/balcony"))
        assert pres.findtext("{jabber:client}show") == "chat"
        # Juliet changes her status: Romeo sees it
        await juliet.send("<presence><show>away</show><status>at mass</status></presence>")
        pres = await romeo.expect(is_presence("juliet@localhost/garden"))
        assert pres.findtext("{jabber:client}status") == "at mass"
        # Juliet leaves (stream closed) and comes back on another device
        await juliet.close()
        await romeo.expect(is_presence("juliet@localhost/garden", "unavailable"))
        juliet2 = await Peer(server.c2s, "juliet", resource="chapel").login()
        await romeo.expect(is_presence("juliet@localhost/chapel"))
        # her initial presence made the server answer her probe with Romeo's presence
        pres = await juliet2.expect(is_presence("romeo@localhost/balcony"))
        assert pres.findtext("{jabber:client}show") == "chat"
        # an explicit unavailable with a status
        await juliet2.send("<presence type='unavailable'><status>farewell</status></presence>")
        pres = await romeo.expect(is_presence("juliet@localhost/chapel", "unavailable"))
        assert pres.findtext("{jabber:client}status") == "farewell"
        await romeo.close()
        await juliet2.close()
    run(main())


def test_outsider_learns_nothing(server: XmppdServer) -> None:
    async def main() -> None:
        paris = await Peer(server.c2s, "paris").login()
        nurse = await Peer(server.c2s, "nurse").login()
        await befriend(paris, nurse)
        tybalt = await Peer(server.c2s, "tybalt").login()
        # Tybalt has Paris in his roster, but no subscription
        await tybalt.iq("<query xmlns='jabber:iq:roster'><item jid='paris@localhost'/></query>",
                        "set")
        await paris.send("<presence><show>dnd</show></presence>")
        await nurse.expect(is_presence(paris.jid))
        # a probe from Tybalt goes unanswered
        await tybalt.send("<presence type='probe' to='paris@localhost'/>")
        await paris.send("<presence type='unavailable'/>")
        await nurse.expect(is_presence(paris.jid, "unavailable"))
        await tybalt.nothing(is_presence("paris@localhost"), 1.0)
        # the Nurse's probe is answered (from memory): Paris is now unavailable, nothing to send;
        # Paris comes back and the probe is answered with his presence
        await paris.send("<presence/>")
        await nurse.expect(is_presence(paris.jid))
        await nurse.send("<presence type='probe' to='paris@localhost'/>")
        await nurse.expect(is_presence(paris.jid))
        await tybalt.nothing(is_presence("paris@localhost"), 0.5)
        for p in (paris, nurse, tybalt):
            await p.close()
    run(main())


def test_request_to_offline_user_arrives_at_next_login(server: XmppdServer) -> None:
    async def main() -> None:
        mercutio = await Peer(server.c2s, "mercutio").login()
        await mercutio.send("<presence type='subscribe' to='benvolio@localhost'>"
                            "<status>a word with you</status>"
                            "<nick xmlns='http://jabber.org/protocol/nick'>Merc</nick></presence>")
        await mercutio.expect(is_push("benvolio@localhost"))
        # Benvolio logs in without presence: no request yet (it goes to available resources)
        ben = await Peer(server.c2s, "benvolio").login(presence=False)
        await ben.nothing(is_presence("mercutio@localhost", "subscribe"), 0.5)
        assert await ben.roster() == {}     # pending requests are not roster items
        await ben.send("<presence/>")
        req = await ben.expect(is_presence("mercutio@localhost", "subscribe"))
        assert req.findtext("{jabber:client}status") == "a word with you"
        assert req.findtext("{http://jabber.org/protocol/nick}nick") == "Merc"
        await ben.close()
        # not answered: delivered again at the next login
        ben = await Peer(server.c2s, "benvolio", resource="again").login()
        await ben.expect(is_presence("mercutio@localhost", "subscribe"))
        await ben.close()
        # Mercutio goes offline; Benvolio approves while he is away
        await mercutio.close()
        ben = await Peer(server.c2s, "benvolio", resource="third").login()
        await ben.expect(is_presence("mercutio@localhost", "subscribe"))
        await ben.send("<presence type='subscribed' to='mercutio@localhost'/>")
        assert push_state(await ben.expect(is_push("mercutio@localhost"))) == ("from", None)
        await ben.close()
        # Mercutio's next login: the roster says 'to', the answer is delivered, and
        # the probe is answered once Benvolio is online
        ben = await Peer(server.c2s, "benvolio", resource="fourth").login()
        await ben.nothing(is_presence("mercutio@localhost", "subscribe"), 0.5)
        mercutio = await Peer(server.c2s, "mercutio").login(roster=False)
        roster = await mercutio.roster()
        assert roster["benvolio@localhost"].get("subscription") == "to"
        assert roster["benvolio@localhost"].get("ask") is None
        await mercutio.expect(is_presence("benvolio@localhost", "subscribed"))
        await mercutio.expect(is_presence("benvolio@localhost/fourth"))
        await mercutio.close()
        # delivered once only
        mercutio = await Peer(server.c2s, "mercutio", resource="later").login()
        await mercutio.nothing(is_presence("benvolio@localhost", "subscribed"), 0.5)
        await mercutio.close()
        await ben.close()
    run(main())


def test_preapproval(server: XmppdServer) -> None:
    async def main() -> None:
        friar = await Peer(server.c2s, "friar").login()
        john = await Peer(server.c2s, "john").login()
        await friar.send("<presence type='subscribed' to='john@localhost'/>")
        push = await friar.expect(is_push("john@localhost"))
        item = push.find("{jabber:iq:roster}query/{jabber:iq:roster}item")
        assert item is not None and item.get("approved") == "true"
        await john.nothing(is_presence("friar@localhost", "subscribed"), 0.3)
        # John asks: the server approves for the Friar, who never sees the request
        await john.send("<presence type='subscribe' to='friar@localhost'/>")
        await john.expect(is_presence("friar@localhost", "subscribed"))
        assert push_state(await john.expect(is_push("friar@localhost"))) == ("none", "subscribe")
        assert push_state(await john.expect(is_push("friar@localhost"))) == ("to", None)
        await john.expect(is_presence(friar.jid))
        assert push_state(await friar.expect(is_push("john@localhost"))) == ("from", None)
        await friar.nothing(is_presence("john@localhost", "subscribe"), 0.3)
        await friar.close()
        await john.close()
    run(main())


def test_unsubscribe_cancel_and_remove(server: XmppdServer) -> None:
    async def main() -> None:
        sampson = await Peer(server.c2s, "sampson").login()
        gregory = await Peer(server.c2s, "gregory").login()
        await befriend(sampson, gregory)
        # Sampson stops receiving Gregory's presence
        await sampson.send("<presence type='unsubscribe' to='gregory@localhost'/>")
        assert push_state(await sampson.expect(is_push("gregory@localhost"))) == ("from", None)
        assert push_state(await gregory.expect(is_push("sampson@localhost"))) == ("to", None)
        await gregory.expect(is_presence("sampson@localhost", "unsubscribe"))
        # ... Gregory's server tells Sampson he is gone
        await sampson.expect(is_presence(gregory.jid, "unavailable"))
        await gregory.send("<presence><show>xa</show></presence>")
        await sampson.nothing(is_presence(gregory.jid), 0.5)
        # Gregory cancels Sampson's... wait: Gregory removes Sampson altogether
        await gregory.iq("<query xmlns='jabber:iq:roster'><item jid='sampson@localhost' "
                         "subscription='remove'/></query>", "set")
        assert push_state(await gregory.expect(is_push("sampson@localhost"))) == ("remove", None)
        assert push_state(await sampson.expect(is_push("gregory@localhost"))) == ("none", None)
        await sampson.expect(is_presence("gregory@localhost", "unsubscribe"))
        # Sampson's presence no longer reaches Gregory
        await sampson.send("<presence><show>away</show></presence>")
        await gregory.nothing(is_presence(sampson.jid), 0.5)
        await sampson.close()
        await gregory.close()
    run(main())


def test_denied_request_and_cancelled_subscription(server: XmppdServer) -> None:
    async def main() -> None:
        abram = await Peer(server.c2s, "abram").login()
        bal = await Peer(server.c2s, "balthasar").login()
        await abram.send("<presence type='subscribe' to='balthasar@localhost'/>")
        await bal.expect(is_presence("abram@localhost", "subscribe"))
        await bal.send("<presence type='unsubscribed' to='abram@localhost'/>")
        assert push_state(await abram.expect(is_push("balthasar@localhost"))) == \
            ("none", "subscribe")
        assert push_state(await abram.expect(is_push("balthasar@localhost"))) == ("none", None)
        await abram.expect(is_presence("balthasar@localhost", "unsubscribed"))
        await bal.close()
        # no longer pending: not delivered at Balthasar's next login
        bal = await Peer(server.c2s, "balthasar").login()
        await bal.nothing(is_presence("abram@localhost", "subscribe"), 0.5)
        # now a real subscription, cancelled by Balthasar later
        await befriend(abram, bal)
        await bal.send("<presence type='unsubscribed' to='abram@localhost'/>")
        assert push_state(await abram.expect(is_push("balthasar@localhost"))) == ("from", None)
        await abram.expect(is_presence(bal.jid, "unavailable"))
        await bal.send("<presence><show>away</show></presence>")
        await abram.nothing(is_presence(bal.jid), 0.5)
        await abram.close()
        await bal.close()
    run(main())


def test_unavailable_when_session_ends_any_way(server: XmppdServer) -> None:
    async def main() -> None:
        lady = await Peer(server.c2s, "lady").login()
        prince = await Peer(server.c2s, "prince", resource="a").login()
        await befriend(lady, prince)
        # dropped TCP connection
        prince.abort()
        await lady.expect(is_presence("prince@localhost/a", "unavailable"), timeout=10)
        # kicked by the administrator
        prince = await Peer(server.c2s, "prince", resource="b").login()
        await lady.expect(is_presence("prince@localhost/b"))
        await asyncio.get_running_loop().run_in_executor(
            None, server.ctl, "kick_session", "prince", "localhost", "b", "bye")
        await lady.expect(is_presence("prince@localhost/b", "unavailable"))
        # replaced by a new connection with the same resource
        prince = await Peer(server.c2s, "prince", resource="c").login()
        await lady.expect(is_presence("prince@localhost/c"))
        prince2 = await Peer(server.c2s, "prince", resource="c").login()
        await lady.expect(is_presence("prince@localhost/c", "unavailable"))
        await lady.expect(is_presence("prince@localhost/c"))
        await prince2.close()
        await lady.expect(is_presence("prince@localhost/c", "unavailable"))
        await lady.close()
    run(main())


def test_own_resources_see_each_other(server: XmppdServer) -> None:
    async def main() -> None:
        a = await Peer(server.c2s, "rosaline", resource="one").login()
        b = await Peer(server.c2s, "rosaline", resource="two").login()
        await a.expect(is_presence("rosaline@localhost/two"))
        await a.send("<presence><show>away</show></presence>")
        await b.expect(is_presence("rosaline@localhost/one"))
        await b.close()
        await a.expect(is_presence("rosaline@localhost/two", "unavailable"))
        await a.close()
    run(main())


def test_directed_presence_is_cleaned_up(server: XmppdServer) -> None:
    async def main() -> None:
        anne = await Peer(server.c2s, "anne").login()
        chorus = await Peer(server.c2s, "chorus").login()
        watch = await Peer(server.c2s, "watch").login()
        # directed presence to a non-contact is delivered, and remembered
        await anne.send("<presence to='chorus@localhost'><status>psst</status></presence>")
        pres = await chorus.expect(is_presence(anne.jid))
        assert pres.findtext("{jabber:client}status") == "psst"
        await anne.send(f"<presence to='{watch.jid}'/>")
        await watch.expect(is_presence(anne.jid))
        # directed unavailable ends it for the watch
        await anne.send(f"<presence type='unavailable' to='{watch.jid}'/>")
        await watch.expect(is_presence(anne.jid, "unavailable"))
        # a broadcast update does not go to directed-presence recipients
        await anne.send("<presence><show>away</show></presence>")
        await chorus.nothing(is_presence(anne.jid), 0.5)
        # the session ends: the chorus learns, the watch (already told) does not
        anne.abort()
        await chorus.expect(is_presence(anne.jid, "unavailable"), timeout=10)
        await watch.nothing(is_presence(anne.jid, "unavailable"), 0.5)
        await chorus.close()
        await watch.close()
    run(main())


def test_subscription_to_yourself_is_ignored(server: XmppdServer) -> None:
    async def main() -> None:
        p = await Peer(server.c2s, "peter").login()
        await p.send("<presence type='subscribe' to='peter@localhost'/>")
        await p.nothing(lambda el: True, 0.5)
        assert await p.roster() == {}
        await p.close()
    run(main())


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_pending_request_survives_restart(make_server, db: str) -> None:  # type: ignore[no-untyped-def]
    srv: XmppdServer = make_server(db=db, modules=MODULES)
    for u in ("romeo", "juliet"):
        srv.register(u, "secret")
    srv.start()

    async def ask() -> None:
        romeo = await Peer(srv.c2s, "romeo").login()
        await romeo.send("<presence type='subscribe' to='juliet@localhost'/>")
        await romeo.expect(is_push("juliet@localhost"))
        await romeo.close()
    run(ask())
    srv.stop()
    srv.start()

    async def answer() -> None:
        juliet = await Peer(srv.c2s, "juliet").login()
        await juliet.expect(is_presence("romeo@localhost", "subscribe"))
        await juliet.send("<presence type='subscribed' to='romeo@localhost'/>")
        await juliet.expect(is_push("romeo@localhost"))
        romeo = await Peer(srv.c2s, "romeo").login(roster=False)
        roster = await romeo.roster()
        assert roster["juliet@localhost"].get("subscription") == "to"
        await romeo.expect(is_presence(juliet.jid))
        await romeo.close()
        await juliet.close()
    run(answer())


def test_unavailable_when_a_quiet_client_times_out(make_server) -> None:  # type: ignore[no-untyped-def]
    srv: XmppdServer = make_server(modules=MODULES, listen_extra={"idle_timeout": 2})
    for u in ("romeo", "juliet"):
        srv.register(u, "secret")
    srv.start()

    async def main() -> None:
        romeo = await Peer(srv.c2s, "romeo").login()
        juliet = await Peer(srv.c2s, "juliet").login()
        await befriend(romeo, juliet)

        async def keepalive() -> None:
            while True:
                await juliet.send(" ")
                await asyncio.sleep(0.5)
        task = asyncio.ensure_future(keepalive())
        try:
            # Romeo says nothing more: the server closes his stream and tells Juliet
            await juliet.expect(is_presence(romeo.jid, "unavailable"), timeout=15)
        finally:
            task.cancel()
        await juliet.close()
    run(main())
