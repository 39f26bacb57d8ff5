"""Ad-hoc commands (XEP-0050, mod_adhoc) and service administration (XEP-0133,
mod_configure) with slixmpp's xep_0050 and xep_0004: an administrator adds and
deletes accounts, changes a password, counts and lists online users, ends a
session and sends an announcement; a user who is not an admin sees only ping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import slixmpp.exceptions
from conftest import run
from helpers.clients import Slix
from helpers.procs import XmppdServer
from helpers.raw import C, RawClient

ADMIN = "http://jabber.org/protocol/admin"
PLUGINS = ("xep_0030", "xep_0004", "xep_0050", "xep_0199")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("adhoc"), config={
        "acl": {"admin": {"user": ["boss@localhost"]}},
        "access_rules": {"configure": {"allow": "admin"}},
    }, modules={"mod_disco": {}, "mod_adhoc": {}, "mod_configure": {}, "mod_ping": {}})
    for user in ("boss", "alice", "bob"):
        srv.register(user, "pw-" + user)
    srv.start()
    yield srv
    srv.stop()


async def login(server: XmppdServer, user: str, resource: str = "r") -> Slix:
    return await Slix(f"{user}@localhost/{resource}", "pw-" + user, plugins=PLUGINS).login(
        server.c2s)


async def nodes(c: Slix) -> dict[str, str]:
    items = await c.plugin["xep_0050"].get_commands("localhost", timeout=10)
    return {i[1]: i[2] for i in items["disco_items"]["items"]}


async def execute(c: Slix, node: str, **fields: Any) -> Any:
    """Run ``node``: the first step, then (when it asks) the form filled with ``fields``."""
    adhoc = c.plugin["xep_0050"]
    first = await adhoc.send_command("localhost", node, timeout=10)
    if first["command"]["status"] == "completed":
        return first
    assert first["command"]["status"] == "executing"
    form = c.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in fields.items():
        form.add_field(var=var, value=value)
    return await adhoc.send_command("localhost", node, action="complete", payload=form,
                                    sessionid=first["command"]["sessionid"], timeout=10)


def note(iq: Any) -> tuple[str, str]:
    n = iq.xml.find("{http://jabber.org/protocol/commands}command/"
                    "{http://jabber.org/protocol/commands}note")
    return (n.get("type"), n.text or "") if n is not None else ("", "")


def field(iq: Any, var: str) -> Any:
    return iq["command"]["form"].get_fields()[var]["value"]


def test_admin_manages_accounts_and_sessions(server: XmppdServer) -> None:
    async def main() -> None:
        boss = await login(server, "boss")
        alice = RawClient(server.c2s_tls, tls=True)   # (raw clients: they see stream errors)
        await alice.login("alice", "pw-alice", "phone")
        alice2 = await login(server, "alice", "laptop")
        listed = await nodes(boss)
        assert f"{ADMIN}#add-user" in listed and "ping" in listed and len(listed) == 13
        assert f"{ADMIN}#set-motd" not in listed   # (no mod_announce here)
        info = await boss.plugin["xep_0030"].get_info(jid="localhost", node=f"{ADMIN}#add-user",
                                                       timeout=10)
        assert ("automation", "command-node") in [i[:2] for i in info["disco_info"]["identities"]]
        # add a user: the form asks for the JID and the password twice
        adhoc = boss.plugin["xep_0050"]
        first = await adhoc.send_command("localhost", f"{ADMIN}#add-user", timeout=10)
        assert set(first["command"]["form"].get_fields()) >= {"accountjid", "password",
                                                           "password-verify"}
        done = await execute(boss, f"{ADMIN}#add-user", accountjid="carol@localhost",
                             password="pw-carol", **{"password-verify": "pw-carol"})
        assert done["command"]["status"] == "completed" and note(done)[0] == "info"
        carol = RawClient(server.c2s_tls, tls=True)
        await carol.login("carol", "pw-carol", "r")  # the new account works
        # mismatched passwords, and accounts of another domain, are refused with a note
        bad = await execute(boss, f"{ADMIN}#add-user", accountjid="dave@localhost",
                            password="a", **{"password-verify": "b"})
        assert note(bad)[0] == "error"
        bad = await execute(boss, f"{ADMIN}#add-user", accountjid="dave@elsewhere.example",
                            password="a", **{"password-verify": "a"})
        assert note(bad) == ("error", "not an account of localhost: dave@elsewhere.example")
        # counts and the list of online users
        n = await execute(boss, f"{ADMIN}#get-online-users-num")
        assert field(n, "onlineusersnum") == "3"   # boss, alice (two devices), carol
        online = await execute(boss, f"{ADMIN}#get-online-users-list")
        assert {str(j) for j in field(online, "onlineuserjids")} == {
            "boss@localhost/r", "alice@localhost/phone", "alice@localhost/laptop",
            "carol@localhost/r"}
        n = await execute(boss, f"{ADMIN}#get-registered-users-num")
        assert field(n, "registeredusersnum") == "4"
        # an announcement reaches every online session
        await execute(boss, f"{ADMIN}#announce", subject="Maintenance",
                      announcement="Down at noon")
        msg = await asyncio.wait_for(alice2.messages.get(), 10)
        assert msg["body"] == "Down at noon" and msg["subject"] == "Maintenance"
        assert str(msg["from"]) == "localhost"
        for raw in (alice, carol):
            m = await raw.recv_until(lambda e: e.tag == C + "message", timeout=10)
            assert m.findtext(C + "body") == "Down at noon" and m.get("from") == "localhost"
        # end one session of alice's, by full JID
        await execute(boss, f"{ADMIN}#end-user-session", accountjids=["alice@localhost/phone"])
        assert await alice.stream_error(timeout=10) == "policy-violation"
        online = await execute(boss, f"{ADMIN}#get-online-users-list")
        assert "alice@localhost/laptop" in {str(j) for j in field(online, "onlineuserjids")}
        # a new password for carol; then carol is deleted (her session ends)
        await execute(boss, f"{ADMIN}#change-user-password", accountjid="carol@localhost",
                      password="new-carol")
        assert server.ctl("check_password", "carol", "localhost", "new-carol",
                          check=False).returncode == 0
        await execute(boss, f"{ADMIN}#delete-user", accountjids=["carol@localhost"])
        assert await carol.stream_error(timeout=10) == "not-authorized"
        assert server.ctl("check_account", "carol", "localhost", check=False).returncode == 1
        for c in (boss, alice2):
            await c.logout()
    run(main())


def test_users_see_ping_only_and_sessions_are_checked(server: XmppdServer) -> None:
    async def main() -> None:
        bob = await login(server, "bob")
        assert await nodes(bob) == {"ping": "Ping"}
        pong = await bob.plugin["xep_0050"].send_command("localhost", "ping", timeout=10)
        assert pong["command"]["status"] == "completed" and note(pong) == ("info", "Pong")
        with pytest.raises(slixmpp.exceptions.IqError) as e:
            await bob.plugin["xep_0050"].send_command("localhost", f"{ADMIN}#delete-user",
                                                      timeout=10)
        assert e.value.condition == "forbidden"
        with pytest.raises(slixmpp.exceptions.IqError) as e:
            await bob.plugin["xep_0050"].send_command("localhost", "no-such-command", timeout=10)
        assert e.value.condition == "item-not-found"
        # another user's session id is not accepted (bad-sessionid)
        boss = await login(server, "boss", "desk")
        first = await boss.plugin["xep_0050"].send_command("localhost", f"{ADMIN}#add-user",
                                                           timeout=10)
        raw = RawClient(server.c2s_tls, tls=True)
        await raw.login("boss", "pw-boss", "other")
        await raw.send(
            f"<iq type='set' id='steal' to='localhost'><command xmlns='http://jabber.org/protocol/commands'"
            f" node='{ADMIN}#add-user' action='complete'"
            f" sessionid='{first['command']['sessionid']}'><x xmlns='jabber:x:data' type='submit'/>"
            f"</command></iq>")
        reply = await raw.recv_until(lambda e: e.get("id") == "steal", timeout=10)
        assert reply.get("type") == "error"
        assert reply.find("{jabber:client}error/{http://jabber.org/protocol/commands}"
                          "bad-sessionid") is not None
        # cancel ends the session
        canceled = await boss.plugin["xep_0050"].send_command(
            "localhost", f"{ADMIN}#add-user", action="cancel",
            sessionid=first["command"]["sessionid"], timeout=10)
        assert canceled["command"]["status"] == "canceled"
        await raw.close()
        for c in (bob, boss):
            await c.logout()
    run(main())


def test_admin_motd_stats_and_disabling(tmp_path_factory: pytest.TempPathFactory) -> None:
    """XEP-0133's message of the day (with mod_announce), a user's last login and
    statistics, the list of accounts, and disable-user."""
    srv = XmppdServer(tmp_path_factory.mktemp("adhoc2"), config={
        "acl": {"admin": {"user": ["boss@localhost"]}},
        "access_rules": {"configure": {"allow": "admin"}},
    }, modules={"mod_disco": {}, "mod_adhoc": {}, "mod_configure": {}, "mod_ping": {},
                "mod_announce": {}, "mod_last": {}, "mod_roster": {}})
    for user in ("boss", "alice", "bob", "carol"):
        srv.register(user, "pw-" + user)
    srv.start()
    srv.ctl("add_rosteritem", "alice", "localhost", "bob", "localhost", "Bob", "Friends", "both")

    async def main() -> None:
        boss = await login(srv, "boss")
        listed = await nodes(boss)
        for suffix in ("set-motd", "edit-motd", "delete-motd", "disable-user",
                       "get-user-lastlogin", "user-stats", "get-registered-users-list"):
            assert f"{ADMIN}#{suffix}" in listed, suffix
        alice = RawClient(srv.c2s_tls, tls=True)
        await alice.login("alice", "pw-alice", "phone")
        await alice.send("<presence/>")
        # set-motd: to online users now
        await execute(boss, f"{ADMIN}#set-motd", subject="Hello", body=["Welcome", "all"])
        m = await alice.recv_until(lambda e: e.tag == C + "message", timeout=10)
        assert m.findtext(C + "body") == "Welcome\nall" and m.findtext(C + "subject") == "Hello"
        # edit-motd: the form shows the current one; the change is not sent now
        first = await boss.plugin["xep_0050"].send_command("localhost", f"{ADMIN}#edit-motd",
                                                           timeout=10)
        assert first["command"]["form"].get_fields()["subject"]["value"] == "Hello"
        await execute(boss, f"{ADMIN}#edit-motd", subject="Hello", body="Welcome back")
        # a user who logs in later gets the edited one, once
        bob = RawClient(srv.c2s_tls, tls=True)
        await bob.login("bob", "pw-bob", "r")
        await bob.send("<presence/>")
        m = await bob.recv_until(lambda e: e.tag == C + "message", timeout=10)
        assert m.findtext(C + "body") == "Welcome back"
        await execute(boss, f"{ADMIN}#delete-motd")
        carol = RawClient(srv.c2s_tls, tls=True)
        await carol.login("carol", "pw-carol", "r")
        await carol.send("<presence/>")
        with pytest.raises(asyncio.TimeoutError):
            await carol.recv_until(lambda e: e.tag == C + "message", timeout=1.5)
        # last login, statistics, the registered users
        last = await execute(boss, f"{ADMIN}#get-user-lastlogin", accountjid="alice@localhost")
        assert field(last, "lastlogin") == "online now"
        await carol.close()
        await asyncio.sleep(0.5)
        last = await execute(boss, f"{ADMIN}#get-user-lastlogin", accountjid="carol@localhost")
        assert field(last, "lastlogin").endswith("Z")
        stats = await execute(boss, f"{ADMIN}#user-stats", accountjid="alice@localhost")
        assert field(stats, "rostersize") == "1"
        assert field(stats, "onlineresources") == ["alice@localhost/phone"]
        assert field(stats, "ipaddresses")[0].startswith("127.0.0.1:")
        users = await execute(boss, f"{ADMIN}#get-registered-users-list")
        assert [str(j) for j in field(users, "registereduserjids")] == [
            "alice@localhost", "bob@localhost", "boss@localhost", "carol@localhost"]
        # disable-user: the session ends, the password no longer works
        await execute(boss, f"{ADMIN}#disable-user", accountjids=["bob@localhost"])
        assert await bob.stream_error(timeout=10) is not None
        assert srv.ctl("check_password", "bob", "localhost", "pw-bob",
                       check=False).returncode != 0
        await alice.close()
        await boss.logout()
    try:
        run(main())
    finally:
        srv.stop()
