"""Server Dialback (XEP-0220) elements and keys (XEP-0185).

Dialback elements are written with the conventional ``db:`` prefix (some
servers accept no other); both stream headers declare it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Optional

from ..xml import Element, escape_attr, escape_text

DB_NS = "jabber:server:dialback"
FEATURE_NS = "urn:xmpp:features:dialback"
RESULT = "{%s}result" % DB_NS
VERIFY = "{%s}verify" % DB_NS
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
FEATURE = b"<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"


def make_key(secret: bytes, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185: HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream id).

    The HMAC key is the hex form of SHA256(secret), as in the XEP's examples.
    """
    msg = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hashlib.sha256(secret).hexdigest().encode(), msg,
                    hashlib.sha256).hexdigest()


def key_matches(secret: bytes, receiving: str, originating: str, stream_id: str,
                key: str) -> bool:
    expected = make_key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected.encode(), key.strip().encode())


def _element(name: str, attrs: dict[str, str], key: Optional[str],
             error: Optional[str]) -> bytes:
    head = "<db:%s%s" % (name, "".join(" %s='%s'" % (k, escape_attr(v))
                                       for k, v in attrs.items()))
    if error is not None:
        etype = "cancel" if error != "remote-server-timeout" else "wait"
        return ("%s><error type='%s'><%s xmlns='%s'/></error></db:%s>"
                % (head, etype, error, STANZAS_NS, name)).encode()
    if key is not None:
        return ("%s>%s</db:%s>" % (head, escape_text(key), name)).encode()
    return (head + "/>").encode()


def result(frm: str, to: str, *, key: Optional[str] = None, type: Optional[str] = None,
           error: Optional[str] = None) -> bytes:
    """``<db:result/>``: a key (step 1) or an answer (step 4)."""
    attrs = {"from": frm, "to": to}
    if error is not None:
        type = "error"
    if type is not None:
        attrs["type"] = type
    return _element("result", attrs, key, error)


def verify(frm: str, to: str, id: str, *, key: Optional[str] = None,
           type: Optional[str] = None, error: Optional[str] = None) -> bytes:
    """``<db:verify/>``: a verification request (step 2) or its answer (step 3)."""
    attrs = {"from": frm, "to": to, "id": id}
    if error is not None:
        type = "error"
    if type is not None:
        attrs["type"] = type
    return _element("verify", attrs, key, error)


def error_condition(el: Element) -> str:
    """The stanza error condition inside a dialback element of type error."""
    for child in el.elements():
        if child.name == "error":
            for cond in child.elements():
                if cond.ns == STANZAS_NS and cond.name != "text":
                    return cond.name
    return "undefined-condition"
