"""ejabberd-style YAML configuration -> validated, frozen settings.

Unknown top-level options, listener options and modules give warnings and the
server still starts; an invalid value raises :class:`ConfigError` naming the
YAML path and what is expected. ``define_macro`` macros are substituted
wherever a scalar equals a macro name; ``@HOST@`` is substituted in module
options per virtual host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .confval import (
    INFINITY,
    ConfigError,
    Validator,
    check_keys,
    join,
    v_any,
    v_bool,
    v_dict,
    v_enum,
    v_int,
    v_ip,
    v_ip_network,
    v_list,
    v_nonempty_str,
    v_port,
    v_pos_int_or_infinity,
    v_str,
    v_timeout,
)

__all__ = ["Config", "ConfigError", "ListenConfig", "load_config", "parse_config", "INFINITY"]

LISTEN_MODULES = ("ejabberd_c2s", "ejabberd_s2s_in", "ejabberd_http", "ejabberd_service",
                  "ejabberd_stun")


def _v_host(value: Any, path: str) -> str:
    from .jid import JIDError, nameprep
    s = v_nonempty_str(value, path)
    try:
        return nameprep(s)
    except JIDError:
        raise ConfigError(path, "a valid domain name", value) from None


def _v_request_handlers(value: Any, path: str) -> dict[str, str]:
    out = v_dict(v_str, v_str)(value, path)
    for k in out:
        if not k.startswith("/"):
            raise ConfigError(join(path, k), "a URL path starting with '/'", k)
    return out


def _v_component_hosts(value: Any, path: str) -> dict[str, Optional[str]]:
    """ejabberd_service's ``hosts``: domain -> {password}, or a list of domains."""
    if isinstance(value, list):
        value = {v: {} for v in value}
    if not isinstance(value, dict):
        raise ConfigError(path, "a mapping of component domains to {password: ...}", value)
    out: dict[str, Optional[str]] = {}
    for domain, opts in value.items():
        p = join(path, domain)
        opts = opts or {}
        if not isinstance(opts, dict):
            raise ConfigError(p, "a mapping such as {password: secret}", opts)
        for key in opts:
            if key != "password":
                raise ConfigError(join(p, key), "password", key)
        out[_v_host(domain, p)] = (v_nonempty_str(opts["password"], join(p, "password"))
                                   if "password" in opts else None)
    return out


def _v_shaper_def(value: Any, path: str) -> dict[str, float]:
    # ejabberd: `name: rate` or `name: {rate: N, burst_size: M}`
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return {"rate": float(value), "burst_size": float(value)}
    if isinstance(value, dict):
        rate = v_int(1)(value.get("rate"), join(path, "rate"))
        burst = value.get("burst_size", rate)
        burst = v_int(1)(burst, join(path, "burst_size"))
        return {"rate": float(rate), "burst_size": float(burst)}
    if value in ("none", "infinity"):
        return {"rate": INFINITY, "burst_size": INFINITY}
    raise ConfigError(path, "a rate in bytes/second or {rate, burst_size}", value)


def _v_origins(value: Any, path: str) -> tuple[str, ...]:
    """``ignore`` (no check) or a list of origins such as https://chat.example.org."""
    if value == "ignore":
        return ()
    out = []
    for i, origin in enumerate(v_list(v_nonempty_str)(value, path)):
        if origin != "*" and "://" not in origin:
            raise ConfigError(join(path, i), "an origin such as https://chat.example.org", origin)
        out.append(origin.rstrip("/").lower())
    return tuple(out)


def _v_trusted_proxies(value: Any, path: str) -> Any:
    if value == "all":
        return ("0.0.0.0/0", "::/0")
    return tuple(v_list(v_ip_network)(value, path))


def _v_s2s_hosts(value: Any, path: str) -> dict[str, dict[str, Any]]:
    """``s2s_hosts: {domain: {host: 127.0.0.1, port: 5269, tls: false}}``: where a domain's
    server is (``tls``: Direct TLS, XEP-0368)."""
    out: dict[str, dict[str, Any]] = {}
    for domain, target in v_dict(_v_host, v_any)(value, path).items():
        tpath = join(path, domain)
        if isinstance(target, str):
            target = {"host": target}
        target = check_keys(target, tpath, ["host", "port", "tls"], [])
        unknown = [k for k in target if k not in ("host", "port", "tls")]
        if unknown:
            raise ConfigError(join(tpath, unknown[0]), "host, port or tls", unknown[0],
                              show_got=False)
        if "host" not in target:
            raise ConfigError(join(tpath, "host"), "a host name or IP address", None,
                              show_got=False)
        out[domain] = {"host": v_nonempty_str(target["host"], join(tpath, "host")),
                       "port": v_port(target.get("port", 5269), join(tpath, "port")),
                       "tls": v_bool(target.get("tls", False), join(tpath, "tls"))}
    return out


LISTEN_OPTIONS: dict[str, tuple[Validator, Any]] = {
    "port": (v_port, None),
    "ip": (v_ip, "::"),
    "module": (v_str, None),
    "tls": (v_bool, False),
    "starttls": (v_bool, True),
    "starttls_required": (v_bool, True),
    "max_stanza_size": (v_pos_int_or_infinity, 262144),
    "shaper": (v_str, "none"),
    "access": (v_str, "all"),
    "request_handlers": (_v_request_handlers, {}),
    "backlog": (v_int(1), 4096),
    "certfile": (v_str, None),
    "transport": (v_enum("tcp", "udp"), "tcp"),
    "zlib": (v_bool, False),
    "protocol_options": (v_any, None),
    "ciphers": (v_str, None),
    "dhfile": (v_str, None),
    "tls_compression": (v_bool, False),
    "use_proxy_protocol": (v_bool, False),
    "send_timeout": (v_timeout("millisecond", allow_infinity=True), 15.0),
    "timeout": (v_timeout("second"), 600.0),
    "idle_timeout": (v_timeout("second", allow_infinity=True), 600.0),
    "allowed_origins": (_v_origins, ()),
    "max_sessions_per_ip": (v_pos_int_or_infinity, INFINITY),
    "max_connection_rate": (v_pos_int_or_infinity, INFINITY),
    "max_stanza_rate": (v_pos_int_or_infinity, INFINITY),
    # ejabberd_service (external components, XEP-0114)
    "hosts": (_v_component_hosts, {}),
    "password": (v_nonempty_str, None),
    "check_from": (v_bool, True),
}
# ejabberd_stun (STUN and TURN, xmppd/stun/): kept together in ListenConfig.stun
STUN_OPTIONS: dict[str, tuple[Validator, Any]] = {
    "use_turn": (v_bool, False),
    "turn_ipv4_address": (v_ip, None),
    "turn_ipv6_address": (v_ip, None),
    "turn_min_port": (v_port, 49152),
    "turn_max_port": (v_port, 65535),
    "turn_max_allocations": (v_pos_int_or_infinity, 10),
    "turn_max_permissions": (v_pos_int_or_infinity, 10),
    "turn_blacklist": (v_list(v_ip_network), ["127.0.0.0/8", "::1/128"]),
    "auth_type": (v_enum("user", "anonymous"), "user"),
    "auth_realm": (v_str, None),
    "server_name": (v_str, "xmppd"),
}
LISTEN_OPTIONS.update(STUN_OPTIONS)
# options ejabberd knows for listeners that xmppd accepts and ignores quietly
_LISTEN_IGNORED = ("zlib", "protocol_options", "ciphers", "dhfile", "tls_compression", "transport")


@dataclass(frozen=True)
class ListenConfig:
    port: int
    ip: str
    module: str
    tls: bool = False
    starttls: bool = True
    starttls_required: bool = True
    max_stanza_size: float = 262144
    shaper: str = "none"
    access: str = "all"
    request_handlers: dict[str, str] = field(default_factory=dict)
    backlog: int = 4096
    certfile: Optional[str] = None
    idle_timeout: float = 600.0
    send_timeout: float = 15.0
    allowed_origins: tuple[str, ...] = ()
    max_sessions_per_ip: float = INFINITY
    max_connection_rate: float = INFINITY
    max_stanza_rate: float = INFINITY
    hosts: dict[str, Optional[str]] = field(default_factory=dict)  # ejabberd_service
    password: Optional[str] = None
    check_from: bool = True
    stun: dict[str, Any] = field(default_factory=dict)   # ejabberd_stun
    path: str = ""


TOP_OPTIONS: dict[str, tuple[Validator, Any]] = {
    "hosts": (v_list(_v_host), ["localhost"]),
    "loglevel": (v_enum("none", "emergency", "alert", "critical", "error", "warning",
                        "notice", "info", "debug"), "info"),
    "certfiles": (v_list(v_str), []),
    "listen": (v_any, []),
    "acl": (v_any, {}),
    "access_rules": (v_any, {}),
    "api_permissions": (v_any, None),  # parsed with the ACLs: xmppd/api_permissions.py
    "oauth_expire": (v_int(1), 4294967),  # seconds: oauth_issue_token's default lifetime
    "shaper": (v_dict(v_str, _v_shaper_def), {}),
    "shaper_rules": (v_any, {}),
    "auth_method": (v_list(v_enum("sql", "internal", "mnesia", "anonymous", "external",
                                  "ldap", "jwt", "pam")), ["sql"]),
    "auth_password_format": (v_enum("scram", "plain"), "scram"),
    "auth_scram_hash": (v_enum("sha", "sha256", "sha512"), "sha"),
    "scram_iterations": (v_int(1024, 1000000), 4096),
    "default_db": (v_enum("sql", "mnesia"), "sql"),
    "sql_type": (v_enum("sqlite", "pgsql", "mysql", "mssql", "odbc"), "sqlite"),
    "sql_server": (v_str, "localhost"),
    "sql_port": (v_port, None),
    "sql_database": (v_str, None),
    "sql_username": (v_str, "ejabberd"),
    "sql_password": (v_str, ""),
    "sql_pool_size": (v_int(1, 1000), 10),
    "sql_ssl": (v_bool, False),
    "host_config": (v_any, {}),
    "modules": (v_any, {}),
    "define_macro": (v_any, {}),
    "data_dir": (v_str, "data"),
    "node_name": (v_str, None),
    "workers": (v_any, 1),
    "worker_cpu_affinity": (v_any, "auto"),
    "sm_db_type": (v_enum("memory", "redis", "mnesia", "sql"), "memory"),
    "redis_server": (v_str, "localhost"),
    "redis_port": (v_port, 6379),
    "redis_db": (v_int(0), 0),
    "redis_password": (v_str, ""),
    "max_fsm_queue": (v_int(1), 10000),
    "c2s_queue_limit": (v_int(1024), 8 * 1024 * 1024),
    "language": (v_str, "en"),
    "s2s_use_starttls": (v_enum("false", "optional", "required", "true"), "optional"),
    "s2s_access": (v_str, "all"),
    "s2s_timeout": (v_timeout("second"), 600.0),
    "s2s_hosts": (_v_s2s_hosts, {}),
    "s2s_dialback_secret": (v_nonempty_str, None),
    "s2s_cafile": (v_nonempty_str, None),
    "s2s_dns_timeout": (v_timeout("second"), 10.0),
    "s2s_max_retry_delay": (v_timeout("second"), 300.0),
    "outgoing_s2s_timeout": (v_timeout("second"), 10.0),
    "outgoing_s2s_port": (v_port, 5269),
    "outgoing_s2s_families": (v_list(v_enum("ipv4", "ipv6", "inet", "inet6")),
                              ["ipv6", "ipv4"]),
    "shutdown_timeout": (v_timeout("second"), 5.0),
    "negotiation_timeout": (v_timeout("second"), 60.0),
    "overload_lag_high": (v_timeout("second"), 0.25),
    "overload_lag_low": (v_timeout("second"), 0.05),
    "overload_max_memory": (v_pos_int_or_infinity, INFINITY),
    "overload_max_send_queue": (v_pos_int_or_infinity, INFINITY),
    "ctl_socket": (v_str, None),
    # HTTP client transports (xmppd/http): as in ejabberd
    "websocket_origin": (_v_origins, ()),
    "websocket_ping_interval": (v_timeout("second"), 60.0),
    "websocket_timeout": (v_timeout("second"), 300.0),
    "trusted_proxies": (_v_trusted_proxies, ()),
}

# ejabberd options that xmppd accepts without a warning but does not act on
_QUIET = {"language", "new_sql_schema", "update_sql_schema",
          "log_rotate_count", "log_rotate_size", "log_burst_limit_count",
          "log_burst_limit_window_time", "hide_sensitive_log_data"}


@dataclass(frozen=True)
class Config:
    hosts: tuple[str, ...]
    loglevel: str
    certfiles: tuple[str, ...]
    listen: tuple[ListenConfig, ...]
    options: dict[str, Any]
    modules: dict[str, dict[str, Any]]
    host_config: dict[str, dict[str, Any]]
    acl: dict[str, Any]
    access_rules: dict[str, Any]
    shaper: dict[str, dict[str, float]]
    shaper_rules: dict[str, Any]
    data_dir: Path
    base_dir: Path
    warnings: tuple[str, ...] = ()
    source: Optional[Path] = None

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def host_option(self, host: str, key: str) -> Any:
        hc = self.host_config.get(host, {})
        if key in hc:
            return hc[key]
        return self.options.get(key)

    def modules_for(self, host: str) -> dict[str, dict[str, Any]]:
        """Module options for ``host`` (host_config merged, @HOST@ substituted)."""
        mods = dict(self.modules)
        extra = self.host_config.get(host, {}).get("modules")
        if isinstance(extra, dict):
            for name, opts in extra.items():
                mods[name] = opts if isinstance(opts, dict) else {}
        return {name: _subst_host(opts, host) for name, opts in mods.items()}

    def path(self, p: str) -> Path:
        """Resolve a file path from the config relative to the config's directory."""
        pp = Path(p)
        return pp if pp.is_absolute() else (self.base_dir / pp)

    @property
    def sql_database_path(self) -> Path:
        db = self.options.get("sql_database")
        if not db:
            return self.data_dir / "xmppd.db"
        return self.path(db)


def _subst_host(value: Any, host: str) -> Any:
    if isinstance(value, str):
        return value.replace("@HOST@", host)
    if isinstance(value, list):
        return [_subst_host(v, host) for v in value]
    if isinstance(value, dict):
        return {_subst_host(k, host): _subst_host(v, host) for k, v in value.items()}
    return value


def _apply_macros(value: Any, macros: dict[str, Any]) -> Any:
    if isinstance(value, str) and value in macros:
        return macros[value]
    if isinstance(value, list):
        return [_apply_macros(v, macros) for v in value]
    if isinstance(value, dict):
        return {k: _apply_macros(v, macros) for k, v in value.items()}
    return value


def _parse_listen(raw: Any, warnings: list[str]) -> tuple[ListenConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("listen", "a list of listeners", raw)
    out = []
    for i, entry in enumerate(raw):
        path = join("listen", i)
        entry = check_keys(entry, path, list(LISTEN_OPTIONS), warnings)
        if "port" not in entry:
            raise ConfigError(join(path, "port"), "a port number", None, show_got=False)
        if "module" not in entry:
            raise ConfigError(join(path, "module"), "a listener module such as ejabberd_c2s",
                              None, show_got=False)
        vals: dict[str, Any] = {}
        for key, (validator, default) in LISTEN_OPTIONS.items():
            if key in entry:
                vals[key] = validator(entry[key], join(path, key))
            else:
                vals[key] = default
        module = vals["module"]
        if module not in LISTEN_MODULES:
            warnings.append(f"{join(path, 'module')}: listener module {module!r} is not "
                            f"supported by xmppd; port {vals['port']} is not opened")
            continue
        stun: dict[str, Any] = {}
        if module == "ejabberd_stun":
            stun = {key: vals[key] for key in STUN_OPTIONS}
            # ejabberd_stun's default transport is udp; TLS is over TCP
            stun["transport"] = vals["transport"] if "transport" in entry else "udp"
            if vals["tls"] and stun["transport"] == "udp":
                if "transport" in entry:
                    warnings.append(f"{join(path, 'tls')}: STUN over TLS runs over TCP "
                                    "(DTLS is not offered); transport: tcp")
                stun["transport"] = "tcp"
            if stun["turn_min_port"] > stun["turn_max_port"]:
                raise ConfigError(join(path, "turn_min_port"), "at most turn_max_port",
                                  stun["turn_min_port"])
        elif vals["transport"] == "udp":
            warnings.append(f"{join(path, 'transport')}: udp is not supported; listener skipped")
            continue
        for key in _LISTEN_IGNORED:
            if key in entry and key != "transport":
                warnings.append(f"{join(path, key)}: not supported by xmppd, ignored")
        out.append(ListenConfig(
            port=vals["port"], ip=vals["ip"], module=module, tls=vals["tls"],
            starttls=vals["starttls"], starttls_required=vals["starttls_required"],
            max_stanza_size=vals["max_stanza_size"], shaper=vals["shaper"],
            access=vals["access"], request_handlers=vals["request_handlers"],
            backlog=vals["backlog"], certfile=vals["certfile"],
            idle_timeout=vals["idle_timeout"], send_timeout=vals["send_timeout"],
            allowed_origins=tuple(vals["allowed_origins"]),
            max_sessions_per_ip=vals["max_sessions_per_ip"],
            max_connection_rate=vals["max_connection_rate"],
            max_stanza_rate=vals["max_stanza_rate"], hosts=vals["hosts"],
            password=vals["password"], check_from=vals["check_from"], stun=stun, path=path,
        ))
        if module == "ejabberd_service":
            for domain, pw in vals["hosts"].items():
                if pw is None and vals["password"] is None:
                    raise ConfigError(join(join(path, "hosts"), domain), "a password (or the "
                                      "listener's password)", None, show_got=False)
            if not vals["hosts"]:
                raise ConfigError(join(path, "hosts"), "the component domains this listener "
                                  "accepts", None, show_got=False)
    return tuple(out)


def parse_config(data: Any, *, base_dir: Optional[Path] = None,
                 source: Optional[Path] = None) -> Config:
    """Validate an already-loaded YAML document."""
    from . import acl as aclmod
    from .api_permissions import parse_api_permissions

    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("(top level)", "a mapping of options", data)
    macros = data.get("define_macro") or {}
    if not isinstance(macros, dict):
        raise ConfigError("define_macro", "a mapping of macro names to values", macros)
    data = {k: (_apply_macros(v, macros) if k != "define_macro" else v) for k, v in data.items()}
    opts: dict[str, Any] = {}
    for key in data:
        if key not in TOP_OPTIONS:
            if key not in _QUIET:
                warnings.append(f"{key}: unknown option, ignored")
            continue
    for key, (validator, default) in TOP_OPTIONS.items():
        opts[key] = validator(data[key], key) if key in data else default
    if not opts["hosts"]:
        raise ConfigError("hosts", "at least one host", [])
    if len(set(opts["hosts"])) != len(opts["hosts"]):
        raise ConfigError("hosts", "distinct host names", opts["hosts"])
    if opts["sql_type"] not in ("sqlite", "pgsql"):
        raise ConfigError("sql_type", "sqlite or pgsql (xmppd supports these)", opts["sql_type"])
    if opts["default_db"] == "mnesia":
        warnings.append("default_db: mnesia is not available in xmppd; using sql")
    for m in opts["auth_method"]:
        if m not in ("sql", "internal", "mnesia"):
            warnings.append(f"auth_method: {m} is not supported by xmppd; using sql")
    if opts["auth_password_format"] == "plain":
        warnings.append("auth_password_format: plain is not supported; passwords are "
                        "stored as SCRAM keys only")
    workers = opts["workers"]
    if workers != "auto":
        opts["workers"] = v_int(1, 1024)(workers, "workers")
    if opts["worker_cpu_affinity"] not in ("auto", True, False):
        raise ConfigError("worker_cpu_affinity", "auto, true or false",
                          opts["worker_cpu_affinity"])
    listen = _parse_listen(data.get("listen"), warnings)

    modules = data.get("modules") or {}
    if not isinstance(modules, dict):
        raise ConfigError("modules", "a mapping of module names to options", modules)
    mods: dict[str, dict[str, Any]] = {}
    for name, mopts in modules.items():
        if mopts is None:
            mopts = {}
        if not isinstance(mopts, dict):
            raise ConfigError(join("modules", name), "a mapping of module options", mopts)
        mods[str(name)] = mopts

    host_config = data.get("host_config") or {}
    if not isinstance(host_config, dict):
        raise ConfigError("host_config", "a mapping of hosts to options", host_config)
    hc: dict[str, dict[str, Any]] = {}
    for host, hopts in host_config.items():
        hpath = join("host_config", host)
        if host not in opts["hosts"]:
            warnings.append(f"{hpath}: {host} is not in hosts, ignored")
            continue
        hopts = check_keys(hopts, hpath, list(TOP_OPTIONS), warnings)
        checked = {}
        for key, value in hopts.items():
            if key in TOP_OPTIONS and key != "modules":
                checked[key] = TOP_OPTIONS[key][0](value, join(hpath, key))
            elif key == "modules":
                if not isinstance(value, dict):
                    raise ConfigError(join(hpath, key), "a mapping of modules", value)
                checked[key] = value
        hc[host] = checked

    acl = aclmod.parse_acls(data.get("acl"), "acl")
    access_rules = aclmod.parse_access_rules(data.get("access_rules"), "access_rules", acl)
    shaper_rules = aclmod.parse_shaper_rules(data.get("shaper_rules"), "shaper_rules", acl)
    opts["api_permissions"] = parse_api_permissions(data.get("api_permissions"),
                                                    "api_permissions", acl, warnings)

    base = base_dir or Path.cwd()
    data_dir = Path(opts["data_dir"])
    if not data_dir.is_absolute():
        data_dir = Path(os.path.normpath(base / data_dir))
    return Config(
        hosts=tuple(opts["hosts"]), loglevel=opts["loglevel"],
        certfiles=tuple(opts["certfiles"]), listen=listen, options=opts, modules=mods,
        host_config=hc, acl=acl, access_rules=access_rules, shaper=opts["shaper"],
        shaper_rules=shaper_rules, data_dir=data_dir, base_dir=base,
        warnings=tuple(warnings), source=source,
    )


class _Loader(yaml.SafeLoader):
    pass


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def default_config_path() -> Path:
    env = os.environ.get("XMPPD_CONFIG")
    if env:
        return Path(env)
    return Path("config/xmppd.yml")


def load_config(path: Optional[os.PathLike[str] | str] = None) -> Config:
    p = Path(path) if path is not None else default_config_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), "a readable configuration file", e.strerror, show_got=False) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(str(p), f"valid YAML ({e})", None, show_got=False) from None
    return parse_config(data, base_dir=p.resolve().parent, source=p)
