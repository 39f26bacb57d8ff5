"""Hot reads on the database driver's own cursor.

A SQLAlchemy ``execute`` costs about 0.1 ms of Python before the driver is
reached (result set-up, events, parameter processing); the read itself takes
10-20 us on SQLite. The few reads done at every login (credentials, roster)
go straight to the driver with SQL written for both dialects, inside the
transaction of :meth:`~xmppd.storage.engine.Database.run_sync`.

SQL is written with ``?`` for a value and ``{in}`` for the list of an ``IN``;
for drivers with the ``format`` style (psycopg) ``?`` becomes ``%s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection


class RawQuery:
    """A fixed ``SELECT`` run on the driver's cursor."""

    __slots__ = ("sql", "_texts")

    def __init__(self, sql: str) -> None:
        if "%" in sql:
            raise ValueError("no literal % in raw SQL: it is a placeholder for some drivers")
        self.sql = sql
        self._texts: dict[tuple[str, int], str] = {}

    def text(self, paramstyle: str, n_in: int = 0) -> str:
        """The SQL for a driver's parameter style and an ``IN`` list of ``n_in`` values."""
        key = (paramstyle, n_in)
        out = self._texts.get(key)
        if out is None:
            mark = "?" if paramstyle == "qmark" else "%s"
            out = self.sql.replace("?", mark).replace("{in}", ", ".join([mark] * n_in))
            if len(self._texts) < 64:  # list lengths vary: keep the common ones
                self._texts[key] = out
        return out

    def rows(self, conn: Connection, params: Sequence[Any],
             in_values: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run the query in ``conn``'s transaction; the IN list comes after ``params``."""
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cur = dbapi.cursor()
        try:
            cur.execute(self.text(conn.dialect.paramstyle, len(in_values)),
                        (*params, *in_values))
            return list(cur.fetchall())
        finally:
            cur.close()
