"""Admin commands (``xmppd ctl``): a name, a function, a line of help."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional


class CommandError(Exception):
    """A command failed in a way the operator should read.

    ``kind`` says what went wrong where a front end answers differently (the HTTP
    API's status): ``conflict`` (it exists already), ``not_found``, or None.
    """

    def __init__(self, message: str, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.kind = kind


# How the answers of the cluster's nodes (node name -> output) make one reply, for a
# command that acts on every node (xmppd/cluster/ctl.py).
Merge = Callable[[dict[str, str]], str]


def days_ago(days: str) -> int:
    """The time ``days`` days ago, in microseconds since the epoch (the ``DAYS`` of
    ejabberdctl's purge commands: a number, 0 or more)."""
    try:
        n = float(days)
    except ValueError:
        n = -1.0
    if not n >= 0:  # (NaN too)
        raise CommandError("DAYS is a number of days, 0 or more")
    return int((time.time() - n * 86400) * 1_000_000)


def per_node(answers: dict[str, str]) -> str:
    """Each node's output on a line of its own, after the node's name; nothing when
    every node's output is empty."""
    return "\n".join(f"{node}: {out}" for node, out in sorted(answers.items()) if out)


def total(answers: dict[str, str]) -> str:
    """The sum of the nodes' counts."""
    return str(sum(int(out or 0) for out in answers.values()))


def all_lines(answers: dict[str, str]) -> str:
    """The lines of every node, sorted."""
    return "\n".join(sorted(line for out in answers.values() for line in out.splitlines()))


@dataclass(frozen=True)
class Command:
    name: str
    fn: Callable[..., Any]
    help: str
    merge: Optional[Merge] = None  # acts on every node of the cluster; their answers merged


class Commands:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        # every registration of a name, the newest last (modules of several hosts
        # register the same commands: one host unloading its module keeps the others')
        self._registered: dict[str, list[Command]] = {}

    def register(self, name: str, fn: Callable[..., Any], help: str = "",
                 merge: Optional[Merge] = None) -> None:
        """``merge``: run the command on every node of the cluster, and make one reply
        of their answers (:func:`per_node`, :func:`total`, :func:`all_lines`)."""
        cmd = Command(name, fn, help, merge)
        self._registered.setdefault(name, []).append(cmd)
        self._commands[name] = cmd

    def unregister(self, name: str, fn: Optional[Callable[..., Any]] = None) -> None:
        """Take back the registration of ``fn`` (all of them without ``fn``); the
        newest one left answers."""
        left = [c for c in self._registered.pop(name, []) if fn is not None and c.fn != fn]
        if left:
            self._registered[name] = left
            self._commands[name] = left[-1]
        else:
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
