"""Several worker processes on one machine (``xmppd run --workers N``)."""

from __future__ import annotations

import sys
from typing import Any, Optional

from .config import Config


def run_workers(config: Config, workers: Any, config_path: Optional[str]) -> int:
    print("xmppd: workers: running more than one worker needs the Redis cluster backend, "
          "which is not available yet; use workers: 1", file=sys.stderr)
    return 2
