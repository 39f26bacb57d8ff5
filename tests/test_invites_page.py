"""The web page of an invitation (mod_invites ``landing_page``): a friend without an XMPP
app opens the https link, sees who invites them and the apps to install, and may create
the account in the browser; the account invitations of ``generate_invite_with_username``
keep their name; templates for another site; the invitation commands."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, Optional
from urllib.parse import urlsplit

import aiohttp
from conftest import run
from helpers.peer import Peer
from helpers.procs import XmppdServer, free_port
from test_invites import CONFIG, INVITE, MODULES, adhoc, token, uri_of
from test_register import _condition, _register, _secured

MakeServer = Callable[..., XmppdServer]


def page_server(make_server: MakeServer, invites: Optional[dict[str, Any]] = None,
                register: Optional[dict[str, Any]] = None) -> XmppdServer:
    """Pages on an https listener and on the plain one (the link names the https one)."""
    srv = make_server(modules={**MODULES, "mod_invites": {
        "access_create_account": "admin", "landing_page": "auto", **(invites or {})},
        "mod_register": register if register is not None else {"ip_access": "none"}},
        config=CONFIG)
    srv.https = free_port()
    srv.config["listen"][3]["request_handlers"] = {"/invites": "mod_invites"}
    srv.config["listen"].append({"port": srv.https, "ip": "127.0.0.1", "module": "ejabberd_http",
                                 "tls": True, "request_handlers": {"/invites": "mod_invites"}})
    srv.write_config()
    return srv


async def fetch(url: str, form: Optional[dict[str, str]] = None) -> tuple[int, str, Any]:
    """GET (or POST ``form``) on the server's loopback address, whatever the link's host."""
    parts = urlsplit(url)
    local = f"{parts.scheme}://127.0.0.1:{parts.port}{parts.path}"
    async with aiohttp.ClientSession() as http:
        req = http.post(local, data=form, ssl=False) if form is not None else \
            http.get(local, ssl=False)
        async with req as resp:
            return resp.status, await resp.text(), resp.headers


def test_a_friend_without_an_app_joins_through_the_web_page(make_server: MakeServer) -> None:
    srv = page_server(make_server)
    srv.register("alice", "pw")
    srv.start()

    async def main() -> None:
        res = await adhoc("alice", f"{INVITE}#invite", srv.c2s)
        fields = res["command"]["form"].get_fields()
        assert fields["FORM_TYPE"]["value"] in (f"{INVITE}#invitation",   # XEP-0401 6
                                                [f"{INVITE}#invitation"])
        uri, tok = uri_of(res), token(uri_of(res))
        landing = str(fields["landing-url"]["value"])
        assert landing == f"https://localhost:{srv.https}/invites/{tok}"
        status, page, headers = await fetch(landing)
        assert status == 200, page
        assert "alice@localhost invites you to chat" in page
        assert f'href="{uri}"' in page and "Conversations" in page
        assert headers["Referrer-Policy"] == "no-referrer"
        status, form, _ = await fetch(landing + "/register")
        assert status == 200 and 'name="password2"' in form
        # mistakes keep the invitation
        status, page, _ = await fetch(landing + "/register", {
            "username": "erin", "password": "pw-erin", "password2": "other"})
        assert status == 400 and "differ" in page
        status, page, _ = await fetch(landing + "/register", {
            "username": "alice", "password": "pw-x", "password2": "pw-x"})
        assert status == 409 and "taken" in page
        # the password only over TLS or from this machine: over plain HTTP the page
        # works here because the test is on loopback, as behind a local proxy
        status, page, _ = await fetch(f"http://localhost:{srv.http}/invites/{tok}")
        assert status == 200
        status, page, _ = await fetch(landing + "/register", {
            "username": "erin", "password": "pw-erin", "password2": "pw-erin"})
        assert status == 200, page
        assert "erin@localhost" in page and "alice@localhost is in your contacts" in page
        # used up
        assert (await fetch(landing))[0] == 404
        assert (await fetch(landing + "/register", {
            "username": "fred", "password": "p", "password2": "p"}))[0] == 404
        # the new account logs in, and the two are subscribed both ways
        erin = await Peer(srv.c2s, "erin", "pw-erin").login()
        assert (await erin.roster())["alice@localhost"].get("subscription") == "both"
        alice = await Peer(srv.c2s, "alice", "pw").login()
        assert (await alice.roster())["erin@localhost"].get("subscription") == "both"
        for p in (erin, alice):
            await p.close()
        assert (await fetch(f"https://localhost:{srv.https}/invites/nonsense"))[0] == 404
    run(main())
    assert "registered erin@localhost with an invitation (XEP-0445) from 127.0.0.1" in srv.log


def test_a_named_account_invitation_keeps_its_name(make_server: MakeServer) -> None:
    """``generate_invite_with_username``: the link and its page; nobody else registers
    the name meanwhile (XEP-0401 5.1), nor does the page make another name."""
    srv = page_server(make_server, register={"ip_access": "all"})
    srv.register("alice", "pw")
    srv.start()
    out = srv.ctl("generate_invite_with_username", "Juliet", "localhost").stdout.strip()
    uri, landing = out.split("\t")
    assert uri.startswith("xmpp:juliet@localhost?register;preauth=")
    assert landing == f"https://localhost:{srv.https}/invites/{token(uri)}"
    again = srv.ctl("generate_invite_with_username", "juliet", "localhost", check=False)
    assert again.returncode != 0 and "taken" in again.stderr + again.stdout
    taken = srv.ctl("generate_invite_with_username", "alice", "localhost", check=False)
    assert taken.returncode != 0

    async def main() -> None:
        c, _ = await _secured(srv.c2s)
        reg = await _register(c, "juliet", "pw-someone", "r1")
        assert _condition(reg) == "conflict", ET.tostring(reg)
        await c.close()
        status, page, _ = await fetch(landing)
        assert status == 200 and "juliet@localhost" in page
        status, page, _ = await fetch(landing + "/register", {
            "username": "romeo", "password": "pw-r", "password2": "pw-r"})
        assert status == 403 and "another account name" in page
        status, page, _ = await fetch(landing + "/register", {
            "username": "juliet", "password": "pw-juliet", "password2": "pw-juliet"})
        assert status == 200 and "juliet@localhost" in page
        p = await Peer(srv.c2s, "juliet", "pw-juliet").login()
        await p.close()
    run(main())
    assert srv.ctl("check_account", "romeo", "localhost", check=False).returncode == 1


def test_invitation_commands_and_a_page_elsewhere(make_server: MakeServer) -> None:
    """A landing page template (ejabberd's variables) for another site; an account's
    invitations ended by ``expire_invite_tokens``; ``list_invites`` shows the links."""
    srv = make_server(modules={**MODULES, "mod_invites": {
        "landing_page": "https://invites.example/#{{ invite.uri|strip_protocol }}",
        "site_name": "Example Chat"}}, config=CONFIG)
    srv.register("alice", "pw")
    srv.start()
    uri, landing = srv.ctl("generate_invite", "localhost").stdout.strip().split("\t")
    assert landing == "https://invites.example/#" + uri[len("xmpp:"):]

    async def main() -> None:
        for _ in range(2):
            await adhoc("alice", f"{INVITE}#invite", srv.c2s)
    run(main())
    listed = srv.ctl("list_invites", "localhost").stdout.strip().splitlines()
    assert len(listed) == 3 and all(row.split("\t")[5].startswith("https://invites.example/#")
                                    for row in listed)
    assert srv.ctl("expire_invite_tokens", "alice", "localhost").stdout.strip() == "2"
    listed = srv.ctl("list_invites", "localhost").stdout.strip().splitlines()
    assert [row.split("\t")[0] for row in listed] == [token(uri)]
    assert srv.ctl("cleanup_expired_invite_tokens").stdout.strip() == "0"


def test_a_bad_landing_page_names_the_yaml_path(make_server: MakeServer) -> None:
    srv = make_server(modules={**MODULES, "mod_invites": {
        "landing_page": "https://invites.example/{{ invite.secret }}"}}, config=CONFIG)
    res = subprocess.run([sys.executable, "-m", "xmppd", "check", "-c", str(srv.config_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "modules.mod_invites.landing_page" in res.stderr, res.stderr
    # auto without a mod_invites handler: a warning, and links without a page
    srv.config["modules"]["mod_invites"] = {"landing_page": "auto"}
    srv.write_config()
    srv.start()
    assert srv.ctl("generate_invite", "localhost").stdout.strip().count("\t") == 0
    assert "no ejabberd_http listener has a request handler mod_invites" in srv.log


def test_without_registration_a_contact_invitation_offers_none(make_server: MakeServer) -> None:
    """XEP-0401 3.1: no ``ibr=y`` where the invitee cannot register (no mod_register)."""
    srv = make_server(modules={"mod_disco": {}, "mod_roster": {}, "mod_adhoc": {},
                               "mod_invites": {}}, config=CONFIG)
    srv.register("alice", "pw")
    srv.start()
    uri = uri_of(run(adhoc("alice", f"{INVITE}#invite", srv.c2s)))
    assert uri == f"xmpp:alice@localhost?roster;preauth={token(uri)}"
