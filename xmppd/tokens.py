"""Random tokens (stream ids, SCRAM nonces) from a buffer of the OS's randomness.

``secrets`` asks the kernel for every token; a login needs three or four, and on
a virtual machine each ``getrandom`` call costs tens of microseconds. Here one
call fills 4 KiB, and tokens are cut from it: the same source, fewer system calls.
"""

from __future__ import annotations

import base64
import os
import threading

_SIZE = 4096
_lock = threading.Lock()
_buf = b""
_pos = 0


def _forget() -> None:
    """In a forked child: drop the parent's buffer, so no token repeats."""
    global _buf, _pos, _lock
    _lock = threading.Lock()  # the parent may have held it at the fork
    _buf, _pos = b"", 0


os.register_at_fork(after_in_child=_forget)


def token_bytes(n: int) -> bytes:
    """``n`` random bytes from the OS's generator."""
    global _buf, _pos
    with _lock:
        if _pos + n > len(_buf):
            _buf = os.urandom(max(_SIZE, n))
            _pos = 0
        out = _buf[_pos:_pos + n]
        _pos += n
    return out


def token_urlsafe(n: int) -> str:
    """Like :func:`secrets.token_urlsafe`: ``n`` random bytes, base64url, unpadded."""
    return base64.urlsafe_b64encode(token_bytes(n)).rstrip(b"=").decode("ascii")


def token_hex(n: int) -> str:
    """Like :func:`secrets.token_hex`."""
    return token_bytes(n).hex()
