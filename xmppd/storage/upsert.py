"""INSERT ... ON CONFLICT DO UPDATE (or DO NOTHING) on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
           keys: Sequence[str]) -> None:
    """Insert ``rows``; a row whose ``keys`` exist replaces the other columns."""
    if not rows:
        return
    stmt = _insert(conn)(table)
    cols = [c for c in rows[0] if c not in keys]
    if cols:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in cols})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, list(rows))


def insert_missing(conn: Connection, table: Table, row: dict[str, Any],
                   keys: Sequence[str]) -> None:
    """Insert ``row`` unless a row with its ``keys`` exists (then nothing changes)."""
    conn.execute(_insert(conn)(table).on_conflict_do_nothing(index_elements=list(keys)), [row])


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT with ON CONFLICT."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
