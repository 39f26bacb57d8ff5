"""Invitations (mod_invites: XEP-0401, XEP-0445, XEP-0379): with registration closed
(``ip_access: none``), an account invitation from ``xmppd ctl generate_invite`` or an
administrator's ad-hoc command, and a user's contact invitation, let a raw client
register; the contact invitation puts the two in each other's roster."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from conftest import run
from helpers.clients import Slix
from helpers.peer import ROSTER, Peer, is_presence, is_push
from helpers.procs import XmppdServer
from helpers.raw import RawClient
from test_register import _condition, _register, _secured

MakeServer = Callable[..., XmppdServer]
INVITE = "urn:xmpp:invite"
PARS = "urn:xmpp:pars:0"
MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_adhoc": {},
           "mod_register": {"ip_access": "none"},
           "mod_invites": {"access_create_account": "admin"}}
CONFIG = {"acl": {"admin": {"user": ["boss@localhost"]}}}


def token(uri: str) -> str:
    return uri.split("preauth=")[1].split(";")[0]


async def preauth(c: RawClient, tok: str, iid: str = "p1") -> ET.Element:
    await c.send(f"<iq type='set' id='{iid}'><preauth xmlns='{PARS}' token='{tok}'/></iq>")
    return await c.recv_until(lambda el: el.get("id") == iid)


async def invited(port: int, tok: str, user: str, password: str) -> tuple[ET.Element, ET.Element]:
    """A new client: TLS, the token, the registration (their answers)."""
    c, feats = await _secured(port)
    assert feats.find(f"{{{INVITE}}}register") is not None
    pre = await preauth(c, tok)
    reg = await _register(c, user, password, "r1") if pre.get("type") == "result" else pre
    await c.close()
    return pre, reg


async def adhoc(user: str, node: str, port: int, **fields: Any) -> Any:
    c = await Slix(f"{user}@localhost/r", "pw", plugins=("xep_0030", "xep_0004",
                                                           "xep_0050")).login(port)
    try:
        first = await c.plugin["xep_0050"].send_command("localhost", node, timeout=10)
        if first["command"]["status"] != "completed":
            form = c.plugin["xep_0004"].make_form(ftype="submit")
            for var, value in fields.items():
                form.add_field(var=var, value=value)
            first = await c.plugin["xep_0050"].send_command(
                "localhost", node, action="complete", payload=form,
                sessionid=first["command"]["sessionid"], timeout=10)
        return first
    finally:
        await c.logout()


def uri_of(result: Any) -> str:
    return str(result["command"]["form"].get_fields()["uri"]["value"])


def test_invitations_open_a_closed_server(make_server: MakeServer) -> None:
    srv = make_server(modules=MODULES, config=CONFIG)
    for u in ("boss", "alice"):
        srv.register(u, "pw")
    srv.start()
    uri = srv.ctl("generate_invite", "localhost").stdout.strip()
    assert uri.startswith("xmpp:localhost?register;preauth=")

    async def main() -> None:
        # without a token: registration is closed
        c, feats = await _secured(srv.c2s)
        assert feats.find("{http://jabber.org/features/iq-register}register") is None
        assert feats.find(f"{{{INVITE}}}register") is not None
        assert _condition(await preauth(c, "made-up")) == "item-not-found"
        assert _condition(await _register(c, "mallory", "pw-mallory", "r0")) == "forbidden"
        await c.close()
        # with the administrator's token: an account, once
        pre, reg = await invited(srv.c2s, token(uri), "dora", "pw-dora")
        assert pre.get("type") == "result" and reg.get("type") == "result", ET.tostring(reg)
        assert await RawClient(srv.c2s).login("dora", "pw-dora") == "dora@localhost/raw"
        pre, _ = await invited(srv.c2s, token(uri), "dora2", "pw")
        assert _condition(pre) == "item-not-found"

        # a contact invitation: the invitee and alice end up in each other's roster
        res = await adhoc("alice", f"{INVITE}#invite", srv.c2s)
        contact = uri_of(res)
        assert contact.startswith("xmpp:alice@localhost?roster;preauth=")
        assert contact.endswith(";ibr=y")
        alice = await Peer(srv.c2s, "alice", "pw").login()
        await alice.roster()
        pre, reg = await invited(srv.c2s, token(contact), "erin", "pw-erin")
        assert reg.get("type") == "result", ET.tostring(reg)
        push = await alice.expect(is_push("erin@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") == "both"
        erin = await Peer(srv.c2s, "erin", "pw-erin").login()
        roster = await erin.roster()
        assert roster["alice@localhost"].get("subscription") == "both"
        await erin.close()
        await alice.close()

        # an account invitation for one name (the administrator's ad-hoc command)
        res = await adhoc("boss", f"{INVITE}#create-account", srv.c2s, username="frank")
        named = uri_of(res)
        assert named.startswith("xmpp:frank@localhost?register;preauth=")
        _, reg = await invited(srv.c2s, token(named), "george", "pw-george")
        assert _condition(reg) == "not-allowed"
        _, reg = await invited(srv.c2s, token(named), "frank", "pw-frank")
        assert reg.get("type") == "result", ET.tostring(reg)
        # alice may not make account invitations
        try:
            await adhoc("alice", f"{INVITE}#create-account", srv.c2s, username="x")
        except Exception as e:   # slixmpp's IqError
            assert getattr(e, "condition", "") == "forbidden", e
        else:
            raise AssertionError("alice made an account invitation")
    run(main())
    for user in ("dora", "erin", "frank"):
        assert srv.ctl("check_account", user, "localhost", check=False).returncode == 0
    for user in ("mallory", "dora2", "george"):
        assert srv.ctl("check_account", user, "localhost", check=False).returncode == 1
    assert srv.ctl("list_invites", "localhost").stdout.strip() == ""   # all used
    assert "erin@localhost joined with an invitation of alice@localhost" in srv.log


def test_an_existing_account_subscribes_with_the_token(make_server: MakeServer) -> None:
    """XEP-0379 without registration: bob has an account; his subscription request with
    alice's token is approved at once and alice asks back; a second use of the token is
    an ordinary request that waits for alice."""
    srv = make_server(modules=MODULES, config=CONFIG)
    for u in ("alice", "bob", "carol"):
        srv.register(u, "pw")
    srv.start()

    async def main() -> None:
        tok = token(uri_of(await adhoc("alice", f"{INVITE}#invite", srv.c2s)))
        alice = await Peer(srv.c2s, "alice", "pw").login()
        await alice.roster()
        bob = await Peer(srv.c2s, "bob", "pw").login()
        await bob.roster()
        await bob.send(f"<presence to='alice@localhost' type='subscribe'>"
                       f"<preauth xmlns='{PARS}' token='{tok}'/></presence>")
        await bob.expect(is_presence("alice@localhost", "subscribed"), timeout=10)
        await bob.expect(is_presence("alice@localhost", "subscribe"), timeout=10)
        push = await alice.expect(is_push("bob@localhost"), timeout=10)
        assert push.find(f"{ROSTER}query/{ROSTER}item").get("subscription") in ("from", "none")
        await bob.send("<presence to='alice@localhost' type='subscribed'/>")
        await asyncio.sleep(0.5)
        assert (await alice.roster())["bob@localhost"].get("subscription") == "both"
        assert (await bob.roster())["alice@localhost"].get("subscription") == "both"
        # the token is used: carol's request is an ordinary one, shown to alice
        carol = await Peer(srv.c2s, "carol", "pw").login()
        await carol.send(f"<presence to='alice@localhost' type='subscribe'>"
                         f"<preauth xmlns='{PARS}' token='{tok}'/></presence>")
        req = await alice.expect(is_presence("carol@localhost", "subscribe"), timeout=10)
        assert req.find(f"{{{PARS}}}preauth") is None
        await carol.nothing(is_presence("alice@localhost", "subscribed"), 1.0)
        for p in (alice, bob, carol):
            await p.close()
    run(main())
    assert "bob@localhost subscribed to alice@localhost with an invitation" in srv.log


def test_an_invitation_takes_no_name_access_denies(make_server: MakeServer) -> None:
    """mod_register's ``access`` still decides which names may be taken."""
    srv = make_server(modules={**MODULES, "mod_register": {"ip_access": "none",
                                                           "access": "register"}},
                      config={**CONFIG, "acl": {**CONFIG["acl"],
                                                "reserved": {"user": ["admin@localhost"]}},
                              # (a list: the YAML dump sorts a mapping's keys)
                              "access_rules": {"register": [{"deny": "reserved"},
                                                            {"allow": "all"}]}})
    srv.start()
    uri = srv.ctl("generate_invite", "localhost").stdout.strip()

    async def main() -> None:
        _, reg = await invited(srv.c2s, token(uri), "admin", "pw-admin")
        assert _condition(reg) == "forbidden", ET.tostring(reg)
        _, reg = await invited(srv.c2s, token(uri), "dora", "pw-dora")   # (not used up)
        assert reg.get("type") == "result", ET.tostring(reg)
    run(main())
    assert srv.ctl("check_account", "admin", "localhost", check=False).returncode == 1


def test_invitations_expire(make_server: MakeServer) -> None:
    srv = make_server(modules={**MODULES, "mod_invites": {"token_expire_seconds": 1}},
                      config=CONFIG)
    srv.start()
    uri = srv.ctl("generate_invite", "localhost").stdout.strip()
    assert token(uri) in srv.ctl("list_invites", "localhost").stdout

    async def main() -> None:
        await asyncio.sleep(2.2)
        pre, _ = await invited(srv.c2s, token(uri), "late", "pw-late")
        assert _condition(pre) == "item-not-found"
    run(main())
    assert srv.ctl("list_invites", "localhost").stdout.strip() == ""
