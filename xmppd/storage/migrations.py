"""Versioned schema migrations, one chain per component.

Each store registers its own ordered steps (``component``, ``version``); the
``schema_versions`` table records how far each component got. Steps are
frozen DDL: a later change adds a new step, it never edits an old one. Chains
per component let features evolve their tables independently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.engine import Connection

from .engine import Database

_meta = MetaData()
schema_versions = Table(
    "schema_versions", _meta,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    description: str
    apply: Callable[[Connection], None]


_REGISTRY: dict[str, list[Migration]] = {}


def migration(component: str, version: int, description: str) -> Callable[
        [Callable[[Connection], None]], Callable[[Connection], None]]:
    """Decorator registering ``fn(conn)`` as step ``version`` of ``component``."""
    def deco(fn: Callable[[Connection], None]) -> Callable[[Connection], None]:
        steps = _REGISTRY.setdefault(component, [])
        if any(m.version == version for m in steps):
            raise ValueError(f"duplicate migration {component} v{version}")
        steps.append(Migration(component, version, description, fn))
        steps.sort(key=lambda m: m.version)
        return fn
    return deco


def current_versions(conn: Connection) -> dict[str, int]:
    _meta.create_all(conn, tables=[schema_versions])
    return {row.component: row.version for row in conn.execute(select(schema_versions))}


def migrate_sync(db: Database) -> list[str]:
    """Apply every pending step; return descriptions of what was applied."""
    applied: list[str] = []

    def run(conn: Connection) -> None:
        have = current_versions(conn)
        for component, steps in sorted(_REGISTRY.items()):
            at = have.get(component, 0)
            for step in steps:
                if step.version <= at:
                    continue
                step.apply(conn)
                if at == 0:
                    conn.execute(schema_versions.insert().values(component=component,
                                                                 version=step.version))
                else:
                    conn.execute(schema_versions.update()
                                 .where(schema_versions.c.component == component)
                                 .values(version=step.version))
                at = step.version
                applied.append(f"{component} v{step.version}: {step.description}")

    db.run_sync(run)
    return applied
