"""TURN credentials as the TURN REST API describes them (and coturn checks with
``use-auth-secret``): the username is ``EXPIRY:JID`` (EXPIRY in seconds since the
epoch), the password the base64 of the HMAC-SHA-1 of the username under a secret the
XMPP server and the TURN server share.

``mod_stun_disco`` hands them out; xmppd's own TURN listener (``ejabberd_stun``)
checks them. Without a configured ``secret`` both use the local one: made once, kept
in ``DATA_DIR/turn_secret``, so that every worker and every restart agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any, Optional


def turn_credentials(secret: str, user: str, expires: int) -> tuple[str, str]:
    """TURN REST API credentials: (username, password)."""
    username = f"{expires}:{user}"
    return username, password_for(secret, username)


def password_for(secret: str, username: str) -> str:
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def expired(username: str, now: Optional[float] = None) -> bool:
    """Whether a REST API username's expiry (``EXPIRY:...``) has passed, or it has none."""
    head = username.split(":", 1)[0]
    return not head.isdigit() or int(head) < (time.time() if now is None else now)


def local_secret(data_dir: Path) -> str:
    """The secret kept in ``data_dir/turn_secret``, made at the first call (the first
    of several workers to write it wins; the others read it)."""
    path = data_dir / "turn_secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".turn_secret.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(tmp, path)   # atomic, fails if another worker was first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def shared_secret(server: Any) -> str:
    """The secret for ``server``'s TURN credentials: mod_stun_disco's ``secret`` on any
    host that sets one, else the local secret."""
    from ..modules.stun_disco import StunDisco
    for host in server.hosts:
        mod = StunDisco.of(server, host)
        secret = mod.opts["secret"] if mod is not None else None
        if secret:
            return str(secret)
    cached: Optional[str] = getattr(server, "_turn_secret", None)
    if cached is None:
        cached = local_secret(server.config.data_dir)
        server._turn_secret = cached
    return cached
