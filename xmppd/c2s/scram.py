"""SCRAM (RFC 5802, RFC 7677): stored keys and the server side of the exchange.

Passwords are never stored: an account keeps, per hash, a salt, an iteration
count, StoredKey and ServerKey. Verifying a login needs only HMACs and one
hash, no PBKDF2. The exchange is sans-IO: feed it the client's messages, get
the server's messages back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import precis_i18n

from .. import tokens

HASHES = {"SHA-1": "sha1", "SHA-256": "sha256"}
_NEW = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}  # (faster than hashlib.new)
_OPAQUE = precis_i18n.get_profile("OpaqueString")


class SaslFailure(Exception):
    """A SASL failure; ``condition`` is the RFC 6120 6.5 condition."""

    def __init__(self, condition: str, text: Optional[str] = None) -> None:
        super().__init__(condition)
        self.condition = condition
        self.text = text


def prep_password(password: str) -> bytes:
    """Normalize a password with PRECIS OpaqueString (RFC 8265)."""
    try:
        return _OPAQUE.enforce(password).encode("utf-8")  # type: ignore[no-any-return]
    except UnicodeError:
        raise ValueError("password contains characters that are not allowed") from None


@dataclass(frozen=True)
class ScramKeys:
    """What an account stores for one hash function."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def salted_password(password: str, salt: bytes, iterations: int, hashname: str) -> bytes:
    return hashlib.pbkdf2_hmac(hashname, prep_password(password), salt, iterations)


def keys_from_salted(salted: bytes, salt: bytes, iterations: int, hashname: str) -> ScramKeys:
    client_key = hmac.digest(salted, b"Client Key", hashname)
    stored_key = hashlib.new(hashname, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", hashname)
    return ScramKeys(salt, iterations, stored_key, server_key)


def derive_keys(password: str, hashname: str, iterations: int = 4096,
                salt: Optional[bytes] = None) -> ScramKeys:
    """Derive the stored keys for ``password`` (PBKDF2: call off the event loop)."""
    salt = salt if salt is not None else os.urandom(16)
    return keys_from_salted(salted_password(password, salt, iterations, hashname), salt,
                            iterations, hashname)


def check_password(password: str, keys: ScramKeys, hashname: str) -> bool:
    """Verify a plaintext password (PLAIN) against stored keys."""
    try:
        k = derive_keys(password, hashname, keys.iterations, keys.salt)
    except ValueError:
        return False
    return hmac.compare_digest(k.stored_key, keys.stored_key)


_BAD_ESCAPE = re.compile("=(?!2C|3D)")


def _unescape_name(value: str) -> str:
    if "=" in value:
        if _BAD_ESCAPE.search(value):
            raise SaslFailure("malformed-request", "bad escaping in username")
        return value.replace("=2C", ",").replace("=3D", "=")
    return value


def _attrs(msg: str) -> list[tuple[str, str]]:
    out = []
    for part in msg.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SaslFailure("malformed-request")
        out.append((part[0], part[2:]))
    return out


class ScramServer:
    """One SCRAM exchange, server side (sans-IO).

    1. ``first(client_first)`` returns the username to look up.
    2. ``challenge(keys)`` returns server-first (``keys`` None: unknown user; the
       exchange goes on with a fake salt and fails at the end).
    3. ``final(client_final)`` returns server-final or raises :class:`SaslFailure`.
    """

    def __init__(self, hash_label: str, plus: bool, cb_types: tuple[str, ...],
                 cb_data: Callable[[str], Optional[bytes]], plus_offered: bool,
                 iterations: int = 4096, server_nonce: Optional[str] = None) -> None:
        self.hashname = HASHES[hash_label]
        self.plus = plus
        self.cb_types = cb_types
        self.cb_data = cb_data
        self.plus_offered = plus_offered
        self.iterations = iterations
        self.username = ""
        self.authzid: Optional[str] = None
        self._gs2 = ""
        self._client_first_bare = ""
        self._nonce = ""
        self._server_first = ""
        self._keys: Optional[ScramKeys] = None
        self._cb_type: Optional[str] = None
        self._server_nonce = server_nonce

    def first(self, message: bytes) -> str:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("malformed-request") from None
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise SaslFailure("malformed-request")
        flag, authz, bare = parts
        if flag.startswith("p="):
            if not self.plus:
                raise SaslFailure("malformed-request", "channel binding not expected")
            self._cb_type = flag[2:]
            if self._cb_type not in self.cb_types:
                raise SaslFailure("malformed-request", "unsupported channel binding type")
        elif flag == "y":
            if self.plus_offered:
                # the client thinks we do not support channel binding: downgrade
                raise SaslFailure("not-authorized", "channel binding downgrade")
        elif flag != "n":
            raise SaslFailure("malformed-request")
        if self.plus and self._cb_type is None:
            raise SaslFailure("malformed-request", "channel binding required for -PLUS")
        if authz:
            if not authz.startswith("a="):
                raise SaslFailure("malformed-request")
            self.authzid = _unescape_name(authz[2:])
        self._gs2 = f"{flag},{authz},"
        attrs = _attrs(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            if attrs and attrs[0][0] == "m":
                raise SaslFailure("malformed-request", "extensions not supported")
            raise SaslFailure("malformed-request")
        self.username = _unescape_name(attrs[0][1])
        client_nonce = attrs[1][1]
        if not client_nonce or not self.username:
            raise SaslFailure("malformed-request")
        self._client_first_bare = bare
        self._nonce = client_nonce + (self._server_nonce or tokens.token_urlsafe(18))
        return self.username

    def challenge(self, keys: Optional[ScramKeys]) -> bytes:
        if keys is None:
            # unknown user: same shape of answer, deterministic fake salt
            fake = hashlib.sha256(b"xmppd-fake-salt" + self.username.encode()).digest()[:16]
            self._keys = None
            salt, iterations = fake, self.iterations
        else:
            self._keys = keys
            salt, iterations = keys.salt, keys.iterations
        self._server_first = "r=%s,s=%s,i=%d" % (
            self._nonce, base64.b64encode(salt).decode(), iterations)
        return self._server_first.encode()

    def final(self, message: bytes) -> bytes:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("malformed-request") from None
        attrs = _attrs(text)
        if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
            raise SaslFailure("malformed-request")
        if attrs[1][1] != self._nonce:
            raise SaslFailure("not-authorized", "nonce mismatch")
        try:
            cbind = base64.b64decode(attrs[0][1], validate=True)
            proof = base64.b64decode(attrs[-1][1], validate=True)
        except ValueError:
            raise SaslFailure("incorrect-encoding") from None
        expected_cb = self._gs2.encode()
        if self._cb_type is not None:
            data = self.cb_data(self._cb_type)
            if data is None:
                raise SaslFailure("not-authorized", "channel binding unavailable")
            expected_cb += data
        if not hmac.compare_digest(cbind, expected_cb):
            raise SaslFailure("not-authorized", "channel binding mismatch")
        without_proof = text[: text.rindex(",p=")]
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof)).encode()
        keys = self._keys
        if keys is None:
            raise SaslFailure("not-authorized")
        signature = hmac.digest(keys.stored_key, auth_message, self.hashname)
        if len(proof) != len(signature):
            raise SaslFailure("not-authorized")
        n = len(signature)
        client_key = (int.from_bytes(proof, "big") ^ int.from_bytes(signature, "big")).to_bytes(n, "big")
        if not hmac.compare_digest(_NEW[self.hashname](client_key).digest(), keys.stored_key):
            raise SaslFailure("not-authorized")
        server_sig = hmac.digest(keys.server_key, auth_message, self.hashname)
        return b"v=" + base64.b64encode(server_sig)
