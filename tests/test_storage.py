"""Storage on both backends: migrations and accounts (SCRAM keys only)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import text

from xmppd.c2s.scram import check_password
from xmppd.storage import Database, migrate_sync
from xmppd.storage.accounts import AccountError, AccountStore


@pytest.fixture(params=["sqlite", "pgsql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        d = Database.sqlite(tmp_path / "x.db")
    else:
        pg = request.getfixturevalue("postgres")
        d = Database.postgresql(host="127.0.0.1", port=pg.port, database=pg.create_database(),
                                username="postgres", password="", pool_size=2)
    yield d
    d.close()


def test_migrations_apply_once(db: Database) -> None:
    first = migrate_sync(db)
    assert any(a.startswith("accounts v1") for a in first)
    assert migrate_sync(db) == []
    versions = db.run_sync(lambda c: dict(c.execute(text(
        "SELECT component, version FROM schema_versions")).all()))
    assert versions["accounts"] >= 1


def test_accounts_store_only_scram_keys(db: Database) -> None:
    migrate_sync(db)
    store = AccountStore(db, iterations=4096)
    assert store.create_sync("localhost", "Alice", "s3cret-pässword")
    assert not store.create_sync("localhost", "alice", "other")  # same user after nodeprep
    row = db.run_sync(lambda c: c.execute(text("SELECT * FROM users")).mappings().one())
    blob = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert b"s3cret" not in blob and "s3cret-pässword".encode() not in blob
    creds = store.get_sync("localhost", "ALICE")
    assert creds is not None
    assert check_password("s3cret-pässword", creds.sha1, "sha1")
    assert check_password("s3cret-pässword", creds.sha256, "sha256")
    assert not check_password("wrong", creds.sha256, "sha256")
    assert store.set_password_sync("localhost", "alice", "new")
    creds = store.get_sync("localhost", "alice")
    assert creds is not None and check_password("new", creds.sha256, "sha256")
    assert store.list_sync("localhost") == ["alice"]
    assert store.list_sync("other.host") == []
    assert store.delete_sync("localhost", "alice")
    assert store.get_sync("localhost", "alice") is None
    with pytest.raises(AccountError):
        store.create_sync("localhost", "bad user", "x")


def test_bulk_create(db: Database) -> None:
    migrate_sync(db)
    store = AccountStore(db, iterations=4096)
    store.create_sync("localhost", "u0", "existing")
    pairs = [(f"u{i}", f"p{i}") for i in range(200)] + [("bad user", "x")]
    created, skipped = store.create_bulk_sync("localhost", pairs)
    assert (created, skipped) == (199, 2)
    assert store.count_sync("localhost") == 200
    creds = store.get_sync("localhost", "u150")
    assert creds is not None and check_password("p150", creds.sha1, "sha1")


def test_concurrent_lookups_are_batched_and_exact(db: Database) -> None:
    """Logins look credentials up together; each gets its own user's keys."""
    import asyncio

    migrate_sync(db)
    store = AccountStore(db, iterations=4096)
    store.create_bulk_sync("localhost", [(f"b{i}", f"pw{i}") for i in range(120)], processes=1)
    store.create_sync("other.host", "b1", "elsewhere")
    calls = []
    real = store.get_many_sync

    def counting(keys):  # type: ignore[no-untyped-def]
        calls.append(len(list(keys)))
        return real(keys)
    store.get_many_sync = counting  # type: ignore[method-assign]

    async def main() -> list[object]:
        names = [f"B{i}" for i in range(120)] + ["b7", "nobody", "bad user"]
        got = await asyncio.gather(*(store.get("localhost", n) for n in names),
                                   store.get("other.host", "b1"), store.get("none.host", "b1"))
        return list(got)

    got = asyncio.run(main())
    for i in range(120):
        creds = got[i]
        assert creds is not None and check_password(f"pw{i}", creds.sha1, "sha1")  # type: ignore[attr-defined]
    assert got[120] == got[7]  # the same user twice in one batch
    assert got[121] is None and got[122] is None  # unknown and invalid names
    assert check_password("elsewhere", got[123].sha1, "sha1")  # type: ignore[union-attr]
    assert got[124] is None
    assert sum(calls) < len(got) and len(calls) <= 3  # batched, not one query per login


def test_rosters_of_many_users_load_in_one_transaction(db: Database) -> None:
    """Logins read rosters together on the driver's cursor: each user gets the items,
    flags and version written for them, and a user without a roster an empty one."""
    from xmppd.presence.roster_store import ItemRow, RosterStore
    from xmppd.presence.subscription import SubState

    migrate_sync(db)
    store = RosterStore(db)
    ann = [
        ItemRow("bob@localhost", "Bob", ("Friends", "Wörk"), SubState("both"), True, 3,
                None, None),
        ItemRow("eve@other.host", None, (), SubState("none", False, True, False), False, 5,
                "<presence type='subscribe'/>", None),
    ]
    bob = [ItemRow("ann@localhost", None, (), SubState("to", True, False, True), True, 1,
                   None, "subscribed")]
    store.put_many_sync("localhost", "ann", ann, 7)
    store.put_many_sync("localhost", "bob", bob, 2)
    store.put_many_sync("other.host", "ann", [
        ItemRow("x@localhost", None, (), SubState("from"), True, 1, None, None)], 1)
    many = db.run_sync(lambda c: RosterStore.load_many_sync(
        c, "localhost", ["ann", "bob", "nobody"]))
    assert set(many) == {"ann", "bob", "nobody"}
    assert many["ann"][0] == 7 and sorted(many["ann"][1], key=lambda r: r.contact) == ann
    assert many["bob"] == (2, bob)
    assert many["nobody"] == (0, [])
