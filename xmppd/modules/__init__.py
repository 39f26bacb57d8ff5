"""Small feature modules, and the registry of every module xmppd has.

The registry imports the feature packages and collects each
:class:`~xmppd.moduleapi.Module` subclass under its ejabberd name, so adding a
module is adding a file: there is no central list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ..moduleapi import Module

PACKAGES = ("xmppd.modules", "xmppd.presence", "xmppd.receipts", "xmppd.muc", "xmppd.upload",
            "xmppd.http", "xmppd.s2s", "xmppd.c2s", "xmppd.cluster", "xmppd.pep")


def _subclasses(cls: type[Module]) -> list[type[Module]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


@lru_cache(maxsize=1)
def registry() -> dict[str, type[Module]]:
    """ejabberd module name -> class, for every module shipped with xmppd."""
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
            importlib.import_module(info.name)
    found: dict[str, type[Module]] = {}
    for cls in _subclasses(Module):
        if cls.name:
            if cls.name in found and found[cls.name] is not cls:
                raise RuntimeError(f"two modules are called {cls.name}")
            found[cls.name] = cls
    return found
