"""Admin commands (``xmppd ctl``): a name, a function, a line of help."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class CommandError(Exception):
    """A command failed in a way the operator should read."""


@dataclass(frozen=True)
class Command:
    name: str
    fn: Callable[..., Any]
    help: str


class Commands:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(self, name: str, fn: Callable[..., Any], help: str = "") -> None:
        self._commands[name] = Command(name, fn, help)

    def unregister(self, name: str) -> None:
        self._commands.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def help_lines(self) -> dict[str, str]:
        """Each command's line of help (``help``)."""
        return {name: cmd.help for name, cmd in self._commands.items()}

    def get(self, name: str) -> Command:
        try:
            return self._commands[name]
        except KeyError:
            raise CommandError(f"unknown command {name!r}") from None

    async def call(self, name: str, args: list[str]) -> Any:
        cmd = self.get(name)
        sig = inspect.signature(cmd.fn)
        try:
            sig.bind(*args)
        except TypeError:
            params = " ".join(p.upper() for p in sig.parameters)
            raise CommandError(f"usage: {name} {params}") from None
        result = cmd.fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result
