"""mod_shared_roster: groups made with ejabberdctl's srg_* commands put their members
in each other's rosters (subscription both, the group's label), presence flows without
a subscription handshake, and changes reach online users at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.peer import ROSTER, Peer, error_condition, is_presence, is_push
from helpers.procs import RedisServer, XmppdServer

MakeServer = Callable[..., XmppdServer]
MODULES = {"mod_disco": {}, "mod_roster": {"versioning": True}, "mod_shared_roster": {}}


def _server(make_server: MakeServer, **kw: Any) -> XmppdServer:
    srv = make_server(modules=MODULES, **kw)
    for u in ("alice", "bob", "carol", "dave"):
        srv.register(u, "secret")
    return srv


def _item(roster: dict[str, Any], jid: str) -> tuple[str, list[str]]:
    it = roster[jid]
    return it.get("subscription"), sorted(g.text or "" for g in it.iter(f"{ROSTER}group"))


def test_groups_fill_rosters_and_presence_flows(make_server: MakeServer) -> None:
    srv = _server(make_server).start()
    srv.ctl("srg_create", "staff", "localhost", "Staff", "Our staff", "staff")
    srv.ctl("srg_user_add", "alice", "localhost", "staff", "localhost")
    srv.ctl("srg_user_add", "bob", "localhost", "staff", "localhost")
    assert srv.ctl("srg_list", "localhost").stdout.split() == ["staff"]
    assert srv.ctl("srg_get_members", "staff", "localhost").stdout.split() == [
        "alice@localhost", "bob@localhost"]
    assert "displayed_groups\tstaff" in srv.ctl("srg_get_info", "staff", "localhost").stdout

    async def main() -> None:
        # an off-the-shelf client sees the group in its roster, and its contact's presence
        alice = await Slix("alice@localhost", "secret").login(srv.c2s)
        await alice.get_roster()
        assert alice.client_roster["bob@localhost"]["subscription"] == "both"
        assert alice.client_roster["bob@localhost"]["groups"] == ["Staff"]
        seen = asyncio.Event()
        alice.add_event_handler("got_online", lambda p: seen.set()
                                if p["from"].bare == "bob@localhost" else None)
        bob = await Peer(srv.c2s, "bob").login()  # (sends presence, fetches the roster)
        await asyncio.wait_for(seen.wait(), 10)
        await bob.expect(is_presence("alice@localhost"), timeout=10)  # the probe's answer
        # a subscription request from a group contact is approved by the group
        await bob.send("<presence to='alice@localhost' type='subscribe'/>")
        await bob.expect(is_presence("alice@localhost", "subscribed"), timeout=10)
        # the contact cannot be removed while the group shows it; a name of one's own is kept
        res = await bob.iq("<query xmlns='jabber:iq:roster'><item jid='alice@localhost' "
                           "subscription='remove'/></query>", "set", ok=False)
        assert error_condition(res) == "not-allowed"
        await bob.iq("<query xmlns='jabber:iq:roster'><item jid='alice@localhost' name='Al'>"
                     "<group>Friends</group></item></query>", "set")
        push = await bob.expect(is_push("alice@localhost"), timeout=10)
        item = push.find(f"{ROSTER}query/{ROSTER}item")
        assert item is not None and item.get("name") == "Al"
        assert sorted(g.text or "" for g in item.iter(f"{ROSTER}group")) == ["Friends", "Staff"]
        assert item.get("subscription") == "both"
        # carol joins while they are online: pushed to both, and presence follows
        carol = await Peer(srv.c2s, "carol").login()
        srv.ctl("srg_user_add", "carol", "localhost", "staff", "localhost")
        push = await bob.expect(is_push("carol@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "both"
        await bob.expect(is_presence("carol@localhost"), timeout=10)
        await carol.expect(is_presence("bob@localhost"), timeout=10)
        assert _item(await carol.roster(), "alice@localhost") == ("both", ["Staff"])
        # dave is in no group: nobody's roster has him
        dave = await Peer(srv.c2s, "dave").login()
        assert await dave.roster() == {}
        # carol leaves: gone from the rosters, and her presence goes unavailable for bob
        srv.ctl("srg_user_del", "carol", "localhost", "staff", "localhost")
        push = await bob.expect(is_push("carol@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "remove"
        await bob.expect(is_presence("carol@localhost", "unavailable"), timeout=10)
        assert "carol@localhost" not in await bob.roster()
        for p in (bob, carol, dave):
            await p.close()
        await alice.logout()
    run(main())

    # the groups are stored: after a restart they are there again, and @all@ works
    srv.stop()
    srv.start()
    srv.ctl("srg_create", "everyone", "localhost", "Everyone", "", "everyone")
    srv.ctl("srg_user_add", "@all@", "localhost", "everyone", "localhost")
    assert "all_users\ttrue" in srv.ctl("srg_get_info", "everyone", "localhost").stdout

    async def after() -> None:
        dave = await Peer(srv.c2s, "dave").login()
        roster = await dave.roster()
        assert sorted(roster) == ["alice@localhost", "bob@localhost", "carol@localhost"]
        assert _item(roster, "alice@localhost") == ("both", ["Everyone"])
        bob = await Peer(srv.c2s, "bob").login()
        # bob's own name for alice survived; both groups show
        assert _item(await bob.roster(), "alice@localhost") == ("both",
                                                                ["Everyone", "Friends", "Staff"])
        srv.ctl("srg_delete", "everyone", "localhost")
        push = await dave.expect(is_push("bob@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "remove"
        assert await dave.roster() == {}
        await dave.close()
        await bob.close()
    run(after())


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_roster_versions_follow_the_groups(make_server: MakeServer, db: str) -> None:
    """A client's cached roster stays current through versioning, unless the groups
    changed while it was away: then it gets the whole roster (the groups stored in
    SQLite and in PostgreSQL)."""
    srv = _server(make_server, db=db).start()
    srv.ctl("srg_create", "staff", "localhost", "Staff", "", "staff")
    for u in ("alice", "bob"):
        srv.ctl("srg_user_add", u, "localhost", "staff", "localhost")

    async def get(ver: str) -> Any:
        bob = await Peer(srv.c2s, "bob").login(roster=False)
        res = await bob.iq(f"<query xmlns='jabber:iq:roster' ver='{ver}'/>")
        await bob.close()
        return res.find(f"{ROSTER}query")

    async def main() -> None:
        q = await get("")
        ver = q.get("ver")
        assert ver and "." in ver and [i.get("jid") for i in q] == ["alice@localhost"]
        assert await get(ver) is None  # current: an empty result
        srv.ctl("srg_user_add", "carol", "localhost", "staff", "localhost")
        q = await get(ver)  # the groups changed meanwhile: the whole roster
        assert q is not None and q.get("ver") != ver
        assert sorted(i.get("jid") for i in q) == ["alice@localhost", "carol@localhost"]
        srv.ctl("srg_delete", "staff", "localhost")
        q = await get(q.get("ver"))
        assert q is not None and list(q) == [] and q.get("ver") == "0"
    run(main())


def test_command_errors(make_server: MakeServer) -> None:
    srv = _server(make_server).start()
    res = srv.ctl("srg_user_add", "alice", "localhost", "nosuch", "localhost", check=False)
    assert res.returncode != 0 and "no shared roster group" in res.stdout + res.stderr
    res = srv.ctl("srg_list", "example.org", check=False)
    assert res.returncode != 0
    srv.ctl("srg_create", "g", "localhost", "G", "", "g")
    res = srv.ctl("srg_user_del", "alice", "localhost", "g", "localhost", check=False)
    assert res.returncode != 0 and "not in g" in res.stdout + res.stderr


def test_the_commands_over_the_http_api(make_server: MakeServer) -> None:
    """ejabberd's argument names and answers: the displayed groups as a list, the
    members as a list, the properties as key/value objects, 0 for success."""
    from test_http_api import ADMIN, PERMISSIONS, api_server, call

    srv = api_server(make_server, PERMISSIONS, modules={"mod_shared_roster": {}})
    url = f"https://127.0.0.1:{srv.https}/api"

    async def main() -> None:
        assert await call(url, "srg_create", {"group": "ops", "host": "localhost",
                                              "label": "Ops", "description": "On call",
                                              "display": ["ops", "admins"]}, ADMIN) == (200, 0)
        assert await call(url, "srg_user_add", {"user": "bob", "host": "localhost",
                                                "group": "ops", "grouphost": "localhost"},
                          ADMIN) == (200, 0)
        assert await call(url, "srg_list", {"host": "localhost"}, ADMIN) == (200, ["ops"])
        assert await call(url, "srg_get_members", {"group": "ops", "host": "localhost"},
                          ADMIN) == (200, ["bob@localhost"])
        status, info = await call(url, "srg_get_info", {"group": "ops", "host": "localhost"},
                                  ADMIN)
        assert status == 200 and {"key": "displayed_groups", "value": "ops,admins"} in info
        status, err = await call(url, "srg_delete", {"group": "nosuch", "host": "localhost"},
                                 ADMIN)
        assert status == 404 and err["status"] == "error"
    run(main())


def test_changes_reach_users_on_every_cluster_node(make_server: MakeServer,
                                                   redis_server: RedisServer,
                                                   tmp_path: Path) -> None:
    """The command runs on one node; users logged in on the other get the pushes."""
    from test_cluster import make_cluster

    n0, n1 = make_cluster(make_server, redis_server, tmp_path, n=2,
                          users=("alice", "bob"), modules=MODULES)

    async def main() -> None:
        alice = await Peer(n1.c2s, "alice", "pw").login()
        bob = await Peer(n0.c2s, "bob", "pw").login()
        n0.ctl("srg_create", "team", "localhost", "Team", "", "team")
        n0.ctl("srg_user_add", "alice", "localhost", "team", "localhost")
        n0.ctl("srg_user_add", "bob", "localhost", "team", "localhost")
        await alice.expect(is_push("bob@localhost"), timeout=10)
        await alice.expect(is_presence("bob@localhost"), timeout=10)
        await bob.expect(is_presence("alice@localhost"), timeout=10)
        assert _item(await alice.roster(), "bob@localhost") == ("both", ["Team"])
        await bob.close()
        # @online@: bob logging in on node 0 reaches alice's roster on node 1, and his
        # logout takes him out again
        n0.ctl("srg_delete", "team", "localhost")
        await alice.expect(is_push("bob@localhost"), timeout=10)
        n0.ctl("srg_create", "here", "localhost", "Online", "", "here")
        n0.ctl("srg_user_add", "@online@", "localhost", "here", "localhost")
        bob = await Peer(n0.c2s, "bob", "pw").login()
        push = await alice.expect(is_push("bob@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "both"
        await bob.close()
        push = await alice.expect(is_push("bob@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "remove"
        await alice.close()
    run(main())


def test_online_users_group(make_server: MakeServer) -> None:
    """``@online@``: every account with a session; logins and logouts change the
    rosters of the online members at once."""
    srv = _server(make_server).start()
    srv.ctl("srg_create", "online", "localhost", "Online now", "", "online")
    srv.ctl("srg_user_add", "@online@", "localhost", "online", "localhost")
    info = srv.ctl("srg_get_info", "online", "localhost").stdout
    assert "online_users\ttrue" in info and "all_users\tfalse" in info

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        assert await alice.roster() == {}                  # nobody else is online
        bob = await Peer(srv.c2s, "bob").login()
        push = await alice.expect(is_push("bob@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "both"
        await alice.expect(is_presence("bob@localhost"), timeout=10)
        assert _item(await bob.roster(), "alice@localhost") == ("both", ["Online now"])
        assert sorted(srv.ctl("srg_get_members", "online", "localhost").stdout.split()) == [
            "alice@localhost", "bob@localhost"]
        await bob.close()
        push = await alice.expect(is_push("bob@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "remove"
        assert await alice.roster() == {}
        await alice.close()
    run(main())
