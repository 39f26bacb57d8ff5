"""XEP-0004 data forms: the few helpers that MUC room configuration, PEP node
configuration and publish-options share."""

from __future__ import annotations

from typing import Optional

from .xml import Element

DATA = "jabber:x:data"
X = "{%s}x" % DATA
FIELD = "{%s}field" % DATA
VALUE = "{%s}value" % DATA


def add_field(form: Element, var: str, type_: str, label: str, values: list[str],
              options: Optional[list[tuple[str, str]]] = None) -> None:
    """A field with its values (and, for lists, its options: value, label); an empty
    ``type_`` or ``label`` is left out (a submitted form needs neither)."""
    attrs = {"var": var}
    if type_:
        attrs["type"] = type_
    if label:
        attrs["label"] = label
    f = form.add(FIELD, attrs)
    for value, olabel in options or ():
        o = f.add("{%s}option" % DATA, {"label": olabel})
        o.add(VALUE, None, value)
    for v in values:
        f.append(Element(VALUE, {}, [v] if v else []))


def form_values(form: Element) -> dict[str, list[str]]:
    """A submitted form's values by field name."""
    out: dict[str, list[str]] = {}
    for f in form.findall(FIELD):
        var = f.attrs.get("var")
        if var:
            out[var] = [v.text for v in f.findall(VALUE)]
    return out
