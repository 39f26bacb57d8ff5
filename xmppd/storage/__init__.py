"""Storage: engine, versioned migrations and small per-feature stores."""

from .engine import Database, database_from_config
from .migrations import migrate_sync, migration

__all__ = ["Database", "database_from_config", "migrate_sync", "migration"]
