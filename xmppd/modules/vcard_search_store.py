"""The index of the vCard user directory (XEP-0055, mod_vcard ``search: true``): table
``vcard_search``, as ejabberd's SQL backend has it.

A row per account that stored a vCard: the searchable fields twice, as written
(``fn``, ``family``, ...: what a result shows) and lowercased (``lfn``, ``lfamily``,
...: what a search compares). mod_vcard writes the row with every stored vCard and
deletes it with the account; a migration step fills it from the vCards stored before
the table existed.

A search compares lowercased values: equal, or, for a value ending in ``*``, starting
with the rest (SQL ``LIKE`` with ``%`` and ``_`` of the value escaped: they match
themselves). Every field given must match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

from sqlalchemy import (
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    delete,
    select,
    tuple_,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ..storage import Database, migration
from ..storage.upsert import upsert
from ..xml import Element
from ..xmlstream import parse_xml

NS = "vcard-temp"

# the indexed vCard fields: column -> path of element names in the vCard
PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "fn": (("FN",),),
    "family": (("N", "FAMILY"),),
    "given": (("N", "GIVEN"),),
    "middle": (("N", "MIDDLE"),),
    "nickname": (("NICKNAME",),),
    "bday": (("BDAY",),),
    "ctry": (("ADR", "CTRY"),),
    "locality": (("ADR", "LOCALITY"),),
    "email": (("EMAIL", "USERID"), ("EMAIL",)),
    "orgname": (("ORG", "ORGNAME"),),
    "orgunit": (("ORG", "ORGUNIT"),),
}
# search field (XEP-0055 / ejabberd form names) -> column
SEARCH_FIELDS: dict[str, str] = {
    "user": "username", "fn": "fn", "first": "given", "middle": "middle", "last": "family",
    "nick": "nickname", "bday": "bday", "ctry": "ctry", "locality": "locality",
    "email": "email", "orgname": "orgname", "orgunit": "orgunit",
}
# result field -> column (``jid`` is made of username and server_host)
RESULT_FIELDS: dict[str, str] = {
    "fn": "fn", "last": "family", "first": "given", "middle": "middle", "nick": "nickname",
    "bday": "bday", "ctry": "ctry", "locality": "locality", "email": "email",
    "orgname": "orgname", "orgunit": "orgunit",
}

meta = MetaData()
vcard_search = Table(
    "vcard_search", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("lusername", String(1023), nullable=False),
    *(c for name in PATHS for c in (Column(name, Text, nullable=False),
                                    Column("l" + name, Text, nullable=False))),
    PrimaryKeyConstraint("server_host", "username"),
)


def fields_of(card: Element) -> dict[str, str]:
    """The indexed fields of a vCard (an absent one is ``""``); of repeated elements
    (several ADR or EMAIL) the first that has the field counts."""
    out: dict[str, str] = {}
    for column, paths in PATHS.items():
        out[column] = next((v for path in paths for v in _values(card, path) if v), "")
    return out


def _values(el: Element, path: tuple[str, ...]) -> Iterable[str]:
    """The stripped text of every element at ``path`` below ``el`` (names in any
    namespace, as clients write vCards in vcard-temp or, wrongly, none)."""
    for child in el.elements():
        if child.name == path[0]:
            if len(path) == 1:
                # an element that only holds others (EMAIL with USERID) has no text
                yield child.text.strip()
            else:
                yield from _values(child, path[1:])


def row_of(host: str, user: str, card: Element) -> dict[str, str]:
    """The index row of ``user@host``'s vCard."""
    row = {"server_host": host, "username": user, "lusername": user.lower()}
    for column, value in fields_of(card).items():
        row[column] = value
        row["l" + column] = value.lower()
    return row


@migration("vcard_search", 1, "vcard_search: the vCard user directory (XEP-0055)")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[vcard_search])


@migration("vcard_search", 2, "vcard_search: indexing the vCards stored before")
def _v2(conn: Connection) -> None:
    if not sa_inspect(conn).has_table("vcard"):
        return
    from .xml_store import vcard
    after = ("", "")
    while True:  # a page at a time: vCards with photos are big
        page = conn.execute(
            select(vcard.c.server_host, vcard.c.username, vcard.c.data)
            .where(vcard.c.namespace == NS,
                   tuple_(vcard.c.server_host, vcard.c.username) > tuple_(*after))
            .order_by(vcard.c.server_host, vcard.c.username).limit(200)).fetchall()
        if not page:
            return
        rows = []
        for host, user, data in page:
            card = parse_xml(str(data))
            if card is not None:
                rows.append(row_of(str(host), str(user), card))
        upsert(conn, vcard_search, rows, ("server_host", "username"))
        after = (str(page[-1][0]), str(page[-1][1]))


def condition(field: str, value: str) -> Optional[ColumnElement[bool]]:
    """The SQL condition of one search field (None for an unknown field or an empty
    value; a lone ``*`` is empty too)."""
    column = SEARCH_FIELDS.get(field)
    value = value.strip().lower()
    if column is None or value in ("", "*"):
        return None
    col = vcard_search.c["l" + column]
    if value.endswith("*"):
        return col.startswith(value[:-1], autoescape=True)
    return col == value


class SearchIndex:
    """The ``vcard_search`` rows: written with every vCard, searched by the directory."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, host: str, user: str, card: Element) -> None:
        row = row_of(host, user, card)
        await self.db.run(lambda conn: upsert(conn, vcard_search, [row],
                                               ("server_host", "username")))

    async def delete_user(self, host: str, user: str) -> None:
        t = vcard_search
        await self.db.run(lambda conn: conn.execute(delete(t).where(
            t.c.server_host == host, t.c.username == user)))

    async def search(self, hosts: Sequence[str], criteria: dict[str, str],
                     limit: Optional[int]) -> list[dict[str, str]]:
        """The entries of ``hosts`` matching every one of ``criteria`` (search field ->
        value), at most ``limit`` (None: all), by host and user; each entry by result
        field, ``jid`` included. No criterion matches every entry."""
        t = vcard_search
        conds = [c for c in (condition(f, v) for f, v in criteria.items()) if c is not None]
        cols = [t.c.server_host, t.c.username] + [t.c[c] for c in RESULT_FIELDS.values()]
        query = (select(*cols).where(t.c.server_host.in_(list(hosts)), *conds)
                 .order_by(t.c.server_host, t.c.username))
        if limit is not None:
            query = query.limit(limit)
        rows = await self.db.run(lambda conn: conn.execute(query).fetchall())
        out = []
        for row in rows:
            entry = {"jid": f"{row[1]}@{row[0]}"}
            for i, field in enumerate(RESULT_FIELDS):
                entry[field] = str(row[2 + i])
            out.append(entry)
        return out
