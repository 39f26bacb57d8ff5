"""Contacts on two federated servers: subscriptions, presence and probes over s2s."""

from __future__ import annotations

from typing import Callable

from conftest import run
from helpers.federation import alice_and_bob, friends_across
from helpers.peer import Peer, is_presence
from helpers.procs import XmppdServer

MODULES = {"mod_ping": {}, "mod_disco": {}, "mod_roster": {}, "mod_last": {}}


def test_contacts_on_two_servers_see_each_other(make_server: Callable[..., XmppdServer]) -> None:
    a, b = alice_and_bob(make_server, MODULES)

    async def main() -> None:
        alice, bob = await friends_across(a, b)
        # Bob leaves and comes back: Alice sees both; his server probes hers for her
        await bob.close()
        await alice.expect(is_presence("bob@b.test/phone", "unavailable"), 10)
        bob = await Peer(b.c2s, "bob", resource="phone", host="b.test").login()
        await alice.expect(is_presence("bob@b.test/phone"), 10)
        await bob.expect(is_presence("alice@a.test/home"), 10)
        # last activity of a contact on the other server: online now
        res = await alice.iq("<query xmlns='jabber:iq:last'/>", to="bob@b.test")
        assert res.find("{jabber:iq:last}query").get("seconds") == "0"  # type: ignore[union-attr]
        await alice.close()
        await bob.expect(is_presence("alice@a.test/home", "unavailable"), 10)
        await bob.close()
    run(main(), timeout=120)
