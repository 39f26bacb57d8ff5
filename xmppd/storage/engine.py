"""Database engine: SQLAlchemy 2 on SQLite (embedded default) or PostgreSQL.

All database work runs in worker threads (a single writer thread for SQLite,
``sql_pool_size`` threads for PostgreSQL) so the event loop never blocks on
SQL. ``Database.run(fn)`` runs ``fn(connection)`` in one transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine

from .batch import GroupCommit

T = TypeVar("T")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a process crash (kill -9); FULL adds power-loss safety
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.close()


class Database:
    """A SQLAlchemy engine plus the threads that run queries on it."""

    def __init__(self, engine: Engine, threads: int) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.threads = threads
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="xmppd-db")
        self._closed = False
        self._lock = threading.Lock()
        self._batch: Optional[GroupCommit] = None

    @property
    def batch(self) -> GroupCommit:
        """The shared group-commit queue (see :mod:`xmppd.storage.batch`)."""
        if self._batch is None:
            self._batch = GroupCommit(self)
        return self._batch

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 15},
            pool_size=2, max_overflow=2,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return cls(engine, 1)

    @classmethod
    def postgresql(cls, *, host: str, port: Optional[int], database: str, username: str,
                   password: str, pool_size: int = 10) -> Database:
        url = URL.create("postgresql+psycopg", username=username, password=password or None,
                         host=host, port=port or 5432, database=database)
        engine = create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)
        return cls(engine, pool_size)

    def run_sync(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return fn(conn)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.run_sync, fn)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (which may call :meth:`run_sync`) in a database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    async def flush(self) -> None:
        """Wait for queued group-commit writes (before closing)."""
        if self._batch is not None:
            await self._batch.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=True)
        self.engine.dispose()


def database_from_config(cfg: Any) -> Database:
    """Build the database named by ``sql_type`` and friends in the config."""
    if cfg["sql_type"] == "pgsql":
        return Database.postgresql(
            host=cfg["sql_server"], port=cfg["sql_port"],
            database=cfg["sql_database"] or "ejabberd", username=cfg["sql_username"],
            password=cfg["sql_password"], pool_size=cfg["sql_pool_size"],
        )
    return Database.sqlite(cfg.sql_database_path)
