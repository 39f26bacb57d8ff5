"""Random tokens cut from a buffer of the OS's randomness."""

from __future__ import annotations

import os
import re

from xmppd import tokens


def test_tokens_have_the_asked_size_and_do_not_repeat() -> None:
    seen = {tokens.token_urlsafe(18) for _ in range(2000)}  # crosses several refills
    assert len(seen) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", t) for t in seen)
    assert re.fullmatch(r"[0-9a-f]{12}", tokens.token_hex(6))
    assert len(tokens.token_bytes(5000)) == 5000  # more than one buffer


def test_a_forked_child_does_not_repeat_its_parent() -> None:
    tokens.token_bytes(1)  # the buffer is filled in the parent
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(w, tokens.token_bytes(16))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 16)
    assert child != tokens.token_bytes(16)
