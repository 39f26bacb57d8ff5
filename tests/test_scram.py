"""SCRAM server side against the RFC 5802 and RFC 7677 test vectors."""

from __future__ import annotations

import base64

import pytest

from xmppd.c2s.scram import SaslFailure, ScramServer, derive_keys


def _server(label: str, nonce: str, plus: bool = False, offered: bool = False) -> ScramServer:
    return ScramServer(label, plus, ("tls-unique",), lambda t: b"CBDATA", offered,
                       server_nonce=nonce)


def test_rfc5802_sha1_vector() -> None:
    keys = derive_keys("pencil", "sha1", 4096, base64.b64decode("QSXCR+Q6sek8bf92"))
    s = _server("SHA-1", "3rfcNHYJY1ZVvWVs7j")
    assert s.first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL") == "user"
    assert s.challenge(keys) == b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    final = s.final(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                    b"p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
    assert final == b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="


def test_rfc7677_sha256_vector() -> None:
    keys = derive_keys("pencil", "sha256", 4096, base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    s = _server("SHA-256", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    s.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    s.challenge(keys)
    final = s.final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_wrong_proof_and_unknown_user() -> None:
    keys = derive_keys("pencil", "sha1", 4096, base64.b64decode("QSXCR+Q6sek8bf92"))
    s = _server("SHA-1", "3rfcNHYJY1ZVvWVs7j")
    s.first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    s.challenge(keys)
    with pytest.raises(SaslFailure) as ei:
        s.final(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert ei.value.condition == "not-authorized"
    s = _server("SHA-1", "abc")
    s.first(b"n,,n=ghost,r=xyz")
    s.challenge(None)
    with pytest.raises(SaslFailure):
        s.final(b"c=biws,r=xyzabc,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")


def test_downgrade_and_channel_binding_checks() -> None:
    s = _server("SHA-1", "n", offered=True)
    with pytest.raises(SaslFailure) as ei:
        s.first(b"y,,n=user,r=abc")
    assert ei.value.condition == "not-authorized"
    s = _server("SHA-1", "n", plus=True, offered=True)
    with pytest.raises(SaslFailure):
        s.first(b"n,,n=user,r=abc")  # -PLUS without binding
    s = _server("SHA-1", "n", plus=True, offered=True)
    s.first(b"p=tls-unique,,n=user,r=abc")
    s.challenge(derive_keys("pw", "sha1", 4096))
    wrong_cb = base64.b64encode(b"p=tls-unique,,OTHER").decode()
    with pytest.raises(SaslFailure) as ei:
        s.final(f"c={wrong_cb},r=abcn,p=AAAA".encode())
    assert ei.value.condition == "not-authorized"


@pytest.mark.parametrize("msg", [b"", b"x", b"n,,", b"n,,r=abc", b"n,,n=us=er,r=a", b"q,,n=a,r=b",
                                 b"\xff\xfe"])
def test_malformed_client_first(msg: bytes) -> None:
    with pytest.raises(SaslFailure) as ei:
        _server("SHA-1", "n").first(msg)
    assert ei.value.condition == "malformed-request"
