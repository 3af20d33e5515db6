"""The client's configuration: a file of ``key = value`` lines, ``HBDNS_CLIENT_*`` variables, options.

Each source overrides the one before. The file is what ``hbdns account add --client-config PATH``
writes (:func:`write_client_config`). Keys: ``server`` (host:port or [v6]:port), ``account_id``,
``key`` (64 hex characters) or ``key_file``, ``interval`` (seconds), ``source`` (local address to
send from), ``reply_every`` (seconds between beats that ask for a reply once answered, default 30;
0: every beat), ``state_file`` (where the last counter is kept, see :mod:`hbdns_client.state`) and
``log_file`` (append the log there instead of stderr: a Windows scheduled task has no console).

Everything that is wrong here is a :class:`ConfigError` (exit code 78): the one thing that stops
``hbdns-client run``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath

from hbdns_client import wire

DEFAULT_PORT = 8999
DEFAULT_INTERVAL = 5.0
DEFAULT_REPLY_EVERY = 30.0  # seconds between beats that ask for a reply, once answered (0: every beat)

ENV = {
    "server": "HBDNS_CLIENT_SERVER",
    "account_id": "HBDNS_CLIENT_ACCOUNT_ID",
    "key": "HBDNS_CLIENT_KEY",
    "key_file": "HBDNS_CLIENT_KEY_FILE",
    "interval": "HBDNS_CLIENT_INTERVAL",
    "source": "HBDNS_CLIENT_SOURCE",
    "reply_every": "HBDNS_CLIENT_REPLY_EVERY",
    "state_file": "HBDNS_CLIENT_STATE_FILE",
    "log_file": "HBDNS_CLIENT_LOG_FILE",
}


class ConfigError(ValueError):
    """The client's configuration is missing something or has a bad value."""


@dataclass(frozen=True)
class ClientConfig:
    host: str
    port: int
    account_id: int
    key: bytes = field(repr=False)
    interval: float = DEFAULT_INTERVAL
    source: str = ""
    reply_every: float = DEFAULT_REPLY_EVERY
    state_file: str = ""  # "" : no state kept (tests); load_config always fills it in
    log_file: str = ""

    @property
    def server(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(text: str) -> tuple[str, int]:
    """'host:port', '[v6]:port', 'host' or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    if not text:
        raise ConfigError("server is empty")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"server {text!r}: expected [ipv6]:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text:
            raise ConfigError(f"server {text!r}: port missing after ':'")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"server {text!r}: port must be a number") from None
    if not host or not 0 < port < 65536:
        raise ConfigError(f"server {text!r}: expected host:port")
    return host, port


def parse_key(text: str, origin: str = "key") -> bytes:
    text = "".join(text.split())
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{origin}: not hexadecimal (expected {wire.KEY_LEN * 2} hex characters)") from None
    if len(key) != wire.KEY_LEN:
        raise ConfigError(f"{origin}: {len(key)} bytes, expected {wire.KEY_LEN} ({wire.KEY_LEN * 2} hex characters)")
    return key


def read_config_file(path: str | Path) -> dict[str, str]:
    """``key = value`` lines; ``#`` starts a comment; surrounding quotes are removed."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not name:
            raise ConfigError(f"{path}:{number}: expected 'key = value'")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name not in ENV:
            raise ConfigError(f"{path}:{number}: unknown setting {name!r} (known: {', '.join(ENV)})")
        values[name] = value
    return values


def default_state_dir(env: Mapping[str, str] | None = None, platform: str = os.name) -> PurePath:
    """Where the counter is kept when ``state_file`` is not set (``platform``: ``os.name``).

    On Windows ``%ProgramData%\\hbdns-client`` (shared by the scheduled task and an administrator's
    ``check``). Elsewhere systemd's ``StateDirectory=`` (``$STATE_DIRECTORY``) first; else
    ``/var/lib/hbdns-client`` for root (what the systemd unit uses, so ``check`` as root shares it)
    and ``$XDG_STATE_HOME/hbdns-client`` (``~/.local/state/hbdns-client``) for other users.
    """
    env = os.environ if env is None else env
    if platform == "nt":
        base = env.get("ProgramData") or env.get("PROGRAMDATA") or r"C:\ProgramData"
        return PureWindowsPath(base) / "hbdns-client"
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/hbdns-client")
    home = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(home) / "hbdns-client"


def _number(values: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(values.get(name) or default)
    except ValueError:
        raise ConfigError(f"{name} {values[name]!r} is not a number") from None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
) -> ClientConfig:
    """File, then ``HBDNS_CLIENT_*`` from ``env``, then ``overrides`` (command-line options)."""
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    base = Path(".")
    if path:
        values.update(read_config_file(path))
        base = Path(path).resolve().parent
    for name, var in ENV.items():
        if env.get(var):
            values[name] = env[var]
            if name == "key_file":
                values.pop("key", None)
            if name == "key":
                values.pop("key_file", None)
    for name, value in (overrides or {}).items():
        if value not in (None, ""):
            values[name] = str(value)
            if name == "key_file":
                values.pop("key", None)
    missing = [n for n in ("server", "account_id") if not values.get(n)]
    if not values.get("key") and not values.get("key_file"):
        missing.append("key or key_file")
    if missing:
        where = f"{path} or " if path else ""
        raise ConfigError(f"missing {', '.join(missing)} (set them in {where}HBDNS_CLIENT_* or options)")
    host, port = parse_server(values["server"])
    try:
        account_id = int(values["account_id"])
    except ValueError:
        raise ConfigError(f"account_id {values['account_id']!r} is not a number") from None
    if not 0 <= account_id <= wire.MAX_ACCOUNT_ID:
        raise ConfigError(f"account_id {account_id} out of range")
    if values.get("key"):
        key = parse_key(values["key"])
    else:
        key_path = Path(values["key_file"])
        if not key_path.is_absolute():
            key_path = base / key_path
        try:
            key = parse_key(key_path.read_text(), f"key file {key_path}")
        except OSError as exc:
            raise ConfigError(f"cannot read key file {key_path}: {exc.strerror or exc}") from None
    interval = _number(values, "interval", DEFAULT_INTERVAL)
    if not 0.05 <= interval <= 86400:
        raise ConfigError(f"interval {interval} out of range (0.05 .. 86400 seconds)")
    reply_every = _number(values, "reply_every", DEFAULT_REPLY_EVERY)
    if not (math.isfinite(reply_every) and reply_every >= 0):
        raise ConfigError(f"reply_every {reply_every} out of range (0 or more seconds; 0: ask on every beat)")
    state_file = values.get("state_file", "").strip()
    if state_file and not Path(state_file).is_absolute():
        state_file = str(base / state_file)
    return ClientConfig(
        host=host,
        port=port,
        account_id=account_id,
        key=key,
        interval=interval,
        source=values.get("source", "").strip(),
        reply_every=reply_every,
        state_file=state_file or str(default_state_dir(env) / f"account-{account_id}.state"),
        log_file=values.get("log_file", "").strip(),
    )


def write_client_config(path: str | Path, server: str, account_id: int, key: bytes | str, interval: float) -> None:
    """Write a config file ``hbdns-client`` reads (mode 0600 on POSIX: it holds the heartbeat key).

    On Windows the mode only sets read/write; keep the file in a folder only administrators and
    the task's account can read (docs/client.md).
    """
    key_hex = key.hex() if isinstance(key, bytes) else key
    parse_key(key_hex)
    parse_server(server)
    text = (
        "# hbdns-client configuration. Keep it secret: 'key' authenticates this account's heartbeats.\n"
        "# Use: hbdns-client run --config THIS_FILE   (or: hbdns-client check --config THIS_FILE)\n"
        f"server = {server}\n"
        f"account_id = {int(account_id)}\n"
        f"key = {key_hex}\n"
        f"interval = {interval:g}\n"
        "# source = 192.0.2.10    # optional: local address to send from\n"
        "# reply_every = 30       # optional: seconds between beats that ask for an answer (0: every beat)\n"
        "# state_file = /var/lib/hbdns-client/account.state   # optional: where the last counter is kept\n"
        "# log_file = C:\\ProgramData\\hbdns-client\\client.log   # optional: log there instead of stderr\n"
    )
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, target)
