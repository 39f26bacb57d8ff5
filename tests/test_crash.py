"""Durability: what the server acknowledged survives kill -9 (SQLite and PostgreSQL).

The crash test: a sender with stream management sends 2,000 messages to an offline and
an online recipient while the server process is killed with SIGKILL at a random moment;
after a restart every message the sender saw acknowledged reaches its recipient, once,
in order. The online recipient may see again a message it had received just before the
crash (the server died before it recorded the client's ack); such a copy carries the same
XEP-0359 stanza-id, by which clients recognise it, and is checked for here.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Callable

import pytest
from conftest import run
from helpers.procs import XmppdServer
from helpers.smclient import SMClient, body, stanza_id

MODULES = {"mod_disco": {}, "mod_stream_mgmt": {}, "mod_offline": {}, "mod_receipts": {}}
CONFIG = {"shaper_rules": {"max_user_offline_messages": 100000}}
N = 2000


def make(make_server: Callable[..., XmppdServer], db: str) -> XmppdServer:
    srv = make_server(db, modules=MODULES, config=CONFIG)
    for user in ("sender", "ron", "olga"):
        srv.register(user, "pw")
    return srv.start()


def msg(to: str, text: str, i: int) -> str:
    return (f"<message to='{to}' type='chat' id='c{i}'><body>{text}</body>"
            f"<origin-id xmlns='urn:xmpp:sid:0' id='o{i}'/></message>")


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_acked_message_to_a_silent_recipient_survives_kill_9(
        make_server: Callable[..., XmppdServer], db: str) -> None:
    srv = make(make_server, db)

    async def before() -> str:
        ron = await SMClient(srv.c2s, "ron", "pw", "phone").connect()
        ron.mute = True  # receives, never acknowledges
        s = await SMClient(srv.c2s, "sender", "pw").connect()
        await s.send(msg("ron@localhost", "do not lose me", 1))
        await s.wait_acked()
        (m,) = await ron.messages(1)
        sid = stanza_id(m)
        assert sid is not None
        return sid

    sid = run(before())
    srv.kill()
    srv.start()

    async def after() -> None:
        ron = await SMClient(srv.c2s, "ron", "pw", "phone").connect()
        (m,) = await ron.messages(1)
        assert body(m) == "do not lose me" and stanza_id(m) == sid
        assert m.find("{urn:xmpp:delay}delay") is not None
        assert await ron.quiet(0.7) == []
        await ron.close()
    run(after())
    assert "routed again 1 messages" in srv.log


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_crash_during_2000_messages_loses_no_acknowledged_message(
        make_server: Callable[..., XmppdServer], db: str) -> None:
    srv = make(make_server, db)
    rnd = random.Random()
    kill_at = rnd.randint(N // 10, N - N // 10)  # acknowledged messages before the kill

    async def before() -> tuple[list[str], list[tuple[str, str]]]:
        ron = await SMClient(srv.c2s, "ron", "pw", "phone").connect()
        s = await SMClient(srv.c2s, "sender", "pw").connect()
        killed = asyncio.Event()

        async def killer() -> None:
            while s.server_h < kill_at:
                await asyncio.sleep(0.001)
            await asyncio.sleep(rnd.random() * 0.005)
            srv.kill()
            killed.set()
        task = asyncio.ensure_future(killer())
        try:
            for i in range(N):
                to = "olga" if i % 2 else "ron"
                await s.send(msg(f"{to}@localhost", f"{to} {i}", i))
                if i % 10 == 9:
                    await s.request_ack()
                    await asyncio.sleep(0)
                while len(s.unacked) > 100 and not killed.is_set():
                    await asyncio.sleep(0.001)  # a window of unacknowledged messages
                if killed.is_set():
                    break
            await s.request_ack()
            await asyncio.wait_for(killed.wait(), 30)
        except (ConnectionError, OSError):
            pass
        await task
        await asyncio.sleep(0.2)
        got = [(body(m) or "", stanza_id(m) or "") for m in await ron.quiet(0.2)
               if m.tag.endswith("message")]
        return [body_of(x) for x in s.acked_log if "<message" in x], got

    acked, ron_before = run(before(), timeout=120)
    assert 0 < len(acked) < N, "the kill must come in the middle"
    srv.start()

    async def after() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        ron = await SMClient(srv.c2s, "ron", "pw", "phone").connect()
        olga = await SMClient(srv.c2s, "olga", "pw", "tablet").connect()
        out = []
        for c in (ron, olga):
            got = []
            while True:
                batch = await c.quiet(1.5)
                if not batch:
                    break
                got.extend((body(m) or "", stanza_id(m) or "") for m in batch
                           if m.tag.endswith("message"))
            out.append(got)
            await c.close()
        return out[0], out[1]

    ron_after, olga_got = run(after(), timeout=120)
    acked_ron = [a for a in acked if a.startswith("ron ")]
    acked_olga = [a for a in acked if a.startswith("olga ")]

    # the offline recipient: every acknowledged message exactly once, in order
    olga_bodies = [b for b, _ in olga_got]
    assert len(olga_bodies) == len(set(olga_bodies)), "olga got a duplicate"
    assert set(acked_olga) <= set(olga_bodies), "an acknowledged message to olga was lost"
    assert olga_bodies == sorted(olga_bodies, key=number)

    # the online recipient: every acknowledged message, in order; a second copy only of
    # a message received right before the crash, with the same stanza-id
    first_seen: dict[str, str] = {}
    for b, sid in ron_before:
        assert b not in first_seen, "a duplicate while the server was up"
        first_seen[b] = sid
    for b, sid in ron_after:
        if b in first_seen:
            assert sid == first_seen[b], f"{b} came again with another stanza-id"
            assert b not in [x for x, _ in ron_after[:ron_after.index((b, sid))]]
        else:
            first_seen[b] = sid
    assert set(acked_ron) <= set(first_seen), "an acknowledged message to ron was lost"
    unique = list(first_seen)
    assert unique == sorted(unique, key=number), "ron's messages are out of order"
    again = [b for b, _ in ron_after if b in {x for x, _ in ron_before}]
    print(f"crash test ({db}): killed after {len(acked)} acknowledged messages; olga got "
          f"{len(olga_bodies)}, ron {len(ron_before)} before and {len(ron_after)} after the "
          f"restart, {len(again)} of them again")


def number(text: str) -> int:
    return int(text.split()[-1])


def body_of(stanza: str) -> str:
    m = re.search(r"<body>(.*?)</body>", stanza)
    return m.group(1) if m else ""

