"""The ``xmppd`` command: ``xmppd run`` starts the server, ``xmppd ctl`` administers it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from typing import Optional

from .config import Config, ConfigError, load_config

LEVELS = {"none": logging.CRITICAL + 10, "emergency": logging.CRITICAL, "alert": logging.CRITICAL,
          "critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
          "notice": logging.INFO, "info": logging.INFO, "debug": logging.DEBUG}

ACCOUNT_COMMANDS = ("register", "unregister", "change_password", "registered_users",
                    "register_bulk", "check_account", "check_password")


def _load(path: Optional[str]) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"xmppd: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=LEVELS.get(level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _setup_logging(config.loglevel)
    workers = args.workers if args.workers is not None else config["workers"]
    if workers not in (1, "1"):
        from . import workers as workers_mod
        return workers_mod.run_workers(config, workers, args.config)
    return run_server(config, node=args.node, reuse_port=args.reuse_port,
                      serve_ctl=not args.no_ctl)


def tune_gc() -> None:
    """Once started: what start-up loaded (modules, tables, configuration) lives as long
    as the process, so the collector stops scanning it (``gc.freeze``); and the young
    generation is collected less often, since a login or a message leaves many
    short-lived objects that reference counting frees anyway. Cycles are still found."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10000, 20, 20)


def run_server(config: Config, *, node: Optional[str] = None, reuse_port: bool = False,
               backend: object = None, serve_ctl: bool = True) -> int:
    from .server import Server

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    async def main() -> int:
        server = Server(config, node=node, backend=backend)
        server.reuse_port = reuse_port
        server.serve_ctl = serve_ctl
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
        except ConfigError as e:
            logging.getLogger("xmppd").error("configuration error: %s", e)
            await server.stop()
            return 2
        tune_gc()
        await stop.wait()
        await server.stop()
        return 0

    return asyncio.run(main())


def cmd_ctl(args: argparse.Namespace) -> int:
    from . import ctl

    config = _load(args.config)
    command = args.command or "help"
    try:
        reply = ctl.call(config, command, args.args)
    except ctl.NotRunning:
        if command not in ACCOUNT_COMMANDS:
            if command == "status":
                print("xmppd is not running")
                return 3
            if command == "help":
                return _offline_help(args.args)
            print(f"xmppd: the server is not running (command {command!r} needs it)",
                  file=sys.stderr)
            return 3
        return _offline_account_command(config, command, args.args)
    if reply.get("ok"):
        if reply.get("result"):
            print(reply["result"])
        if command == "stop":
            return _wait_stopped(config)
        return 0
    err = reply.get("error", "failed")
    print(f"xmppd: {err}", file=sys.stderr)
    return 2 if str(err).startswith(("unknown command", "usage:")) else 1


def _offline_help(args: list[str]) -> int:
    """``help`` while the server is stopped: the core commands (modules add theirs)."""
    from .admin import HELP, describe
    from .commands import CommandError

    try:
        print(describe(HELP, *args[:1]))
    except CommandError as e:
        print(f"xmppd: {e}", file=sys.stderr)
        return 2
    if not args:
        print("(the server is not running: the commands of its modules are not listed; "
              "only the account commands work now)", file=sys.stderr)
    return 0


def _wait_stopped(config: Config) -> int:
    """``stop`` returns once the server has closed its streams and its admin channel."""
    import time

    from . import ctl

    deadline = time.monotonic() + float(config["shutdown_timeout"]) + 15
    while time.monotonic() < deadline:
        if not ctl.is_running(config):
            return 0
        time.sleep(0.2)
    print("xmppd: the server is still running", file=sys.stderr)
    return 1


def _offline_account_command(config: Config, command: str, args: list[str]) -> int:
    import inspect

    from .admin import account_commands
    from .commands import CommandError
    from .modules import registry
    from .storage import database_from_config, migrate_sync
    from .storage.accounts import AccountStore

    registry()  # import every store so the schema is complete
    db = database_from_config(config)
    try:
        migrate_sync(db)
        fns = account_commands(AccountStore(db, config["scram_iterations"]), config.hosts)
        fn = fns[command]
        try:
            inspect.signature(fn).bind(*args)
        except TypeError:
            params = " ".join(p.upper() for p in inspect.signature(fn).parameters)
            print(f"xmppd: usage: {command} {params}", file=sys.stderr)
            return 2
        try:
            out = fn(*args)
        except CommandError as e:
            print(f"xmppd: {e}", file=sys.stderr)
            return 1
        if out:
            print(out)
        return 0
    finally:
        db.close()


def cmd_check(args: argparse.Namespace) -> int:
    from .server import check_modules
    config = _load(args.config)
    try:
        _, warnings = check_modules(config)
    except ConfigError as e:
        print(f"xmppd: configuration error: {e}", file=sys.stderr)
        return 2
    for w in list(config.warnings) + warnings:
        print(f"warning: {w}")
    print("configuration OK")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from . import __version__

    p = argparse.ArgumentParser(prog="xmppd", description="xmppd XMPP server")
    p.add_argument("--version", action="version", version=f"xmppd {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start the server")
    run.add_argument("--config", "-c", help="configuration file (default: $XMPPD_CONFIG or "
                     "config/xmppd.yml)")
    run.add_argument("--workers", "-w", default=None,
                     help="worker processes (a number or 'auto')")
    run.add_argument("--node", default=None, help="this node's name in a cluster")
    run.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--no-ctl", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(fn=cmd_run)
    ctl = sub.add_parser("ctl", help="administer the server (like ejabberdctl)")
    ctl.add_argument("--config", "-c")
    ctl.add_argument("command", nargs="?", help="help (the default) lists the commands: "
                     "register, unregister, change_password, status, stop, stats, ...")
    ctl.add_argument("args", nargs="*")
    ctl.set_defaults(fn=cmd_ctl)
    chk = sub.add_parser("check", help="validate the configuration and exit")
    chk.add_argument("--config", "-c")
    chk.set_defaults(fn=cmd_check)
    args = p.parse_args(argv)
    if getattr(args, "workers", None) not in (None, "auto"):
        try:
            args.workers = int(args.workers)
        except ValueError:
            p.error("--workers expects a number or 'auto'")
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
