"""Cluster backends behind one small protocol (see :mod:`xmppd.cluster.base`)."""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

from .base import ClusterBackend, SessionEntry
from .memory import MemoryBackend

__all__ = ["ClusterBackend", "MemoryBackend", "SessionEntry", "backend_from_config",
           "default_node_name"]


def default_node_name() -> str:
    return "xmppd@" + socket.gethostname()


def backend_from_config(config: Any, node: str) -> Any:
    """``sm_db_type: redis`` (or a private Redis from ``xmppd run --workers``) -> Redis."""
    unix_socket: Optional[str] = os.environ.get("XMPPD_REDIS_SOCKET")
    if config["sm_db_type"] == "redis" or unix_socket:
        from .redis import RedisBackend
        return RedisBackend(node, host=config["redis_server"], port=config["redis_port"],
                            db=config["redis_db"], password=config["redis_password"],
                            unix_socket=unix_socket)
    return MemoryBackend(node)
