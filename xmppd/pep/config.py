"""PEP node configuration (XEP-0060 16.4 ``pubsub#node_config``): the defaults of
XEP-0163, the owner's form, and publish-options preconditions (XEP-0060 7.1.5)."""

from __future__ import annotations

from typing import Any

from ..dataforms import X, add_field, form_values
from ..stanza import StanzaError
from ..xml import Element
from .ns import ERRORS, NODE_CONFIG, PUBLISH_OPTIONS, q

ACCESS_MODELS = ("open", "presence", "whitelist")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
# option -> default (XEP-0163: presence access, one item, the last item on presence)
DEFAULTS: dict[str, Any] = {
    "access_model": "presence",
    "max_items": 1,
    "persist_items": True,
    "send_last_published_item": "on_sub_and_presence",
    "notify_retract": True,
    "deliver_payloads": True,
    "title": "",
}
_TYPES = {"access_model": "list-single", "max_items": "text-single",
          "persist_items": "boolean", "send_last_published_item": "list-single",
          "notify_retract": "boolean", "deliver_payloads": "boolean", "title": "text-single"}


def forced_options(opts: dict[str, Any], max_items_node: int) -> dict[str, Any]:
    """What ``force_node_config`` gives one node name: option -> value (``pubsub#``
    prefixes allowed); ValueError names an option or value it cannot take."""
    out: dict[str, Any] = {}
    for key, value in opts.items():
        name = key.removeprefix("pubsub#")
        if name not in DEFAULTS:
            raise ValueError("%s: not a node option xmppd has (%s)" % (key, ", ".join(DEFAULTS)))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        try:
            out[name] = parse(name, [text], max_items_node)
        except StanzaError as e:
            raise ValueError("%s: %s" % (key, e.text)) from None
    return out


def parse(key: str, values: list[str], max_items_node: int) -> Any:
    """One option's value from a form field; ``bad-request`` if it is not one."""
    v = values[0].strip() if values else ""
    if key in ("persist_items", "notify_retract", "deliver_payloads"):
        if v.lower() in ("1", "true"):
            return True
        if v.lower() in ("0", "false"):
            return False
    elif key == "max_items":
        if v == "max":
            return max_items_node
        if v.isdigit() and int(v) >= 1:
            return min(int(v), max_items_node)
    elif key == "access_model":
        if v in ACCESS_MODELS:
            return v
    elif key == "send_last_published_item":
        if v in SEND_LAST:
            return v
    elif key == "title":
        return v
    raise StanzaError("bad-request", "modify", "pubsub#%s: %r is not supported" % (key, v))


def submitted(form: Element, form_type: str, max_items_node: int) -> dict[str, Any]:
    """The options of a submitted form (node configuration or publish-options); fields
    this server does not know are left out."""
    out: dict[str, Any] = {}
    for var, values in form_values(form).items():
        if var == "FORM_TYPE":
            if values and values[0] != form_type:
                raise StanzaError("bad-request", "modify", "FORM_TYPE: expected " + form_type)
            continue
        key = var.removeprefix("pubsub#")
        if key in DEFAULTS and var.startswith("pubsub#"):
            out[key] = parse(key, values, max_items_node)
    return out


def check_preconditions(cfg: dict[str, Any], options: dict[str, Any]) -> None:
    """A publish with options on an existing node: each must be what the node has."""
    for key, value in options.items():
        if cfg.get(key) != value:
            raise StanzaError("conflict", "cancel",
                              "pubsub#%s of the node is %r" % (key, cfg.get(key)),
                              app=Element(q(ERRORS, "precondition-not-met")))


def form(cfg: dict[str, Any], node: str) -> Element:
    """The node's configuration as a form for its owner."""
    x = Element(X, {"type": "form"})
    add_field(x, "FORM_TYPE", "hidden", "", [NODE_CONFIG])
    for key, type_ in _TYPES.items():
        value = cfg[key]
        shown = ("1" if value else "0") if isinstance(value, bool) else str(value)
        options = None
        if key == "access_model":
            options = [(m, m) for m in ACCESS_MODELS]
        elif key == "send_last_published_item":
            options = [(m, m) for m in SEND_LAST]
        add_field(x, "pubsub#" + key, type_, "", [shown], options)
    return x


__all__ = ["DEFAULTS", "PUBLISH_OPTIONS", "check_preconditions", "forced_options", "form",
           "parse", "submitted"]
