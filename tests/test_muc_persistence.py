"""Persistent rooms come back after a restart, on SQLite and PostgreSQL; archive retention."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import run
from helpers.muc import MUC_MODULES, SERVICE, MucSlix
from helpers.procs import XmppdServer

from xmppd.muc.store import ArchiveRow, MamQuery, MucStore
from xmppd.storage import Database, migrate_sync


@pytest.mark.parametrize("db", ["sqlite", "pgsql"])
def test_persistent_room_survives_restart(make_server: Callable[..., XmppdServer], db: str) -> None:
    srv = make_server(db=db, modules=MUC_MODULES)
    for u in ("alice", "bob", "carol"):
        srv.register(u, "pw-" + u)
    srv.start()
    room = f"keep@{SERVICE}"
    ids: dict[str, str] = {}

    async def before() -> None:
        alice = await MucSlix("alice@localhost/a", "pw-alice").login(srv.c2s)
        pres, _, _, _ = await alice.join(room, "Alice")
        ids["alice"] = pres["occupant-id"]["id"]
        await alice.configure(room, **{"muc#roomconfig_persistentroom": True,
                                       "muc#roomconfig_membersonly": True,
                                       "muc#roomconfig_roomname": "Keepers"})
        await alice.muc.set_affiliation(room, "member", jid="bob@localhost", timeout=10)
        await alice.muc.set_affiliation(room, "outcast", jid="carol@localhost", timeout=10)
        alice.muc.set_subject(room, "Kept subject")
        for n in range(3):
            alice.send_message(mto=room, mbody=f"kept {n}", mtype="groupchat")
        for _ in range(3):
            await alice.next_body()
        await alice.logout()
    run(before())
    srv.stop()
    srv.start()

    async def after() -> None:
        bob = await MucSlix("bob@localhost/b", "pw-bob").login(srv.c2s)
        carol = await MucSlix("carol@localhost/c", "pw-carol").login(srv.c2s)
        info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
        feats = info["disco_info"]["features"]
        assert "muc_persistent" in feats and "muc_membersonly" in feats
        assert [i[3] for i in info["disco_info"]["identities"]] == ["Keepers"]
        # affiliations came back: bob is a member, carol is banned
        pres, subject, _, history = await bob.join(room, "Bob")
        assert pres["muc"]["affiliation"] == "member"
        assert subject["subject"] == "Kept subject"
        assert [h["body"] for h in history] == ["kept 0", "kept 1", "kept 2"]
        import slixmpp.exceptions
        with pytest.raises(slixmpp.exceptions.PresenceError) as e:
            await carol.join(room, "Carol")
        assert e.value.condition == "forbidden"
        got = [m["mam_result"]["forwarded"]["stanza"]["body"]
               async for m in bob.plugin["xep_0313"].iterate(jid=room)]
        assert got == ["kept 0", "kept 1", "kept 2"]
        # the owner is still owner
        alice = await MucSlix("alice@localhost/a", "pw-alice").login(srv.c2s)
        pres, _, _, _ = await alice.join(room, "Alice")
        assert pres["muc"]["affiliation"] == "owner"
        # the occupant id (XEP-0421) is the same after the restart: the key is stored
        assert ids["alice"] and pres["occupant-id"]["id"] == ids["alice"]
        assert [h["occupant-id"]["id"] for h in history] == [ids["alice"]] * 3
        await bob.logout()
        await carol.logout()
        await alice.logout()
    run(after())


def test_temporary_room_is_gone_when_empty(make_server: Callable[..., XmppdServer]) -> None:
    srv = make_server(modules=MUC_MODULES)
    srv.register("alice", "pw-alice")
    srv.start()
    room = f"fleeting@{SERVICE}"

    async def main() -> None:
        alice = await MucSlix("alice@localhost/a", "pw-alice").login(srv.c2s)
        await alice.join(room, "Alice")
        await alice.instant(room)
        alice.muc.leave_muc(room, "Alice")
        await alice.presence_from(f"{room}/Alice", "unavailable")
        import slixmpp.exceptions
        with pytest.raises(slixmpp.exceptions.IqError) as e:
            await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert e.value.condition == "item-not-found"
        await alice.logout()
    run(main())


def _store_roundtrip(db: Database) -> None:
    migrate_sync(db)
    store = MucStore(db, "conference.example")
    snap = {"config": {"persistent": True, "title": "T"}, "subject": "s", "subject_nick": "n",
            "vcard": None, "created": 1700000000.5,
            "affiliations": {"a@example": ("owner", ""), "b@example": ("outcast", "spam")}}
    db.run_sync(lambda c: store.save_room(c, "r", snap))
    db.run_sync(lambda c: store.save_room(c, "r", snap))   # saving twice replaces
    got = db.run_sync(lambda c: store.load_room(c, "r"))
    assert got is not None and got["config"]["title"] == "T"
    assert got["affiliations"] == {"a@example": ("owner", ""), "b@example": ("outcast", "spam")}
    now = time.time()
    rows = [ArchiveRow(f"id{n}", now - 100 + n, "nick", "a@example", f"b{n}",
                       f"<message xmlns='jabber:client' type='groupchat'><body>b{n}</body></message>")
            for n in range(10)]
    old = ArchiveRow("old", now - 10 * 86400, "nick", "a@example", "old", "<message/>")
    db.run_sync(lambda c: store.archive(c, "r", [old] + rows))
    page, complete, count = db.run_sync(lambda c: store.query(c, "r", MamQuery(
        max=4, not_before=now - 86400)))
    assert [p[2] for p in page] == ["id0", "id1", "id2", "id3"] and not complete and count == 10
    page, complete, _ = db.run_sync(lambda c: store.query(c, "r", MamQuery(
        max=4, rsm_after="id7", not_before=0)))
    assert [p[2] for p in page] == ["id8", "id9"] and complete
    page, complete, _ = db.run_sync(lambda c: store.query(c, "r", MamQuery(
        max=3, rsm_before="", not_before=0)))
    assert [p[2] for p in page] == ["id7", "id8", "id9"] and not complete
    recent = db.run_sync(lambda c: store.recent(c, "r", 2, now - 86400))
    assert [x for x, _ in recent][-1].endswith("<body>b9</body></message>") and len(recent) == 2
    assert db.run_sync(lambda c: store.expire(c, now - 86400)) == 1
    db.run_sync(lambda c: store.delete_room(c, "r", True))
    assert db.run_sync(lambda c: store.load_room(c, "r")) is None
    assert db.run_sync(lambda c: store.query(c, "r", MamQuery(not_before=0)))[2] == 0


def test_store_sqlite(tmp_path: Path) -> None:
    db = Database.sqlite(tmp_path / "muc.db")
    try:
        _store_roundtrip(db)
    finally:
        db.close()


def test_store_postgresql(postgres) -> None:  # type: ignore[no-untyped-def]
    db = Database.postgresql(host="127.0.0.1", port=postgres.port,
                             database=postgres.create_database(), username="postgres",
                             password="", pool_size=2)
    try:
        _store_roundtrip(db)
    finally:
        db.close()


def test_archive_expiry_option(make_server: Callable[..., XmppdServer]) -> None:
    """Retention: with archive_expiry of 1 second, old messages leave archive and history."""
    modules = dict(MUC_MODULES)
    modules["mod_muc"] = {"archive_expiry": 1}
    srv = make_server(modules=modules)
    srv.register("alice", "pw-alice")
    srv.start()
    room = f"brief@{SERVICE}"

    async def main() -> None:
        alice = await MucSlix("alice@localhost/a", "pw-alice").login(srv.c2s)
        await alice.join(room, "Alice")
        await alice.configure(room, **{"muc#roomconfig_persistentroom": True})
        alice.send_message(mto=room, mbody="ephemeral", mtype="groupchat")
        await alice.next_body()
        got = [m async for m in alice.plugin["xep_0313"].iterate(jid=room)]
        assert len(got) == 1
        await asyncio.sleep(1.5)
        got = [m async for m in alice.plugin["xep_0313"].iterate(jid=room)]
        assert got == []
        await alice.logout()
    run(main())
