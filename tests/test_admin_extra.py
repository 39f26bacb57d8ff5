"""ejabberdctl's mod_admin_extra commands that look into sessions, vCards and offline
storage: connected_users_info, user_sessions_info, get_presence, ban_account,
get_vcard/set_vcard (and the 2 forms), set_nickname, get_offline_count,
delete_old_messages; on one server, across cluster nodes, and over the HTTP API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from conftest import run
from helpers.peer import Peer
from helpers.procs import RedisServer, XmppdServer
from helpers.raw import RawClient

MakeServer = Callable[..., XmppdServer]
MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_vcard": {}, "mod_offline": {}}
VCARD = "{vcard-temp}"


def test_sessions_presence_vcards_offline_and_bans(make_server: MakeServer) -> None:
    srv = make_server(modules=MODULES)
    srv.register("alice", "secret")
    srv.register("bob", "secret")
    srv.start()

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        await alice.send("<presence><show>away</show><status>at lunch</status>"
                         "<priority>5</priority></presence>")
        await asyncio.sleep(0.3)
        assert srv.ctl("get_presence", "alice", "localhost").stdout.strip() == \
            "alice@localhost/r\taway\tat lunch"
        assert srv.ctl("get_presence", "bob", "localhost").stdout.strip() == \
            "bob@localhost\tunavailable"
        lines = srv.ctl("connected_users_info").stdout.strip().splitlines()
        assert len(lines) == 1
        jid, conn, ip, port, prio, _node, uptime, show, resource, text = lines[0].split("\t")
        assert (jid, conn, ip, prio, show, resource, text) == (
            "alice@localhost/r", "c2s_tls", "127.0.0.1", "5", "away", "r", "at lunch")
        assert int(port) > 0 and int(uptime) >= 0
        info = srv.ctl("user_sessions_info", "alice", "localhost").stdout.strip().split("\t")
        assert info[0] == "c2s_tls" and info[-2:] == ["r", "at lunch"]
        assert srv.ctl("user_sessions_info", "bob", "localhost").stdout.strip() == ""

        # vCard fields: what the client reads is what the command set
        srv.ctl("set_nickname", "alice", "localhost", "Ally")
        srv.ctl("set_vcard2", "alice", "localhost", "N", "FAMILY", "Liddell")
        assert srv.ctl("get_vcard", "alice", "localhost", "NICKNAME").stdout.strip() == "Ally"
        assert srv.ctl("get_vcard2", "alice", "localhost", "N", "FAMILY").stdout.strip() == \
            "Liddell"
        card = await alice.iq("<vCard xmlns='vcard-temp'/>")
        assert card.findtext(f"{VCARD}vCard/{VCARD}NICKNAME") == "Ally"
        assert card.findtext(f"{VCARD}vCard/{VCARD}N/{VCARD}FAMILY") == "Liddell"
        srv.ctl("set_vcard", "alice", "localhost", "NICKNAME", "Alice")  # changed in place
        card = await alice.iq("<vCard xmlns='vcard-temp'/>")
        assert [e.text for e in card.iter(f"{VCARD}NICKNAME")] == ["Alice"]
        assert srv.ctl("get_vcard", "bob", "localhost", "FN").stdout.strip() == ""
        res = srv.ctl("get_vcard", "nobody", "localhost", "FN", check=False)
        assert res.returncode != 0 and "does not exist" in res.stdout + res.stderr

        # offline storage: what waits for bob
        assert srv.ctl("get_offline_count", "bob", "localhost").stdout.strip() == "0"
        for i in range(2):
            await alice.send(f"<message to='bob@localhost' type='chat' id='o{i}'>"
                             f"<body>hi {i}</body></message>")
        for _ in range(50):
            if srv.ctl("get_offline_count", "bob", "localhost").stdout.strip() == "2":
                break
            await asyncio.sleep(0.1)
        assert srv.ctl("get_offline_count", "bob", "localhost").stdout.strip() == "2"
        # delete_old_messages: older than a day, none; older than 0 days, all
        srv.ctl("delete_old_messages", "1")
        assert srv.ctl("get_offline_count", "bob", "localhost").stdout.strip() == "2"
        assert srv.ctl("delete_old_messages", "x", check=False).returncode != 0
        srv.ctl("delete_old_messages", "0")
        assert srv.ctl("get_offline_count", "bob", "localhost").stdout.strip() == "0"

        # a ban ends the sessions and the password stops working
        srv.ctl("ban_account", "alice", "localhost", "spam")
        assert await alice.client.stream_error() == "not-authorized"
        c = RawClient(srv.c2s)
        await c.connect()
        await c.open()
        await c.starttls()
        assert (await c.auth_scram("alice", "secret")).tag.endswith("}failure")
        await c.close()
        srv.ctl("change_password", "alice", "localhost", "again")
        alice = await Peer(srv.c2s, "alice", "again").login()
        await alice.close()
    run(main())


def test_presence_and_sessions_of_every_cluster_node(make_server: MakeServer,
                                                     redis_server: RedisServer,
                                                     tmp_path: Path) -> None:
    from test_cluster import make_cluster

    n0, n1 = make_cluster(make_server, redis_server, tmp_path, n=2, users=("alice",),
                          modules=MODULES)

    async def main() -> None:
        low = await Peer(n0.c2s, "alice", "pw", resource="low").login()
        high = await Peer(n1.c2s, "alice", "pw", resource="high").login()
        await low.send("<presence><priority>1</priority></presence>")
        await high.send("<presence><show>dnd</show><priority>9</priority></presence>")
        await asyncio.sleep(0.5)
        assert n0.ctl("get_presence", "alice", "localhost").stdout.strip() == \
            "alice@localhost/high\tdnd"
        lines = sorted(n0.ctl("connected_users_info").stdout.strip().splitlines())
        assert [(ln.split("\t")[0], ln.split("\t")[5]) for ln in lines] == [
            ("alice@localhost/high", "node1@test"), ("alice@localhost/low", "node0@test")]
        await high.close()
        await low.close()
    run(main())


def test_shapes_over_the_http_api(make_server: MakeServer) -> None:
    from test_http_api import ADMIN, PERMISSIONS, api_server, call

    srv = api_server(make_server, PERMISSIONS, modules={"mod_vcard": {}, "mod_offline": {}})
    url = f"https://127.0.0.1:{srv.https}/api"

    async def main() -> None:
        bob = await Peer(srv.c2s, "bob", "bobpw").login()
        assert await call(url, "get_presence", {"user": "bob", "host": "localhost"}, ADMIN) == \
            (200, {"jid": "bob@localhost/r", "show": "available", "status": ""})
        status, rows = await call(url, "connected_users_info", {}, ADMIN)
        assert status == 200 and rows[0]["jid"] == "bob@localhost/r" and \
            rows[0]["connection"] == "c2s_tls"
        assert await call(url, "set_nickname", {"user": "bob", "host": "localhost",
                                                "nickname": "Bobby"}, ADMIN) == (200, 0)
        assert await call(url, "get_vcard", {"user": "bob", "host": "localhost",
                                             "name": "NICKNAME"}, ADMIN) == (200, "Bobby")
        assert await call(url, "get_offline_count", {"user": "bob", "host": "localhost"},
                          ADMIN) == (200, 0)
        await bob.close()
    run(main())
