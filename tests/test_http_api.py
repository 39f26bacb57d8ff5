"""mod_http_api: the admin commands over HTTP as ejabberd's REST API, with
api_permissions deciding who may call what; an aiohttp client and raw XMPP clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import aiohttp
import pytest
import yaml
from conftest import run
from helpers.procs import free_port
from helpers.raw import RawClient, local

from xmppd.config import parse_config
from xmppd.confval import ConfigError

ADMIN = ("admin@localhost", "adminpw")
PERMISSIONS = {
    "admin access": {"who": {"access": {"allow": [{"acl": "admin"}]}},
                     "what": ["*", "!stop"]},
    "public commands": {"who": {"ip": "127.0.0.1/8"},
                        "what": ["status", "connected_users_number"]},
}


def api_server(make_server: Any, permissions: Optional[dict[str, Any]] = None,
               fail2ban: Optional[dict[str, Any]] = None,
               modules: Optional[dict[str, Any]] = None) -> Any:
    config: dict[str, Any] = {"acl": {"admin": {"user": "admin@localhost"}}}
    if permissions is not None:
        config["api_permissions"] = permissions
    srv = make_server(config=config)
    srv.https = free_port()
    srv.config["listen"][3]["request_handlers"] = {"/api": "mod_http_api"}
    srv.config["listen"].append({"port": srv.https, "ip": "127.0.0.1", "module": "ejabberd_http",
                                 "tls": True, "request_handlers": {"/api": "mod_http_api"}})
    srv.config["modules"].update({"mod_http_api": {}, "mod_roster": {}, **(modules or {})})
    if fail2ban is not None:
        srv.config["modules"]["mod_fail2ban"] = fail2ban
    srv.write_config()
    srv.register("admin", "adminpw")
    srv.register("bob", "bobpw")
    return srv.start()


async def call(url: str, command: str, args: Any = None, auth: Optional[tuple[str, str]] = None,
               method: str = "POST", body: Optional[bytes] = None,
               headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
    basic = aiohttp.BasicAuth(*auth) if auth else None
    async with aiohttp.ClientSession() as http:
        if method == "GET":
            req = http.get(f"{url}/{command}", params=args or {}, auth=basic, ssl=False,
                           headers=headers)
        else:
            data = body if body is not None else json.dumps(args or {}).encode()
            req = http.post(f"{url}/{command}", data=data, auth=basic, ssl=False,
                            headers=headers)
        async with req as resp:
            text = await resp.text()
            assert resp.headers["Content-Type"].startswith("application/json")
            return resp.status, json.loads(text)


def test_an_admin_manages_accounts_and_sessions_over_https(make_server: Any) -> None:
    srv = api_server(make_server, PERMISSIONS)
    api = f"https://localhost:{srv.https}/api"

    async def main() -> None:
        # public commands from loopback without logging in
        status, out = await call(api, "status")
        assert status == 200 and "running" in out
        assert await call(api, "connected_users_number", method="GET") == (200, 0)
        # anything else needs the admin
        status, out = await call(api, "register", {"user": "carol", "host": "localhost",
                                                    "password": "first-pass"})
        assert status == 403 and out["code"] == 32
        assert (await call(api, "registered_users", {"host": "localhost"},
                           auth=("bob@localhost", "bobpw")))[0] == 403
        status, out = await call(api, "registered_users", {"host": "localhost"},
                                 auth=("admin@localhost", "wrong"))
        assert status == 401 and out["status"] == "error"
        assert (await call(api, "status", auth=("nobody@localhost", "x")))[0] == 401

        assert await call(api, "register", {"user": "carol", "host": "localhost",
                                            "password": "first-pass"}, auth=ADMIN) == (
            200, "User carol@localhost successfully registered")
        status, out = await call(api, "register", {"user": "carol", "host": "localhost",
                                                   "password": "first-pass"}, auth=ADMIN)
        assert status == 409 and "already registered" in out["message"]
        assert await call(api, "registered_users", {"host": "localhost"}, auth=ADMIN) == (
            200, ["admin", "bob", "carol"])
        assert await call(api, "check_account", {"user": "carol", "host": "localhost"},
                          auth=ADMIN) == (200, 0)
        assert await call(api, "check_account", {"user": "zed", "host": "localhost"},
                          auth=ADMIN) == (200, 1)
        # ejabberd's argument name for the new password
        assert await call(api, "change_password", {"user": "carol", "host": "localhost",
                                                   "newpass": "c2"}, auth=ADMIN) == (200, 0)
        assert await call(api, "check_password", {"user": "carol", "host": "localhost",
                                                   "password": "first-pass"}, auth=ADMIN) == (200, 1)

        carol = RawClient(srv.c2s_tls, tls=True)
        await carol.connect()
        await carol.login("carol", "c2", resource="phone")
        await carol.send("<presence/>")
        assert await call(api, "connected_users_number") == (200, 1)
        assert await call(api, "user_resources", {"user": "carol", "host": "localhost"},
                          auth=ADMIN) == (200, ["phone"])
        assert await call(api, "send_message", {
            "type": "chat", "from": "bob@localhost", "to": "carol@localhost",
            "subject": "", "body": "from the API"}, auth=ADMIN) == (200, 0)
        msg = await carol.recv_until(lambda e: local(e.tag) == "message")
        assert msg.get("from") == "bob@localhost"
        assert msg.findtext("{jabber:client}body") == "from the API"
        assert await call(api, "kick_session", {
            "user": "carol", "host": "localhost", "resource": "phone",
            "reason": "bye"}, auth=ADMIN) == (200, 0)
        assert await carol.stream_error() == "policy-violation"

        # the roster commands, with ejabberd's argument names and JSON answers
        assert await call(api, "add_rosteritem", {
            "localuser": "carol", "localserver": "localhost", "user": "bob",
            "server": "localhost", "nick": "Bob", "groups": ["Friends", "Work"],
            "subs": "both"}, auth=ADMIN) == (200, 0)
        assert await call(api, "get_roster", {"user": "carol", "host": "localhost"},
                          auth=ADMIN) == (200, [{"jid": "bob@localhost", "nick": "Bob",
                                                 "subscription": "both",
                                                 "groups": ["Friends", "Work"]}])

        # bad requests
        status, out = await call(api, "register", {"user": "dave", "host": "localhost"},
                                 auth=ADMIN)
        assert status == 400 and "missing argument: password" in out["message"]
        status, out = await call(api, "registered_users", {"host": "localhost", "x": 1},
                                 auth=ADMIN)
        assert status == 400 and "unknown arguments: x" in out["message"]
        status, out = await call(api, "registered_users", auth=ADMIN, body=b"{not json")
        assert status == 400 and out["code"] == 40
        status, out = await call(api, "no_such_command", auth=ADMIN)
        assert status == 404 and out["code"] == 44
        # a web page cannot make a browser on this machine call it (no credentials needed
        # from loopback for status, but refused all the same)
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            status, out = await call(api, "status", method="GET", headers=headers)
            assert status == 403 and "web pages" in out["message"]
        # stop is taken out of the admin's group: the server keeps running
        assert (await call(api, "stop", auth=ADMIN))[0] == 403

        assert await call(api, "unregister", {"user": "carol", "host": "localhost"},
                          auth=ADMIN) == (200, 0)
        status, out = await call(api, "unregister", {"user": "carol", "host": "localhost"},
                                 auth=ADMIN)
        assert status == 404 and "does not exist" in out["message"]
        # over plain HTTP too (from loopback, where Basic credentials may travel)
        assert await call(f"http://localhost:{srv.http}/api", "registered_users",
                          {"host": "localhost"}, auth=ADMIN) == (200, ["admin", "bob"])
    run(main())
    assert srv.proc is not None and srv.proc.poll() is None
    assert "API call register" in srv.log and "first-pass" not in srv.log


def test_without_api_permissions_only_the_admin_acl_may_call(make_server: Any) -> None:
    srv = api_server(make_server, fail2ban={"c2s_max_auth_failures": 3})
    api = f"https://localhost:{srv.https}/api"

    async def main() -> None:
        assert (await call(api, "status"))[0] == 403
        assert (await call(api, "registered_users", {"host": "localhost"},
                           auth=("bob@localhost", "bobpw")))[0] == 403
        assert await call(api, "registered_users", {"host": "localhost"}, auth=ADMIN) == (
            200, ["admin", "bob"])
        assert (await call(api, "stop", auth=ADMIN))[0] == 403
        # guessing passwords: mod_fail2ban counts the failures and bans the address
        for _ in range(3):
            assert (await call(api, "status", auth=("admin@localhost", "guess")))[0] == 401
        assert (await call(api, "registered_users", {"host": "localhost"}, auth=ADMIN))[0] == 401
    run(main())


def test_the_stock_ejabberd_permissions_parse() -> None:
    data = yaml.safe_load((Path(__file__).parent / "data" / "ejabberd.yml").read_text())
    cfg = parse_config(data)
    groups = {p.name: p for p in cfg["api_permissions"]}
    assert set(groups) == {"console commands", "admin access", "public commands"}
    assert groups["console commands"].fronts == frozenset({"ejabberd_ctl"})
    assert groups["admin access"].taken_out == frozenset({"stop", "start"})
    assert groups["public commands"].commands == frozenset({"status", "connected_users_number"})
    assert not any("oauth" in w for w in cfg.warnings)
    oauth = [w for w in groups["admin access"].who if w.kind == "oauth"]
    assert oauth and oauth[0].scopes == frozenset({"ejabberd:admin"})


OAUTH_PERMISSIONS = {
    "admin access": {"who": {"access": {"allow": [{"acl": "admin"}]},
                             "oauth": {"scope": "ejabberd:admin",
                                       "access": {"allow": [{"acl": "admin"}]}}},
                     "what": ["*", "!stop"]},
    "user tokens": {"who": {"oauth": {"scope": "sendmessage"}}, "what": ["send_message"]},
}


def test_oauth_tokens_call_what_their_scopes_allow(make_server: Any) -> None:
    """ejabberd's oauth_issue_token: a Bearer token calls the commands of the groups
    whose oauth entry names one of its scopes (and whose rules its account passes);
    revoked, unknown or expired tokens get 401."""
    srv = api_server(make_server, OAUTH_PERMISSIONS, fail2ban={"c2s_max_auth_failures": 50})
    api = f"https://localhost:{srv.https}/api"
    out = srv.ctl("oauth_issue_token", "admin@localhost", "3600", "ejabberd:admin").stdout
    admin_token, scopes, ttl = out.strip().split("\t")
    assert scopes == "ejabberd:admin" and ttl == "3600"
    bob_token = srv.ctl("oauth_issue_token", "bob@localhost", "3600",
                        "sendmessage").stdout.split("\t")[0]
    bob_admin = srv.ctl("oauth_issue_token", "bob@localhost", "3600",
                        "ejabberd:admin").stdout.split("\t")[0]
    admin_small = srv.ctl("oauth_issue_token", "admin@localhost", "3600",
                          "sendmessage").stdout.split("\t")[0]
    short = srv.ctl("oauth_issue_token", "admin@localhost", "1", "ejabberd:admin").stdout
    short_token = short.split("\t")[0]
    listed = srv.ctl("oauth_list_tokens").stdout
    assert admin_token in listed and "bob@localhost" in listed
    assert srv.ctl("oauth_issue_token", "nobody@elsewhere", "60", "x", check=False).returncode
    assert srv.ctl("oauth_issue_token", "admin@localhost", "0", "x", check=False).returncode

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def main() -> None:
        assert await call(api, "registered_users", {"host": "localhost"},
                          headers=auth(admin_token)) == (200, ["admin", "bob"])
        # the admin's token cannot stop the server (taken out), bob's sendmessage token
        # sends messages but lists nobody; bob's admin-scoped token fails the rule
        assert (await call(api, "stop", headers=auth(admin_token)))[0] == 403
        bob = RawClient(srv.c2s_tls, tls=True)
        await bob.login("bob", "bobpw", "r")
        status, _ = await call(api, "send_message", {
            "type": "chat", "from": "admin@localhost", "to": "bob@localhost/r",
            "subject": "", "body": "by token"}, headers=auth(bob_token))
        assert status == 200
        msg = await bob.recv_until(lambda e: local(e.tag) == "message", timeout=10)
        assert msg.findtext("{jabber:client}body") == "by token"
        await bob.close()
        assert (await call(api, "registered_users", {"host": "localhost"},
                           headers=auth(bob_token)))[0] == 403
        assert (await call(api, "registered_users", {"host": "localhost"},
                           headers=auth(bob_admin)))[0] == 403
        # a token is limited to its scopes, whatever its account may do otherwise
        assert (await call(api, "registered_users", {"host": "localhost"},
                           headers=auth(admin_small)))[0] == 403
        assert (await call(api, "registered_users", {"host": "localhost"},
                           headers=auth("made-up")))[0] == 401
        import asyncio
        await asyncio.sleep(2.1)   # the one-second token has expired
        assert (await call(api, "status", headers=auth(short_token)))[0] == 401
        # the token commands over the API too (ejabberd's shapes)
        status, issued = await call(api, "oauth_issue_token", {
            "jid": "bob@localhost", "ttl": 60, "scopes": "sendmessage"}, auth=ADMIN)
        assert status == 200 and issued["scopes"] == "sendmessage" and issued["token"]
        status, rows = await call(api, "oauth_list_tokens", auth=ADMIN)
        assert {"token", "jid", "scope", "expires_in"} <= set(rows[0])
        assert await call(api, "oauth_revoke_token", {"token": admin_token}, auth=ADMIN) == (
            200, 0)
        assert (await call(api, "registered_users", {"host": "localhost"},
                           headers=auth(admin_token)))[0] == 401
    run(main())
    assert admin_token not in srv.ctl("oauth_list_tokens").stdout
    assert srv.ctl("oauth_revoke_token", "made-up", check=False).returncode


@pytest.mark.parametrize("permissions, path", [
    ({"g": {"who": {"ip": "not-an-ip"}, "what": "*"}}, "api_permissions.g.who.ip"),
    ({"g": {"who": {"group": "x"}, "what": "*"}}, "api_permissions.g.who.group"),
    ({"g": {"who": "all", "what": [3]}}, "api_permissions.g.what[0]"),
    ({"g": {"who": "all", "wat": "*"}}, "api_permissions.g.wat"),
    ({"g": {"who": {"access": {"maybe": "all"}}, "what": "*"}}, "api_permissions.g.who.access"),
    ({"g": {"who": {"oauth": {"access": "all"}}, "what": "*"}}, "api_permissions.g.who.oauth"),
    ({"g": {"who": {"oauth": {"scope": 3}}, "what": "*"}}, "api_permissions.g.who.oauth.scope"),
    (["g"], "api_permissions"),
])
def test_bad_api_permissions_name_the_yaml_path(permissions: Any, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"hosts": ["localhost"], "api_permissions": permissions})
    assert str(err.value).startswith(path)
