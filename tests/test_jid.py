"""JIDs per RFC 7622."""

from __future__ import annotations

import pytest

from xmppd.jid import JID, JIDError


@pytest.mark.parametrize("text,norm", [
    ("juliet@example.com", "juliet@example.com"),
    ("Juliet@Example.COM/Balcony", "juliet@example.com/Balcony"),
    ("example.com", "example.com"),
    ("example.com/res/with/slash", "example.com/res/with/slash"),
    ("juliet@example.com/foo bar", "juliet@example.com/foo bar"),
    ("ΣΠΑΡΤΗ@example.com", "σπαρτη@example.com"),
    ("juliet@example.com.", "juliet@example.com"),
    ("user@[::1]", "user@[::1]"),
])
def test_valid(text: str, norm: str) -> None:
    assert str(JID.parse(text)) == norm


@pytest.mark.parametrize("text", ["", "@example.com", "juliet@", "juliet@example.com/",
                                  "jul iet@example.com", "a@b@c", "juliet@exa mple.com",
                                  "x" * 1024 + "@example.com", "j\"uliet@example.com",
                                  "juliet@-bad.example"])
def test_invalid(text: str) -> None:
    with pytest.raises(JIDError):
        JID.parse(text)


def test_bare_and_equality() -> None:
    j = JID.parse("romeo@montague.lit/orchard")
    assert j.bare == JID.parse("ROMEO@montague.lit")
    assert j.bare.is_bare and not j.is_bare
    assert {j, JID.parse("romeo@montague.lit/orchard")} == {j}
