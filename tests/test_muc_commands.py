"""Room administration from ``xmppd ctl`` and the HTTP API (ejabberd's mod_muc_admin
commands): create and destroy rooms, options and affiliations, with raw XMPP clients in
the rooms seeing what XEP-0045 says they see, and the rooms surviving a restart."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from conftest import run
from helpers.federation import ctl_out
from helpers.muc import MUC_MODULES, SERVICE, USER, codes, raw_join, raw_until_subject
from helpers.procs import XmppdServer
from helpers.raw import RawClient

MakeServer = Callable[..., XmppdServer]
ROOM = f"tea@{SERVICE}"


def _server(make_server: MakeServer) -> XmppdServer:
    srv = make_server(modules={**MUC_MODULES, "mod_http_api": {}},
                      config={"api_permissions": {"loopback": {
                          "who": {"ip": "127.0.0.1/8"}, "what": "*"}}})
    srv.config["listen"][3]["request_handlers"] = {"/api": "mod_http_api"}
    srv.write_config()
    for u in ("alice", "bob"):
        srv.register(u, "pw")
    return srv.start()


def item(el: ET.Element) -> dict[str, str]:
    found = el.find(f"{{{USER}}}x/{{{USER}}}item")
    assert found is not None, ET.tostring(el)
    return dict(found.attrib)


def options(srv: XmppdServer, room: str = "tea") -> dict[str, str]:
    out = ctl_out(srv, "get_room_options", room, SERVICE)
    return dict(line.split("\t", 1) for line in out.splitlines())


async def client(srv: XmppdServer, user: str) -> RawClient:
    c = RawClient(srv.c2s_tls, tls=True)
    await c.connect()
    await c.login(user, "pw", resource="r")
    return c


def test_rooms_made_and_changed_by_commands(make_server: MakeServer) -> None:
    srv = _server(make_server)
    assert ctl_out(srv, "create_room", "tea", SERVICE, "localhost") == ""
    res = srv.ctl("create_room", "tea", SERVICE, "localhost", check=False)
    assert res.returncode != 0 and "exists" in res.stderr
    assert ctl_out(srv, "muc_online_rooms", "global") == ROOM
    opts = options(srv)
    assert opts["persistent"] == "true" and opts["members_only"] == "false"

    async def main() -> None:
        alice = await client(srv, "alice")
        bob = await client(srv, "bob")
        # the room is open at once (not locked as a room a join creates)
        me = await raw_join(alice, ROOM, "Alice")
        assert item(me)["affiliation"] == "none" and 201 not in codes(me)
        await raw_until_subject(alice)
        await raw_join(bob, ROOM, "Bob")
        await raw_until_subject(bob)
        await alice.recv_until(lambda e: e.get("from") == f"{ROOM}/Bob")

        # the admin makes alice owner: everybody sees her new affiliation and role
        assert ctl_out(srv, "set_room_affiliation", "tea", SERVICE, "alice@localhost",
                       "owner") == ""
        p = await bob.recv_until(lambda e: e.get("from") == f"{ROOM}/Alice")
        assert (item(p)["affiliation"], item(p)["role"]) == ("owner", "moderator")
        assert ctl_out(srv, "get_room_affiliations", "tea", SERVICE) == \
            "alice\tlocalhost\towner"
        res = srv.ctl("set_room_affiliation", "tea", SERVICE, "bob@localhost", "boss",
                      check=False)
        assert res.returncode != 0 and "AFFILIATION" in res.stderr

        # members only: bob (no affiliation) has to go, with status 322
        assert ctl_out(srv, "change_room_option", "tea", SERVICE, "members_only", "true") == ""
        gone = await bob.recv_until(lambda e: e.get("type") == "unavailable" and
                                    e.get("from") == f"{ROOM}/Bob")
        assert 322 in codes(gone)
        assert ctl_out(srv, "change_room_option", "tea", SERVICE, "title", "Tea 2") == ""
        note = await alice.recv_until(lambda e: local(e) == "message" and 104 in codes(e))
        assert note.get("from") == ROOM
        assert options(srv)["title"] == "Tea 2"
        res = srv.ctl("change_room_option", "tea", SERVICE, "members_only", "maybe",
                      check=False)
        assert res.returncode != 0 and "true or false" in res.stderr
        res = srv.ctl("change_room_option", "tea", SERVICE, "colour", "red", check=False)
        assert res.returncode != 0 and "unknown room options: colour" in res.stderr
        assert ctl_out(srv, "get_user_rooms", "alice", "localhost") == ROOM

        # destroyed: alice is told, the room is gone
        assert ctl_out(srv, "destroy_room", "tea", SERVICE) == ""
        bye = await alice.recv_until(lambda e: e.get("type") == "unavailable")
        assert bye.find(f"{{{USER}}}x/{{{USER}}}destroy") is not None
        for c in (alice, bob):
            await c.close()
    run(main())
    assert ctl_out(srv, "muc_online_rooms", "global") == ""
    res = srv.ctl("destroy_room", "tea", SERVICE, check=False)
    assert res.returncode != 0 and "does not exist" in res.stderr


def local(el: ET.Element) -> str:
    return el.tag.split("}")[-1]


def test_room_options_survive_a_restart_and_the_http_api(make_server: MakeServer) -> None:
    srv = _server(make_server)
    assert ctl_out(srv, "create_room_with_opts", "club", SERVICE, "localhost",
                   "members_only:true title:Club max_users:7") == ""
    srv.ctl("set_room_affiliation", "club", SERVICE, "bob@localhost", "member")
    srv.stop()
    srv.start()
    # read from the database by the command (nobody has used the room since)
    opts = options(srv, "club")
    assert (opts["members_only"], opts["title"], opts["max_users"]) == ("true", "Club", "7")
    assert ctl_out(srv, "get_room_affiliations", "club", SERVICE) == "bob\tlocalhost\tmember"

    async def main() -> None:
        alice = await client(srv, "alice")
        err = await raw_join(alice, f"club@{SERVICE}", "Alice")
        assert err.get("type") == "error"   # members only
        bob = await client(srv, "bob")
        assert item(await raw_join(bob, f"club@{SERVICE}", "Bob"))["affiliation"] == "member"

        api = f"http://127.0.0.1:{srv.http}/api"
        async with aiohttp.ClientSession() as http:
            async def call(command: str, args: dict[str, Any]) -> tuple[int, Any]:
                async with http.post(f"{api}/{command}", data=json.dumps(args)) as resp:
                    return resp.status, await resp.json()
            assert await call("create_room_with_opts", {
                "name": "cafe", "service": SERVICE, "host": "localhost",
                "options": [{"name": "title", "value": "Café"},
                            {"name": "public", "value": "false"}]}) == (200, 0)
            status, rows = await call("get_room_options", {"name": "cafe", "service": SERVICE})
            got = {r["name"]: r["value"] for r in rows}
            assert status == 200 and (got["title"], got["public"]) == ("Café", "false")
            assert await call("set_room_affiliation", {
                "name": "cafe", "service": SERVICE, "jid": "alice@localhost",
                "affiliation": "admin"}) == (200, 0)
            assert await call("get_room_affiliations", {"name": "cafe", "service": SERVICE}) == (
                200, [{"username": "alice", "domain": "localhost", "affiliation": "admin",
                       "reason": ""}])
            assert await call("get_user_rooms", {"user": "bob", "host": "localhost"}) == (
                200, [f"club@{SERVICE}"])
            status, err = await call("destroy_room", {"name": "nowhere", "service": SERVICE})
            assert status == 404 and "does not exist" in err["message"]
        for c in (alice, bob):
            await c.close()
    run(main())


@pytest.mark.parametrize("text, error", [
    ("members_only", "expected name:value"),
    ("colour:red", "unknown room options: colour"),
    ("max_users:many", "OPTIONS.max_users"),
    ("{not json", "not valid JSON"),
])
def test_bad_room_options_are_named(text: str, error: str) -> None:
    from xmppd.commands import CommandError
    from xmppd.muc.commands import parse_options
    with pytest.raises(CommandError) as err:
        parse_options(text)
    assert error in str(err.value)
