"""Unforgeable upload slots: random file ids and HMAC-signed PUT tokens.

A slot's PUT URL carries ``?token=<expires>.<signature>``; the signature is an
HMAC-SHA256, under a server secret, of the file id, the file name, the size,
the content type and the expiry time. Nobody without the secret can make a
URL the server accepts, nor change what an issued one allows. The secret
comes from the configuration or is generated once and kept in the data
directory (mode 0600). Single use is enforced by the slot store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
import unicodedata
from pathlib import Path
from typing import Optional

_ALPHABET = string.ascii_letters + string.digits
SECRET_FILE = "upload_secret"


def new_id(length: int) -> str:
    """A random URL-safe id: ``length`` letters and digits (~5.95 bits each)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def user_hash(mode: str, bare_jid: str, local: str) -> str:
    """The user part of file URLs (ejabberd's ``jid_in_url``)."""
    if mode == "node":
        return sanitize_filename(local or "_")
    return hashlib.sha1(bare_jid.encode()).hexdigest()


def sanitize_filename(name: str, limit: int = 200) -> str:
    """A file name safe to show in a URL; never used as a path on disk.

    Directory parts, control and format characters are dropped, so are
    leading dots; the result is at most ``limit`` bytes of UTF-8 and keeps
    the extension when it has to be shortened.
    """
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in ("C",)
                   and ch not in '<>:"|?*%#')
    name = name.strip().lstrip(".").strip()
    if not name:
        return "file"
    if len(name.encode()) > limit:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext.encode()) > 16:
            stem, ext = name, ""
        room = limit - len(ext.encode()) - (1 if ext else 0)
        stem = stem.encode()[:room].decode("utf-8", "ignore")
        name = f"{stem}.{ext}" if ext else stem
    return name


def load_secret(configured: Optional[str], data_dir: Path) -> bytes:
    """The configured secret, or the one stored in ``data_dir`` (made at first use)."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        return base64.b64decode(path.read_bytes().strip(), validate=True)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(key) + b"\n")
    try:
        os.link(tmp, path)  # never overwrite a secret another process made first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return base64.b64decode(path.read_bytes().strip(), validate=True)


class SlotSigner:
    """Signs and checks PUT tokens."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, file_id: str, name: str, size: int, content_type: str, expires: int) -> str:
        msg = "\0".join(("put", file_id, name, str(size), content_type, str(expires))).encode()
        digest = hmac.new(self._secret, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, file_id: str, name: str, size: int, content_type: str, expires: int) -> str:
        return f"{expires}.{self._mac(file_id, name, size, content_type, expires)}"

    def verify(self, token: str, file_id: str, name: str, size: int, content_type: str,
               now: float) -> Optional[str]:
        """None when ``token`` is valid now, else why it is not."""
        exp_s, _, mac = token.partition(".")
        if not exp_s.isdigit() or not mac:
            return "malformed token"
        expires = int(exp_s)
        good = self._mac(file_id, name, size, content_type, expires)
        if not hmac.compare_digest(good.encode(), mac.encode()):
            return "invalid signature"
        if now > expires:
            return "upload slot expired"
        return None
