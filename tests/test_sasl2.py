"""SASL2 (XEP-0388) with Bind2 (XEP-0386) and inline stream management (XEP-0198), as
Conversations and Monal log in: raw clients speak it byte for byte. One round trip
less and no stream restart: ``<authenticate/>`` carries the SCRAM first message, the
user agent, a resource request with its tag, stream management, carbons and CSI; the
``<success/>`` answers all of it. A later connection resumes the session inside the
``<authenticate/>``, and what was not acknowledged comes again after the success."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Optional

from conftest import run
from helpers.procs import XmppdServer
from helpers.raw import C, RawClient, local

MakeServer = Callable[..., XmppdServer]
SASL2 = "urn:xmpp:sasl:2"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND2 = "urn:xmpp:bind:0"
SM = "urn:xmpp:sm:3"
MODULES = {"mod_disco": {}, "mod_roster": {}, "mod_offline": {}, "mod_carboncopy": {},
           "mod_client_state": {}, "mod_stream_mgmt": {"resume_timeout": 60}}
AGENT = ("<user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>TestXMPP"
         "</software><device>Phone</device></user-agent>")


async def secured(port: int) -> tuple[RawClient, ET.Element]:
    c = RawClient(port)
    await c.connect()
    await c.open()
    return c, await c.starttls()


async def scram2(c: RawClient, user: str, password: str, inline: str = "") -> ET.Element:
    """SCRAM-SHA-256 in SASL2's syntax with ``inline`` requests; the server's answer to
    the proof (its signature checked on success)."""
    cnonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={cnonce}"
    initial = base64.b64encode(("n,," + first_bare).encode()).decode()
    await c.send(f"<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256'>"
                 f"<initial-response>{initial}</initial-response>{AGENT}{inline}</authenticate>")
    ch = await c.recv()
    if local(ch.tag) != "challenge":
        return ch
    assert ch.tag == f"{{{SASL2}}}challenge"
    server_first = base64.b64decode(ch.text or "").decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    final_wo = f"c={base64.b64encode(b'n,,').decode()},r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_wo}".encode()
    sig = hmac.new(stored, auth_msg, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig, strict=True))).decode()
    await c.send(f"<response xmlns='{SASL2}'>"
                 f"{base64.b64encode(f'{final_wo},p={proof}'.encode()).decode()}</response>")
    res = await c.recv()
    if local(res.tag) == "success":
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expect = base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest()).decode()
        data = base64.b64decode(res.findtext(f"{{{SASL2}}}additional-data") or "").decode()
        assert data == f"v={expect}", "server signature mismatch"
    return res


BIND_ALL = (f"<bind xmlns='{BIND2}'><tag>TestXMPP</tag><enable xmlns='{SM}' resume='true'/>"
            "<enable xmlns='urn:xmpp:carbons:2'/><inactive xmlns='urn:xmpp:csi:0'/></bind>")


def authz(success: ET.Element) -> str:
    return success.findtext(f"{{{SASL2}}}authorization-identifier") or ""


def test_sasl2_with_bind2_and_stream_management(make_server: MakeServer) -> None:
    srv = make_server(modules=MODULES)
    for u in ("alice", "bob"):
        srv.register(u, "pw-" + u)
    srv.start()

    async def main() -> tuple[Optional[str], str]:
        c, feats = await secured(srv.c2s)
        auth = feats.find(f"{{{SASL2}}}authentication")
        assert auth is not None, ET.tostring(feats)
        assert "SCRAM-SHA-256" in [m.text for m in auth.findall(f"{{{SASL2}}}mechanism")]
        assert auth.find(f"{{{SASL2}}}inline/{{{SM}}}sm") is not None
        inline = {f.get("var") for f in auth.iterfind(
            f"{{{SASL2}}}inline/{{{BIND2}}}bind/{{{BIND2}}}inline/{{{BIND2}}}feature")}
        assert inline == {SM, "urn:xmpp:carbons:2", "urn:xmpp:csi:0"}
        # a wrong password: SASL2's failure with RFC 6120's condition
        bad = await scram2(c, "alice", "wrong")
        assert bad.tag == f"{{{SASL2}}}failure"
        assert bad.find(f"{{{SASL}}}not-authorized") is not None
        # the right one, with Bind2 and everything inline
        ok = await scram2(c, "alice", "pw-alice", BIND_ALL)
        assert ok.tag == f"{{{SASL2}}}success", ET.tostring(ok)
        jid = authz(ok)
        assert jid.startswith("alice@localhost/TestXMPP."), jid
        enabled = ok.find(f"{{{BIND2}}}bound/{{{SM}}}enabled")
        assert enabled is not None and enabled.get("resume") == "true"
        previd = enabled.get("id")
        # the stream features follow (no restart), without binding: bound already
        feats = await c.recv()
        assert local(feats.tag) == "features", ET.tostring(feats)
        assert feats.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is None
        # no stream restart: stanzas right away
        await c.send("<presence/>")
        await c.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        res = await c.recv_until(lambda e: e.get("id") == "r1")
        assert res.get("type") == "result"
        # carbons were enabled inline: what alice sends from her laptop shows here
        laptop = RawClient(srv.c2s)
        await laptop.login("alice", "pw-alice", "laptop")
        await laptop.send("<message to='bob@localhost' type='chat' id='c1'><body>from the "
                          "laptop</body></message>")
        carbon = await c.recv_until(lambda e: e.tag == f"{C}message")
        assert carbon.find("{urn:xmpp:carbons:2}sent") is not None, ET.tostring(carbon)
        await laptop.close()
        # bob writes; alice's connection dies before she acknowledges
        bob = RawClient(srv.c2s)
        await bob.login("bob", "pw-bob", "r")
        await bob.send(f"<message to='{jid}' type='chat' id='m1'><body>while you sleep"
                       "</body></message>")
        got = await c.recv_until(lambda e: e.tag == f"{C}message")
        assert got.findtext(f"{C}body") == "while you sleep", ET.tostring(got)
        await c.close()
        # a new connection resumes inside the authentication: the message comes again
        c2, _ = await secured(srv.c2s)
        ok = await scram2(c2, "alice", "pw-alice",
                          f"<resume xmlns='{SM}' previd='{previd}' h='0'/>{BIND_ALL}")
        assert ok.tag == f"{{{SASL2}}}success", ET.tostring(ok)
        assert ok.find(f"{{{SM}}}resumed") is not None and authz(ok) == jid
        assert ok.find(f"{{{BIND2}}}bound") is None      # the session goes on
        # (h=0: the carbon comes again too, then bob's message)
        again = await c2.recv_until(lambda e: e.tag == f"{C}message"
                                    and e.findtext(f"{C}body") is not None)
        assert again.findtext(f"{C}body") == "while you sleep"
        await c2.close()
        await bob.close()
        return previd, jid

    previd, first_jid = run(main())

    async def unknown_session_and_no_bind() -> None:
        # resuming what does not exist: <failed/> in the success, and Bind2 binds anew
        c, _ = await secured(srv.c2s)
        ok = await scram2(c, "alice", "pw-alice",
                          f"<resume xmlns='{SM}' previd='nope' h='0'/>{BIND_ALL}")
        assert ok.find(f"{{{SM}}}failed") is not None
        assert ok.find(f"{{{BIND2}}}bound/{{{SM}}}enabled") is not None
        # the same user agent id gets the same resource (a stable full JID)
        assert authz(ok) == first_jid
        await c.close()
        # without Bind2: the bare JID, the features offer binding, RFC 6120 binding
        c, _ = await secured(srv.c2s)
        ok = await scram2(c, "bob", "pw-bob")
        assert authz(ok) == "bob@localhost"
        feats = await c.recv()
        assert feats.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is not None
        assert feats.find(f"{{{SM}}}sm") is not None
        assert await c.bind("desk") == "bob@localhost/desk"
        await c.close()
        # failures count across SASL and SASL2 on one stream: the third ends it
        c, _ = await secured(srv.c2s)
        assert local((await c.auth_scram("bob", "wrong")).tag) == "failure"
        assert local((await scram2(c, "bob", "wrong")).tag) == "failure"
        assert local((await c.auth_scram("bob", "wrong")).tag) == "failure"
        assert await c.stream_error() == "policy-violation"
        await c.close()
    run(unknown_session_and_no_bind())
    assert "resumed (client had 0" in srv.log


def test_sasl2_plain_and_limits(make_server: MakeServer) -> None:
    """PLAIN in SASL2 (inside TLS), and Bind2 refused by max_user_sessions."""
    srv = make_server(modules=MODULES, config={"shaper_rules": {"max_user_sessions": 1}})
    srv.register("carol", "pw-carol")
    srv.start()

    async def main() -> None:
        c, _ = await secured(srv.c2s)
        plain = base64.b64encode(b"\0carol\0pw-carol").decode()
        await c.send(f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>"
                     f"{plain}</initial-response><bind xmlns='{BIND2}'/></authenticate>")
        ok = await c.recv()
        assert ok.tag == f"{{{SASL2}}}success", ET.tostring(ok)
        assert ok.find(f"{{{BIND2}}}bound") is not None
        # a second session: Bind2 is refused, the login fails with a reason
        c2, _ = await secured(srv.c2s)
        await c2.send(f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>"
                      f"{plain}</initial-response><bind xmlns='{BIND2}'/></authenticate>")
        no = await c2.recv()
        assert no.tag == f"{{{SASL2}}}failure", ET.tostring(no)
        assert "too many sessions" in (no.findtext(f"{{{SASL2}}}text") or "")
        await c.close()
        await c2.close()
    run(main())


FAST = "urn:xmpp:fast:0"
HT = "HT-SHA-256-NONE"


async def fast_login(port: int, user: str, token: str, agent: str = AGENT,
                     extra: str = "") -> tuple[ET.Element, RawClient]:
    """A FAST login (XEP-0484, HT-SHA-256-NONE) with Bind2."""
    c, _ = await secured(port)
    mac = hmac.new(token.encode(), b"Initiator", "sha256").digest()
    initial = base64.b64encode(user.encode() + b"\0" + mac).decode()
    await c.send(f"<authenticate xmlns='{SASL2}' mechanism='{HT}'><initial-response>{initial}"
                 f"</initial-response>{agent}<fast xmlns='{FAST}'{extra}/>"
                 f"<bind xmlns='{BIND2}'><tag>TestXMPP</tag></bind></authenticate>")
    return await c.recv(), c


def test_fast_tokens(make_server: MakeServer) -> None:
    """A token asked for with a password login logs the same client in again without
    the password; the server proves it knows the token too. Another client id, a wrong
    proof, a changed password or an invalidated token: not-authorized."""
    srv = make_server(modules=MODULES)
    srv.register("alice", "pw-alice")
    srv.start()

    async def main() -> str:
        c, feats = await secured(srv.c2s)
        mech = feats.find(f"{{{SASL2}}}authentication/{{{SASL2}}}inline/{{{FAST}}}fast/"
                          f"{{{FAST}}}mechanism")
        assert mech is not None and mech.text == HT
        ok = await scram2(c, "alice", "pw-alice",
                          f"<request-token xmlns='{FAST}' mechanism='{HT}'/>{BIND_ALL}")
        tok = ok.find(f"{{{FAST}}}token")
        assert tok is not None and tok.get("expiry", "").endswith("Z"), ET.tostring(ok)
        token = tok.get("token", "")
        await c.close()
        # the token logs the client in; the server's proof is checked
        ok, c = await fast_login(srv.c2s, "alice", token)
        assert ok.tag == f"{{{SASL2}}}success", ET.tostring(ok)
        want = hmac.new(token.encode(), b"Responder", "sha256").digest()
        assert base64.b64decode(ok.findtext(f"{{{SASL2}}}additional-data") or "") == want
        assert authz(ok).startswith("alice@localhost/TestXMPP.")
        await c.close()
        # another client id, or a made-up token
        other = AGENT.replace("d4565fa7", "00000000")
        for no, c in (await fast_login(srv.c2s, "alice", token, agent=other),
                      await fast_login(srv.c2s, "alice", "made-up")):
            assert no.tag == f"{{{SASL2}}}failure" and no.find(f"{{{SASL}}}not-authorized") \
                is not None, ET.tostring(no)
            await c.close()
        # invalidate: a last login, then the token is gone
        ok, c = await fast_login(srv.c2s, "alice", token, extra=" invalidate='true'")
        assert ok.tag == f"{{{SASL2}}}success"
        await c.close()
        no, c = await fast_login(srv.c2s, "alice", token)
        assert no.tag == f"{{{SASL2}}}failure"
        await c.close()
        # a fresh token dies with a password change
        c, _ = await secured(srv.c2s)
        ok = await scram2(c, "alice", "pw-alice", f"<request-token xmlns='{FAST}' "
                          f"mechanism='{HT}'/>")
        await c.close()
        return ok.find(f"{{{FAST}}}token").get("token", "")  # type: ignore[union-attr]

    fresh = run(main())
    srv.ctl("change_password", "alice", "localhost", "new-pw")

    async def after() -> None:
        no, c = await fast_login(srv.c2s, "alice", fresh)
        assert no.tag == f"{{{SASL2}}}failure", ET.tostring(no)
        await c.close()
    run(after())
