"""Validators for ejabberd-style YAML options.

A validator is a callable ``(value, path) -> normalized value`` that raises
:class:`ConfigError` naming the YAML path and what was expected.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any, Optional

Validator = Callable[[Any, str], Any]
INFINITY = float("inf")


class ConfigError(Exception):
    """Invalid configuration: ``path`` is the YAML path, e.g. ``listen[0].port``."""

    def __init__(self, path: str, expected: str, got: Any = None, *, show_got: bool = True) -> None:
        self.path = path
        msg = f"{path}: expected {expected}"
        if show_got:
            msg += f", got {got!r}"
        super().__init__(msg)


def join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def v_any(value: Any, path: str) -> Any:
    return value


def v_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(path, "true or false", value)


def v_str(value: Any, path: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(path, "a string", value)


def v_nonempty_str(value: Any, path: str) -> str:
    s = v_str(value, path)
    if not s:
        raise ConfigError(path, "a non-empty string", value)
    return s


def v_int(lo: Optional[int] = None, hi: Optional[int] = None) -> Validator:
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, _range_text(lo, hi), value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(path, _range_text(lo, hi), value)
        return value
    return check


def _range_text(lo: Optional[int], hi: Optional[int]) -> str:
    if lo is not None and hi is not None:
        return f"an integer from {lo} to {hi}"
    if lo is not None:
        return f"an integer of at least {lo}"
    return "an integer"


def v_pos_int_or_infinity(value: Any, path: str) -> float:
    if value in ("infinity", "infinite", "unlimited"):
        return INFINITY
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(path, "a positive integer or 'infinity'", value)


def v_port(value: Any, path: str) -> int:
    return v_int(1, 65535)(value, path)  # type: ignore[no-any-return]


def v_ip(value: Any, path: str) -> str:
    s = v_str(value, path)
    try:
        ipaddress.ip_address(s)
    except ValueError:
        raise ConfigError(path, "an IP address", value) from None
    return s


def v_ip_network(value: Any, path: str) -> str:
    """An IP address or a network in CIDR notation (``127.0.0.0/8``)."""
    s = v_str(value, path)
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise ConfigError(path, "an IP address or network such as 10.0.0.0/8", value) from None
    return s


def v_enum(*choices: str) -> Validator:
    def check(value: Any, path: str) -> str:
        if isinstance(value, bool):
            value = "true" if value else "false"
        if value not in choices:
            raise ConfigError(path, "one of " + ", ".join(choices), value)
        return str(value)
    return check


def v_list(item: Validator, *, allow_single: bool = True) -> Validator:
    def check(value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            if allow_single:
                return [item(value, join(path, 0))]
            raise ConfigError(path, "a list", value)
        return [item(v, join(path, i)) for i, v in enumerate(value)]
    return check


def v_dict(key: Validator, val: Validator) -> Validator:
    def check(value: Any, path: str) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(path, "a mapping", value)
        return {key(k, path): val(v, join(path, k)) for k, v in value.items()}
    return check


_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "day": 86400, "days": 86400,
}
_TIMEOUT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def v_timeout(default_unit: str = "second", *, allow_infinity: bool = False) -> Validator:
    """ejabberd timeouts: a number (in ``default_unit``) or '5 minutes'."""
    factor = _UNITS[default_unit]

    def check(value: Any, path: str) -> float:
        if allow_infinity and value in ("infinity", "infinite", "unlimited"):
            return INFINITY
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value) * factor
        if isinstance(value, str):
            m = _TIMEOUT.match(value)
            if m and m.group(2) in _UNITS:
                return float(m.group(1)) * _UNITS[m.group(2)]
        raise ConfigError(path, "a duration such as 300 or '5 minutes'", value)
    return check


def check_keys(value: Any, path: str, known: Sequence[str], warnings: list[str]) -> dict[str, Any]:
    """Require a mapping; warn about keys not in ``known``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, "a mapping", value)
    for k in value:
        if k not in known:
            warnings.append(f"{join(path, k)}: unknown option, ignored")
    return value
