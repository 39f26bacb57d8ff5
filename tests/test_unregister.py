"""Deleting an account deletes what the server kept for it (as ejabberd's remove_user).

Romeo and Juliet are friends; Juliet has a message waiting offline and a block
list; the admin deletes her account. Romeo's roster learns the subscriptions
ended, and a new account with her name starts from nothing.
"""

from __future__ import annotations

from conftest import run
from helpers.peer import Peer, befriend, is_presence, is_push, push_state
from helpers.procs import XmppdServer

MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_blocking": {}, "mod_last": {},
           "mod_offline": {}}


def test_unregister_removes_roster_blocks_offline_and_last(make_server) -> None:  # type: ignore[no-untyped-def]
    srv: XmppdServer = make_server(modules=MODULES)
    for u in ("romeo", "juliet"):
        srv.register(u, "secret")
    srv.start()

    async def main() -> None:
        romeo = await Peer(srv.c2s, "romeo", resource="balcony").login()
        juliet = await Peer(srv.c2s, "juliet", resource="garden").login()
        await befriend(romeo, juliet)
        await juliet.iq("<block xmlns='urn:xmpp:blocking'><item jid='tybalt@localhost'/></block>",
                        type="set")
        await juliet.close()
        await romeo.expect(is_presence("juliet@localhost/garden", "unavailable"))
        await romeo.send("<message to='juliet@localhost' type='chat' id='m1'>"
                         "<body>are you there?</body></message>")
        # her last activity is known to Romeo
        res = await romeo.iq("<query xmlns='jabber:iq:last'/>", to="juliet@localhost")
        assert res.find("{jabber:iq:last}query") is not None
        romeo.inbox.clear()

        out = srv.ctl("unregister", "juliet", "localhost")
        assert out.returncode == 0, out.stderr
        # Romeo's roster: the subscriptions both ways ended
        while push_state(await romeo.expect(is_push("juliet@localhost"))) != ("none", None):
            pass
        await romeo.close()

        srv.register("juliet", "another")
        juliet = await Peer(srv.c2s, "juliet", "another", resource="new").login()
        assert await juliet.roster() == {}
        res = await juliet.iq("<blocklist xmlns='urn:xmpp:blocking'/>")
        assert list(res.iter("{urn:xmpp:blocking}item")) == []
        await juliet.nothing(lambda el: el.get("id") == "m1", 1.0)
        await juliet.close()
    run(main())
