"""Cluster backends behind one small protocol (see :mod:`xmppd.cluster.base`)."""

from .base import ClusterBackend, SessionEntry
from .memory import MemoryBackend

__all__ = ["ClusterBackend", "MemoryBackend", "SessionEntry"]
