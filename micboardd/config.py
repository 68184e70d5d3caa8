"""TOML config file → frozen dataclasses; every error names its key path and how to fix it."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .model import SlotAlerts, slugify, valid_id

DEFAULT_CONFIG_PATH: Final = Path("/etc/micboardd/micboardd.toml")
DEFAULT_STORE_PATH: Final = "/var/lib/micboardd/micboardd.db"
DEFAULT_SOCKET_PATH: Final = "/run/micboardd/api.sock"
MIN_METER_RATE_MS: Final = 100  # faster metering loads receivers (QLX-D lock-ups); Shure's floor too
MAX_METER_RATE_MS: Final = 65535

# family key → (manufacturer, default port, transport); models map onto families below.
FAMILIES: Final[Mapping[str, tuple[str, int]]] = {
    "ulxd": ("shure", 2202),
    "qlxd": ("shure", 2202),
    "slxd": ("shure", 2202),
    "axient": ("shure", 2202),
    "uhfr": ("shure", 2202),
    "psm1000": ("shure", 2202),
    "systemapi": ("shure", 10000),  # Shure System API middleware (REST + WebSocket); password = x-api-key
    "sscv2": ("sennheiser", 443),
    "sscv1": ("sennheiser", 45),
    "mcp": ("sennheiser", 53212),
}

MODEL_FAMILY: Final[Mapping[str, str]] = {
    "ULXD4": "ulxd", "ULXD4D": "ulxd", "ULXD4Q": "ulxd",
    "QLXD4": "qlxd",
    "SLXD4": "slxd", "SLXD4D": "slxd", "SLXD4Q+": "slxd", "SLXD4Q": "slxd",
    "AD4D": "axient", "AD4Q": "axient",
    "UR4S": "uhfr", "UR4D": "uhfr",
    "P10T": "psm1000",
    "EW-DX EM2": "sscv2", "EW-DX EM4": "sscv2", "EWDX-EM2": "sscv2", "EWDX-EM4": "sscv2",
    "EM 3732": "mcp", "EM 300-500": "mcp", "EM 2050": "mcp", "SR 2050": "mcp",
}

ROLES: Final = ("viewer", "operator", "admin")


class ConfigError(Exception):
    """Every problem found in a config file, each naming its key path and a hint."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{path}: {msg}" for path, msg in problems]
        super().__init__(f"{source or 'config'}: {len(problems)} problem(s)\n  " + "\n  ".join(lines))


class Secret:
    """A credential that never shows in logs, reprs or API answers."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    id: str
    family: str
    host: str
    port: int
    model: str | None = None
    name: str | None = None
    enabled: bool = True
    meter_rate_ms: int = 1000  # 0 turns metering off; liveness then rests on heartbeat GETs
    channels: int | None = None  # override the model's channel count
    username: str | None = None
    password: Secret | None = None
    tls_ca_file: str | None = None  # pinned device certificate or CA (SSCv2)
    tls_insecure: bool = False  # explicit opt-out of TLS verification; logged at start
    local_port: int | None = None  # UDP source port, where the protocol needs a fixed one
    options: Mapping[str, Any] = field(default_factory=dict)  # family-specific extras
    password_ref: Mapping[str, str] = field(default_factory=dict)  # {"password_file": path} — stored, never the secret

    @property
    def manufacturer(self) -> str:
        return FAMILIES[self.family][0]


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    role: str
    token: Secret


@dataclass(frozen=True, slots=True)
class ApiConfig:
    socket: str = DEFAULT_SOCKET_PATH
    socket_mode: int = 0o660
    tcp_listen: str | None = None  # "host:port"; requires TLS + tokens
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tokens: tuple[ApiToken, ...] = ()
    reflection: bool = True


@dataclass(frozen=True, slots=True)
class MqttCommandsConfig:
    enabled: bool = False
    rename: bool = False
    dangerous: bool = False


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    client_id: str | None = None  # default micboardd-<site>
    base_topic: str | None = None  # default micboard/<site>
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    flat_topics: bool = False
    meter_interval_s: float = 1.0
    meter_deadband_db: float = 1.0
    commands: MqttCommandsConfig = field(default_factory=MqttCommandsConfig)


@dataclass(frozen=True, slots=True)
class AlertDefaults:
    low_battery_bars: int = 1
    low_runtime_minutes: int = 30

    def limits(self, slot: SlotAlerts | None) -> tuple[int, int]:
        """(bars, minutes) for a channel: the slot's own setting where it has one (0 included), else ours."""
        bars, mins = self.low_battery_bars, self.low_runtime_minutes
        if slot is not None:
            bars = slot.low_battery_bars if slot.low_battery_bars is not None else bars
            mins = slot.low_runtime_minutes if slot.low_runtime_minutes is not None else mins
        return bars, mins


@dataclass(frozen=True, slots=True)
class Config:
    site: str = "main"
    store_path: str = DEFAULT_STORE_PATH
    history_days: int = 14
    api: ApiConfig = field(default_factory=ApiConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    alerts: AlertDefaults = field(default_factory=AlertDefaults)
    devices: tuple[DeviceConfig, ...] = ()
    show_lock: bool = False
    log_level: str = "INFO"
    source: str = ""

    def device(self, device_id: str) -> DeviceConfig | None:
        return next((d for d in self.devices if d.id == device_id), None)


# ----------------------------------------------------------------------------- parsing


class _Reader:
    """Walks a TOML table collecting problems instead of stopping at the first."""

    def __init__(self, base_dir: Path) -> None:
        self.problems: list[tuple[str, str]] = []
        self.base_dir = base_dir

    def fail(self, path: str, msg: str) -> None:
        self.problems.append((path, msg))

    def table(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            self.fail(f"{path}{key}", f"must be a table ([{path}{key}]), got {type(value).__name__}")
            return {}
        return value

    def unknown(self, data: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.fail(f"{path}{key}" if key != "" else f'{path}""', f"unknown key; allowed here: {hint}")

    def get(self, data: Mapping[str, Any], key: str, typ: type | tuple[type, ...], default: Any, path: str) -> Any:
        if key not in data:
            return default
        value = data[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if typ is float and isinstance(value, float) and not math.isfinite(value):
            self.fail(f"{path}{key}", f"must be a finite number, got {value}")
            return default
        if isinstance(value, bool) and typ is not bool and (typ is int or typ is float):
            self.fail(f"{path}{key}", f"must be a number, got a boolean ({value})")
            return default
        if not isinstance(value, typ):
            want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            self.fail(f"{path}{key}", f"must be {want}, got {type(value).__name__} ({value!r})")
            return default
        return value

    def secret(self, data: Mapping[str, Any], key: str, path: str) -> Secret | None:
        """``key`` inline, ``key_file`` a file path, or ``key_credential`` a systemd credential name."""
        inline = data.get(key)
        file_ = data.get(f"{key}_file")
        cred = data.get(f"{key}_credential")
        given = [n for n, v in ((key, inline), (f"{key}_file", file_), (f"{key}_credential", cred)) if v is not None]
        if len(given) > 1:
            self.fail(f"{path}{given[1]}", f"give only one of {', '.join(given)}")
            return None
        if inline is not None:
            if not isinstance(inline, str):
                self.fail(f"{path}{key}", "must be a string")
                return None
            return Secret(inline)
        if cred is not None:
            cdir = os.environ.get("CREDENTIALS_DIRECTORY")
            if not cdir:
                self.fail(
                    f"{path}{key}_credential",
                    "CREDENTIALS_DIRECTORY is not set; add LoadCredential= to the unit or use "
                    f"{key}_file",
                )
                return None
            file_ = str(Path(cdir) / str(cred))
        if file_ is not None:
            p = Path(str(file_))
            if not p.is_absolute():
                p = self.base_dir / p
            try:
                return Secret(p.read_text(encoding="utf-8").strip())
            except OSError as exc:
                self.fail(f"{path}{key}_file", f"cannot read {p}: {exc.strerror or exc}")
            except UnicodeDecodeError:
                self.fail(f"{path}{key}_file", f"{p} is not UTF-8 text")
            except ValueError:  # a NUL byte in the path
                self.fail(f"{path}{key}_file", "the path contains a NUL byte")
        return None


_TOP = {"site", "store", "api", "mqtt", "alerts", "devices", "show_lock", "log_level", "defaults"}


def parse_config(data: Mapping[str, Any], *, source: str = "", base_dir: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    r = _Reader(base_dir or Path.cwd())
    r.unknown(data, _TOP, "")

    site = r.get(data, "site", str, "main", "")
    if not valid_id(site):
        r.fail("site", f"{site!r} must match [a-z0-9_-]{{1,64}}: it becomes part of MQTT topics and ids")

    store = r.table(data, "store", "")
    r.unknown(store, {"path", "history_days"}, "store.")
    store_path = r.get(store, "path", str, DEFAULT_STORE_PATH, "store.")
    history_days = r.get(store, "history_days", int, 14, "store.")

    defaults = r.table(data, "defaults", "")
    r.unknown(defaults, {"meter_rate_ms"}, "defaults.")
    default_rate = r.get(defaults, "meter_rate_ms", int, 1000, "defaults.")
    if default_rate != 0 and not MIN_METER_RATE_MS <= default_rate <= MAX_METER_RATE_MS:
        r.fail("defaults.meter_rate_ms", f"must be 0 (off) or {MIN_METER_RATE_MS}..{MAX_METER_RATE_MS}")
        default_rate = 1000

    api = _parse_api(r, r.table(data, "api", ""))
    mqtt = _parse_mqtt(r, r.table(data, "mqtt", ""))

    alerts_t = r.table(data, "alerts", "")
    r.unknown(alerts_t, {"low_battery_bars", "low_runtime_minutes"}, "alerts.")
    alerts = AlertDefaults(
        low_battery_bars=r.get(alerts_t, "low_battery_bars", int, 1, "alerts."),
        low_runtime_minutes=r.get(alerts_t, "low_runtime_minutes", int, 30, "alerts."),
    )

    devices_raw = data.get("devices", [])
    devices: list[DeviceConfig] = []
    if not isinstance(devices_raw, list):
        r.fail("devices", "must be an array of tables ([[devices]])")
        devices_raw = []
    seen: dict[str, int] = {}
    endpoints: dict[tuple[str, int, str], int] = {}
    for i, raw in enumerate(devices_raw):
        dev = _parse_device(r, raw, f"devices[{i}].", default_rate)
        if dev is None:
            continue
        if dev.id in seen:
            r.fail(f"devices[{i}].id", f"{dev.id!r} is already used by devices[{seen[dev.id]}]; ids must be unique")
            continue
        ep = (dev.host, dev.port, dev.family)
        if ep in endpoints:
            r.fail(f"devices[{i}].host", f"{dev.host}:{dev.port} is already devices[{endpoints[ep]}]")
            continue
        seen[dev.id] = i
        endpoints[ep] = i
        devices.append(dev)

    log_level = r.get(data, "log_level", str, "INFO", "").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        r.fail("log_level", "must be one of DEBUG, INFO, WARNING, ERROR")
        log_level = "INFO"

    if r.problems:
        raise ConfigError(r.problems, source)
    return Config(
        site=site,
        store_path=store_path,
        history_days=history_days,
        api=api,
        mqtt=mqtt,
        alerts=alerts,
        devices=tuple(devices),
        show_lock=r.get(data, "show_lock", bool, False, ""),
        log_level=log_level,
        source=source,
    )


def _parse_api(r: _Reader, t: Mapping[str, Any]) -> ApiConfig:
    allowed = {"socket", "socket_mode", "tcp_listen", "tls_cert_file", "tls_key_file", "tokens", "reflection"}
    r.unknown(t, allowed, "api.")
    mode_raw = r.get(t, "socket_mode", str, "0660", "api.")
    try:
        mode = int(mode_raw, 8)
    except ValueError:
        r.fail("api.socket_mode", f"{mode_raw!r} is not an octal file mode like \"0660\"")
        mode = 0o660
    tokens: list[ApiToken] = []
    raw_tokens = t.get("tokens", [])
    if not isinstance(raw_tokens, list):
        r.fail("api.tokens", "must be an array of tables ([[api.tokens]])")
        raw_tokens = []
    for i, tok in enumerate(raw_tokens):
        p = f"api.tokens[{i}]."
        if not isinstance(tok, Mapping):
            r.fail(p[:-1], "must be a table with name, role and token/token_file")
            continue
        r.unknown(tok, {"name", "role", "token", "token_file", "token_credential"}, p)
        role = r.get(tok, "role", str, "viewer", p)
        if role not in ROLES:
            r.fail(f"{p}role", f"{role!r} is not a role; use one of {', '.join(ROLES)}")
        secret = r.secret(tok, "token", p)
        if secret is None and not any(k in tok for k in ("token", "token_file", "token_credential")):
            r.fail(f"{p}token", "missing: give token_file (recommended) or token")
        if secret is not None:
            tokens.append(ApiToken(name=r.get(tok, "name", str, f"token{i}", p), role=role, token=secret))
    tcp = r.get(t, "tcp_listen", str, None, "api.")
    cert = r.get(t, "tls_cert_file", str, None, "api.")
    key = r.get(t, "tls_key_file", str, None, "api.")
    if tcp is not None:
        if not (cert and key):
            r.fail("api.tcp_listen", "a TCP listener needs TLS: set api.tls_cert_file and api.tls_key_file")
        if not tokens:
            r.fail("api.tcp_listen", "a TCP listener needs bearer tokens: add [[api.tokens]] entries")
        host, sep, port = tcp.rpartition(":")
        if not sep or not port.isdigit() or not host:
            r.fail("api.tcp_listen", f"{tcp!r} must be host:port, e.g. \"0.0.0.0:50051\"")
    return ApiConfig(
        socket=r.get(t, "socket", str, DEFAULT_SOCKET_PATH, "api."),
        socket_mode=mode,
        tcp_listen=tcp,
        tls_cert_file=cert,
        tls_key_file=key,
        tokens=tuple(tokens),
        reflection=r.get(t, "reflection", bool, True, "api."),
    )


def _parse_mqtt(r: _Reader, t: Mapping[str, Any]) -> MqttConfig:
    allowed = {
        "enabled", "host", "port", "username", "password", "password_file", "password_credential", "tls",
        "tls_ca_file", "client_id", "base_topic", "discovery", "discovery_prefix", "flat_topics",
        "meter_interval_s", "meter_deadband_db", "commands",
    }
    r.unknown(t, allowed, "mqtt.")
    cmds_t = r.table(t, "commands", "mqtt.")
    r.unknown(cmds_t, {"enabled", "rename", "dangerous"}, "mqtt.commands.")
    port = r.get(t, "port", int, 1883, "mqtt.")
    if not 0 < port < 65536:
        r.fail("mqtt.port", f"{port} is not a TCP port (1..65535)")
    base = r.get(t, "base_topic", str, None, "mqtt.")
    if base is not None and (not base or any(c in base for c in "#+") or base.endswith("/")):
        r.fail("mqtt.base_topic", f"{base!r} must be a plain topic prefix without wildcards or a trailing '/'")
    interval = r.get(t, "meter_interval_s", float, 1.0, "mqtt.")
    if interval < 1.0:
        r.fail("mqtt.meter_interval_s", "must be ≥ 1.0: meters are at most 1 Hz per channel on MQTT")
    return MqttConfig(
        enabled=r.get(t, "enabled", bool, True, "mqtt."),
        host=r.get(t, "host", str, "127.0.0.1", "mqtt."),
        port=port,
        username=r.get(t, "username", str, None, "mqtt."),
        password=r.secret(t, "password", "mqtt."),
        tls=r.get(t, "tls", bool, False, "mqtt."),
        tls_ca_file=r.get(t, "tls_ca_file", str, None, "mqtt."),
        client_id=r.get(t, "client_id", str, None, "mqtt."),
        base_topic=base,
        discovery=r.get(t, "discovery", bool, True, "mqtt."),
        discovery_prefix=r.get(t, "discovery_prefix", str, "homeassistant", "mqtt."),
        flat_topics=r.get(t, "flat_topics", bool, False, "mqtt."),
        meter_interval_s=interval,
        meter_deadband_db=r.get(t, "meter_deadband_db", float, 1.0, "mqtt."),
        commands=MqttCommandsConfig(
            enabled=r.get(cmds_t, "enabled", bool, False, "mqtt.commands."),
            rename=r.get(cmds_t, "rename", bool, False, "mqtt.commands."),
            dangerous=r.get(cmds_t, "dangerous", bool, False, "mqtt.commands."),
        ),
    )


_DEVICE_KEYS = {
    "id", "family", "model", "host", "port", "name", "enabled", "meter_rate_ms", "channels", "username",
    "password", "password_file", "password_credential", "tls_ca_file", "tls_insecure", "local_port", "options",
}


def _parse_device(r: _Reader, raw: Any, p: str, default_rate: int) -> DeviceConfig | None:
    if not isinstance(raw, Mapping):
        r.fail(p[:-1], "must be a table with at least family (or model) and host")
        return None
    before = len(r.problems)
    r.unknown(raw, _DEVICE_KEYS, p)
    model = r.get(raw, "model", str, None, p)
    family = r.get(raw, "family", str, None, p)
    if family is None and model is not None:
        family = MODEL_FAMILY.get(model.upper())
        if family is None:
            r.fail(f"{p}model", f"unknown model {model!r}; set family = one of {', '.join(FAMILIES)}")
            return None
    if family is None:
        r.fail(f"{p}family", f"missing: one of {', '.join(FAMILIES)} (or give a known model)")
        return None
    family = family.lower()
    if family not in FAMILIES:
        r.fail(f"{p}family", f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
        return None
    host = r.get(raw, "host", str, None, p)
    if not host:
        r.fail(f"{p}host", "missing: the device's IP address or host name")
        host = ""
    port = r.get(raw, "port", int, FAMILIES[family][1], p)
    if not 0 < port < 65536:
        r.fail(f"{p}port", f"{port} is not a port (1..65535)")
    dev_id = r.get(raw, "id", str, None, p)
    if dev_id is None:
        dev_id = slugify(f"{FAMILIES[family][0]}-{host}" + ("" if port == FAMILIES[family][1] else f"-{port}"))
    elif not valid_id(dev_id):
        r.fail(f"{p}id", f"{dev_id!r} must match [a-z0-9_-]{{1,64}} (it appears in MQTT topics)")
    rate = r.get(raw, "meter_rate_ms", int, default_rate, p)
    if rate != 0 and not MIN_METER_RATE_MS <= rate <= MAX_METER_RATE_MS:
        r.fail(f"{p}meter_rate_ms", f"{rate} must be 0 (off) or {MIN_METER_RATE_MS}..{MAX_METER_RATE_MS} ms")
    channels = r.get(raw, "channels", int, None, p)
    if channels is not None and not 1 <= channels <= 16:
        r.fail(f"{p}channels", "must be 1..16")
    options = r.get(raw, "options", Mapping, {}, p)
    password = r.secret(raw, "password", p)
    insecure = r.get(raw, "tls_insecure", bool, False, p)
    if len(r.problems) > before:
        return None
    return DeviceConfig(
        id=dev_id,
        family=family,
        host=host,
        port=port,
        model=model,
        name=r.get(raw, "name", str, None, p),
        enabled=r.get(raw, "enabled", bool, True, p),
        meter_rate_ms=rate,
        channels=channels,
        username=r.get(raw, "username", str, None, p),
        password=password,
        tls_ca_file=r.get(raw, "tls_ca_file", str, None, p),
        tls_insecure=insecure,
        local_port=r.get(raw, "local_port", int, None, p),
        options=dict(options),
        password_ref={k: str(raw[k]) for k in ("password_file", "password_credential") if k in raw},
    )


def parse_device(raw: Mapping[str, Any], *, default_rate: int = 1000, base_dir: Path | None = None) -> DeviceConfig:
    """Validate one device table (config file or API); ConfigError paths start with ``device.``."""
    r = _Reader(base_dir or Path.cwd())
    dev = _parse_device(r, raw, "device.", default_rate)
    if r.problems or dev is None:
        raise ConfigError(r.problems or [("device", "invalid device")], "device")
    return dev


def device_to_dict(dev: DeviceConfig) -> dict[str, Any]:
    """The TOML/JSON table that ``parse_device`` turns back into ``dev`` — without any secret value."""
    out: dict[str, Any] = {"id": dev.id, "family": dev.family, "host": dev.host, "port": dev.port}
    optional = {
        "model": dev.model, "name": dev.name, "channels": dev.channels, "username": dev.username,
        "tls_ca_file": dev.tls_ca_file, "local_port": dev.local_port,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    out["enabled"] = dev.enabled
    out["meter_rate_ms"] = dev.meter_rate_ms
    if dev.tls_insecure:
        out["tls_insecure"] = True
    if dev.options:
        out["options"] = dict(dev.options)
    out.update(dev.password_ref)
    return out


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML file; ConfigError lists every problem with its key path."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read {p}: {exc.strerror or exc}")], str(p)) from exc
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([("(file)", f"not UTF-8 text: {exc}")], str(p)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(syntax)", f"{exc}; check quoting and [table] headers")], str(p)) from exc
    return parse_config(data, source=str(p), base_dir=p.parent)
