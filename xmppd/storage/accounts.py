"""Accounts: SCRAM keys (SHA-1 and SHA-256) per user; never the password."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..c2s.scram import ScramKeys, derive_keys
from ..jid import JIDError, nodeprep
from .batched import BatchedReads
from .engine import Database
from .migrations import migration
from .rawsql import RawQuery

meta = MetaData()
users = Table(
    "users", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("sha1_salt", LargeBinary, nullable=False),
    Column("sha1_iterations", Integer, nullable=False),
    Column("sha1_stored_key", LargeBinary, nullable=False),
    Column("sha1_server_key", LargeBinary, nullable=False),
    Column("sha256_salt", LargeBinary, nullable=False),
    Column("sha256_iterations", Integer, nullable=False),
    Column("sha256_stored_key", LargeBinary, nullable=False),
    Column("sha256_server_key", LargeBinary, nullable=False),
    PrimaryKeyConstraint("server_host", "username"),
)


# read at every login: on the driver's cursor (see rawsql)
_CREDENTIALS = RawQuery(
    "SELECT username, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,"
    " sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key"
    " FROM users WHERE server_host = ? AND username IN ({in})")


@migration("accounts", 1, "users table with SCRAM keys")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[users])


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    sha1: ScramKeys
    sha256: ScramKeys

    def for_hash(self, hashname: str) -> ScramKeys:
        return self.sha1 if hashname == "sha1" else self.sha256


def normalize_username(username: str) -> str:
    try:
        return nodeprep(username)
    except JIDError as e:
        raise AccountError(f"invalid username {username!r}: {e}") from None


def make_credentials(password: str, iterations: int = 4096) -> Credentials:
    """PBKDF2 for both hashes: CPU-heavy, run off the event loop."""
    if not password:
        raise AccountError("empty password")
    try:
        return Credentials(derive_keys(password, "sha1", iterations),
                           derive_keys(password, "sha256", iterations))
    except ValueError as e:
        raise AccountError(str(e)) from None


def _row_values(host: str, user: str, c: Credentials) -> dict[str, object]:
    return {
        "server_host": host, "username": user, "created_at": int(time.time()),
        "sha1_salt": c.sha1.salt, "sha1_iterations": c.sha1.iterations,
        "sha1_stored_key": c.sha1.stored_key, "sha1_server_key": c.sha1.server_key,
        "sha256_salt": c.sha256.salt, "sha256_iterations": c.sha256.iterations,
        "sha256_stored_key": c.sha256.stored_key, "sha256_server_key": c.sha256.server_key,
    }


def _bulk_worker(args: tuple[str, str, int]) -> tuple[str, Credentials]:
    user, password, iterations = args
    return user, make_credentials(password, iterations)


class AccountStore:
    """Create, delete and look up accounts."""

    def __init__(self, db: Database, iterations: int = 4096) -> None:
        self.db = db
        self.iterations = iterations
        # credential lookups (one per login) are batched: those asked for while
        # a query runs go together in the next one (one thread hop, one query)
        self._reads: BatchedReads[tuple[str, str], Credentials] = BatchedReads(
            lambda keys: db.call(self.get_many_sync, keys), db.threads)

    # -- sync API (usable without an event loop: the ctl command) --------
    def create_sync(self, host: str, username: str, password: str) -> bool:
        user = normalize_username(username)
        creds = make_credentials(password, self.iterations)

        def run(conn: Connection) -> bool:
            try:
                with conn.begin_nested():
                    conn.execute(insert(users).values(**_row_values(host, user, creds)))
            except IntegrityError:
                return False
            return True
        return self.db.run_sync(run)

    def delete_sync(self, host: str, username: str) -> bool:
        user = normalize_username(username)
        return self.db.run_sync(lambda conn: conn.execute(
            delete(users).where(users.c.server_host == host, users.c.username == user)
        ).rowcount > 0)

    def set_password_sync(self, host: str, username: str, password: str) -> bool:
        user = normalize_username(username)
        creds = make_credentials(password, self.iterations)
        vals = _row_values(host, user, creds)
        del vals["created_at"], vals["server_host"], vals["username"]
        return self.db.run_sync(lambda conn: conn.execute(
            update(users).where(users.c.server_host == host, users.c.username == user).values(**vals)
        ).rowcount > 0)

    def list_sync(self, host: str) -> list[str]:
        return self.db.run_sync(lambda conn: [r[0] for r in conn.execute(
            select(users.c.username).where(users.c.server_host == host).order_by(users.c.username))])

    def count_sync(self, host: str) -> int:
        return self.db.run_sync(lambda conn: conn.execute(
            select(func.count()).select_from(users).where(users.c.server_host == host)).scalar_one())

    def get_sync(self, host: str, username: str) -> Optional[Credentials]:
        try:
            user = normalize_username(username)
        except AccountError:
            return None

        def run(conn: Connection) -> Optional[Credentials]:
            r = conn.execute(select(users).where(users.c.server_host == host,
                                                 users.c.username == user)).first()
            if r is None:
                return None
            return Credentials(
                ScramKeys(r.sha1_salt, r.sha1_iterations, r.sha1_stored_key, r.sha1_server_key),
                ScramKeys(r.sha256_salt, r.sha256_iterations, r.sha256_stored_key,
                          r.sha256_server_key),
            )
        return self.db.run_sync(run)

    def create_bulk_sync(self, host: str, pairs: Iterable[tuple[str, str]],
                         processes: Optional[int] = None) -> tuple[int, int]:
        """Create many accounts; key derivation runs on every core.

        Returns (created, skipped because they exist or are invalid).
        """
        work = []
        skipped = 0
        for username, password in pairs:
            try:
                work.append((normalize_username(username), password, self.iterations))
            except AccountError:
                skipped += 1
        n = processes or os.cpu_count() or 1
        rows = []
        if n > 1 and len(work) > 64:
            with concurrent.futures.ProcessPoolExecutor(n) as pool:
                for user, creds in pool.map(_bulk_worker, work, chunksize=64):
                    rows.append(_row_values(host, user, creds))
        else:
            for item in work:
                user, creds = _bulk_worker(item)
                rows.append(_row_values(host, user, creds))

        def run(conn: Connection) -> int:
            existing = {r[0] for r in conn.execute(
                select(users.c.username).where(users.c.server_host == host))}
            fresh = [r for r in rows if r["username"] not in existing]
            seen: set[object] = set()
            unique = []
            for r in fresh:
                if r["username"] not in seen:
                    seen.add(r["username"])
                    unique.append(r)
            for i in range(0, len(unique), 1000):
                conn.execute(insert(users), unique[i:i + 1000])
            return len(unique)
        created = self.db.run_sync(run)
        return created, skipped + len(rows) - created

    # -- async API (the server) ---------------------------------------------
    def get_many_sync(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Credentials]:
        """Credentials of many (host, normalized username) pairs in one transaction."""
        by_host: dict[str, list[str]] = {}
        for host, user in keys:
            by_host.setdefault(host, []).append(user)

        def run(conn: Connection) -> dict[tuple[str, str], Credentials]:
            out = {}
            for host, names in by_host.items():
                for i in range(0, len(names), 500):
                    for r in _CREDENTIALS.rows(conn, (host,), names[i:i + 500]):
                        out[(host, r[0])] = Credentials(
                            ScramKeys(bytes(r[1]), r[2], bytes(r[3]), bytes(r[4])),
                            ScramKeys(bytes(r[5]), r[6], bytes(r[7]), bytes(r[8])),
                        )
            return out
        return self.db.run_sync(run)

    async def get(self, host: str, username: str) -> Optional[Credentials]:
        try:
            user = normalize_username(username)
        except AccountError:
            return None
        return await self._reads.get((host, user))

    async def create(self, host: str, username: str, password: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            None, self.create_sync, host, username, password)

    async def delete(self, host: str, username: str) -> bool:
        return await self.db.call(self.delete_sync, host, username)

    async def set_password(self, host: str, username: str, password: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            None, self.set_password_sync, host, username, password)

    async def list(self, host: str) -> list[str]:
        return await self.db.call(self.list_sync, host)
