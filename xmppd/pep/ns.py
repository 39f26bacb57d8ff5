"""Namespaces of publish-subscribe (XEP-0060) and entity capabilities (XEP-0115)."""

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
NODE_CONFIG = PUBSUB + "#node_config"
PUBLISH_OPTIONS = PUBSUB + "#publish-options"
CAPS = "http://jabber.org/protocol/caps"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DELAY = "urn:xmpp:delay"


def q(ns: str, name: str) -> str:
    return "{%s}%s" % (ns, name)
