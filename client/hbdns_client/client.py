"""``hbdns-client``: sends heartbeats from the customer's network. Standard library only.

``run`` beats every ``interval`` seconds (a little early, with jitter, never late) over every address
family the server name has (a beat sets the A or AAAA record of its family) and logs the public
address the server saw. Beats are fire-and-forget UDP: a reply to every beat would double the
server's packet work, so ``run`` asks for one on every beat only until the first answer and after an
unanswered ask, otherwise once ``reply_every`` seconds have passed since the last ask. SIGTERM/SIGINT
send an OFFLINE beat first (it always asks), so DNS is neutralized at once instead of after the
missed beats. ``send`` sends one beat (``--offline`` for a planned shutdown), always asking, and says
the outcome in its exit code, for scripts and cron.

The server never answers a beat it cannot verify (no reflection for forged packets), so a wrong key or
account id looks like silence: ``run`` gives up with exit code 2 when its first beats get no
authenticated reply, and names the likely causes. Once it has had an answer it keeps beating through
outages: an unreachable server must not stop the client.

Configuration: a file of ``key = value`` lines (``#`` comments), written by
``hbdns account add --client-config PATH`` (see :func:`write_client_config`), then ``HBDNS_CLIENT_*``
environment variables, then command-line options, each overriding the one before. Keys: ``server``
(host:port or [v6]:port), ``account_id``, ``key`` (64 hex characters) or ``key_file``, ``interval``
(seconds), ``source`` (local address to send from), ``reply_every`` (seconds between beats that ask
for a reply once answered, default 30; 0: every beat).

Exit codes: 0 ok; 1 no answer (``send``); 2 no authenticated answer to the first beats (``run``: bad key
or account id, or server unreachable); 3 the server says our clock is off; 78 configuration error.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from hbdns_client import wire

log = logging.getLogger("hbdns_client.client")

DEFAULT_PORT = 8999
DEFAULT_INTERVAL = 5.0
DEFAULT_REPLY_EVERY = 30.0  # seconds between beats that ask for a reply, once answered (0: every beat)
FIRST_TRIES = 3  # beats without an authenticated answer before `run` gives up (never answered before)
RESOLVE_EVERY = 600.0  # seconds between name lookups of the server (also after 3 unanswered beats)

EXIT_OK, EXIT_NO_ANSWER, EXIT_REJECTED, EXIT_CLOCK, EXIT_CONFIG = 0, 1, 2, 3, 78

ENV = {
    "server": "HBDNS_CLIENT_SERVER",
    "account_id": "HBDNS_CLIENT_ACCOUNT_ID",
    "key": "HBDNS_CLIENT_KEY",
    "key_file": "HBDNS_CLIENT_KEY_FILE",
    "interval": "HBDNS_CLIENT_INTERVAL",
    "source": "HBDNS_CLIENT_SOURCE",
    "reply_every": "HBDNS_CLIENT_REPLY_EVERY",
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

    @property
    def server(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# --- configuration ---------------------------------------------------------------------------------


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
    try:
        interval = float(values.get("interval") or DEFAULT_INTERVAL)
    except ValueError:
        raise ConfigError(f"interval {values['interval']!r} is not a number") from None
    if not 0.05 <= interval <= 86400:
        raise ConfigError(f"interval {interval} out of range (0.05 .. 86400 seconds)")
    try:
        reply_every = float(values.get("reply_every") or DEFAULT_REPLY_EVERY)
    except ValueError:
        raise ConfigError(f"reply_every {values['reply_every']!r} is not a number") from None
    if not (math.isfinite(reply_every) and reply_every >= 0):
        raise ConfigError(f"reply_every {reply_every} out of range (0 or more seconds; 0: ask on every beat)")
    return ClientConfig(host, port, account_id, key, interval, values.get("source", "").strip(), reply_every)


def write_client_config(path: str | Path, server: str, account_id: int, key: bytes | str, interval: float) -> None:
    """Write a config file ``hbdns-client`` reads (mode 0600: it holds the heartbeat key)."""
    key_hex = key.hex() if isinstance(key, bytes) else key
    parse_key(key_hex)
    parse_server(server)
    text = (
        "# hbdns-client configuration. Keep it secret: 'key' authenticates this account's heartbeats.\n"
        "# Use: hbdns-client run --config THIS_FILE   (or: hbdns-client send --config THIS_FILE)\n"
        f"server = {server}\n"
        f"account_id = {int(account_id)}\n"
        f"key = {key_hex}\n"
        f"interval = {interval:g}\n"
        "# source = 192.0.2.10    # optional: local address to send from\n"
        "# reply_every = 30       # optional: seconds between beats that ask for an answer (0: every beat)\n"
    )
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, target)


# --- beating ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one beat: the authenticated replies (one per address family that answered)."""

    replies: tuple[wire.Reply, ...] = ()
    interrupted: bool = False  # a signal cut the wait short

    @property
    def reply(self) -> wire.Reply | None:
        """The best answer: an accepted one if any family had one."""
        good = [r for r in self.replies if r.status in (wire.STATUS_OK, wire.STATUS_OFFLINE_OK)]
        best = good or list(self.replies)
        return best[0] if best else None

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply.status in (wire.STATUS_OK, wire.STATUS_OFFLINE_OK)

    @property
    def clock_skew(self) -> bool:
        return self.reply is not None and self.reply.status == wire.STATUS_CLOCK_SKEW


class Beater:
    """Builds, sends and matches beats for one account; owns the sockets and the counter.

    A beat over IPv4 sets the A record, over IPv6 the AAAA record. So each beat goes out over every
    address family the server name resolves to (one packet each, consecutive counters), unless
    ``source`` pins the family: a dual-stack site keeps both records current.
    """

    def __init__(self, cfg: ClientConfig, wakeup_fd: int | None = None) -> None:
        self.cfg = cfg
        self.wakeup_fd = wakeup_fd  # readable when a signal arrived: stop waiting
        self.last_counter = 0
        self.targets: dict[int, tuple[socket.socket, tuple[object, ...]]] = {}  # family -> (socket, address)
        self.resolved_at = -1e18

    def counter(self) -> int:
        """Unix ms, but strictly increasing even if the clock steps back (the server drops repeats)."""
        self.last_counter = max(time.time_ns() // 1_000_000, self.last_counter + 1)
        return self.last_counter

    def resolve(self) -> None:
        """Look the server name up and open one socket per address family it has."""
        cfg = self.cfg
        family = socket.AF_UNSPEC
        if cfg.source:
            family = socket.AF_INET6 if ":" in cfg.source else socket.AF_INET
        try:
            infos = socket.getaddrinfo(cfg.host, cfg.port, family, socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {cfg.host}: {exc.strerror}") from None
        wanted: dict[int, tuple[object, ...]] = {}
        for info in infos:
            if info[0] in (socket.AF_INET, socket.AF_INET6):
                wanted.setdefault(int(info[0]), tuple(info[4]))
        for old in list(self.targets):
            if old not in wanted:
                self.targets.pop(old)[0].close()
        for fam, addr in wanted.items():
            if fam in self.targets:
                self.targets[fam] = (self.targets[fam][0], addr)
                continue
            sock = socket.socket(fam, socket.SOCK_DGRAM)
            try:
                if cfg.source:
                    sock.bind((cfg.source, 0))
            except OSError:
                sock.close()
                raise
            self.targets[fam] = (sock, addr)
        self.resolved_at = time.monotonic()

    def close(self) -> None:
        for sock, _ in self.targets.values():
            sock.close()
        self.targets.clear()

    def family_gap(self) -> float:
        """Seconds between the families' beats when not waiting for answers (see :meth:`beat`)."""
        return min(0.5, self.cfg.interval / 10)

    def beat(self, *, offline: bool = False, timeout: float = 2.0, reply: bool = True) -> Outcome:
        """Send one beat per family and, if ``reply``, ask for and wait for the authenticated answers.

        Families take turns, each with a new counter sent after the previous answer came (or its
        share of ``timeout`` passed) or, without ``reply``, after :meth:`family_gap`: IPv4 and IPv6
        take different paths, and a counter that overtook its predecessor would make the predecessor
        a replay. Without ``reply`` the outcome has no replies. Raises OSError only when no family
        could send at all.
        """
        if not self.targets or time.monotonic() - self.resolved_at > RESOLVE_EVERY:
            self.resolve()
        flags = (wire.FLAG_REPLY if reply else 0) | (wire.FLAG_OFFLINE if offline else 0)
        replies: list[wire.Reply] = []
        error: OSError | None = None
        sent = 0
        targets = list(self.targets.values())
        share = timeout / len(targets)
        for sock, addr in targets:
            if not reply and sent and self._pause(self.family_gap()):
                return Outcome(interrupted=True)
            packet = wire.encode_beat(self.cfg.account_id, self.counter(), self.cfg.key, flags)
            try:
                sock.sendto(packet, addr)
            except OSError as exc:  # e.g. no IPv6 route here: the other family may still work
                error = exc
                continue
            sent += 1
            if not reply:
                continue
            answer, interrupted = self._await_reply(sock, packet, time.monotonic() + share)
            if answer is not None:
                replies.append(answer)
            if interrupted:
                return Outcome(tuple(replies), interrupted=True)
        if not sent:
            raise error or OSError("no address to send to")
        return Outcome(tuple(replies))

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if a signal came (then True), like :meth:`_await_reply`."""
        if self.wakeup_fd is None:
            time.sleep(seconds)
            return False
        ready, _, _ = select.select([self.wakeup_fd], [], [], seconds)
        return bool(ready)

    def _await_reply(self, sock: socket.socket, packet: bytes, deadline: float) -> tuple[wire.Reply | None, bool]:
        """The authenticated answer to ``packet`` on ``sock`` by ``deadline``; also whether a signal came."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, False
            fds: list[int | socket.socket] = [sock]
            if self.wakeup_fd is not None:
                fds.append(self.wakeup_fd)
            ready, _, _ = select.select(fds, [], [], left)
            if self.wakeup_fd is not None and self.wakeup_fd in ready:
                return None, True
            if sock not in ready:
                continue
            try:
                data = sock.recv(64)
            except OSError:  # e.g. ICMP port unreachable reported on the socket
                continue
            try:
                return wire.parse_reply(data, packet, self.cfg.key), False
            except wire.WireError:
                continue  # an answer to an older beat, or not from the server: keep waiting


_REJECTED_HELP = (
    "no authenticated answer from {server} to {n} heartbeats. The server stays silent for beats it "
    "cannot verify, so the likely causes are: a wrong key or account id (compare with "
    "'hbdns account show' on the server, or rotate the key and write a new client config), "
    "the server or UDP port {port} not reachable from here (firewall, wrong address), "
    "or the listener not running."
)


class Runner:
    """The ``run`` loop as a step function (one beat per call), so tests drive it directly.

    Not every beat asks for a reply (see :meth:`wants_reply`): a beat that does not ask is sent and
    forgotten, never judged answered or unanswered. ``clock`` is the monotonic clock (for tests).
    """

    def __init__(
        self, beater: Beater, first_tries: int = FIRST_TRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.beater = beater
        self.first_tries = first_tries
        self.clock = clock
        self.answered_once = False
        self.unanswered = 0  # beats in a row that asked and got no answer (or could not be sent)
        self.asked_at: float | None = None  # clock() of the last beat that asked
        self.skewed = 0
        self.public: dict[int, str] = {}  # address family (4/6) -> public address the server saw
        self._skew_logged = 0.0

    def wants_reply(self, now: float) -> bool:
        """Whether the beat at ``now`` asks for a reply.

        Every beat until the first answer (to tell a wrong key from a working one) and after an
        unanswered ask (to notice outages and recovery), else at least ``reply_every`` seconds after
        the last ask: a reply per beat would double the server's packets for little news.
        """
        if not self.answered_once or self.unanswered or self.asked_at is None:
            return True
        return now - self.asked_at >= self.beater.cfg.reply_every

    def step(self) -> int | None:
        """Send one beat and judge the answer if it asked for one; an exit code means stop."""
        cfg = self.beater.cfg
        now = self.clock()
        ask = self.wants_reply(now)
        if ask:
            self.asked_at = now
        try:
            outcome = self.beater.beat(timeout=min(2.0, cfg.interval * 0.8), reply=ask)
        except OSError as exc:  # not sent at all: a failure whether or not it asked, so the next beats ask
            outcome, ask = Outcome(), True
            if self.unanswered == 0:
                log.warning("cannot send heartbeat: %s", exc)
        if outcome.interrupted or not ask:
            return None
        if outcome.reply is None:
            self.unanswered += 1
            if not self.answered_once and self.unanswered >= self.first_tries:
                log.error(_REJECTED_HELP.format(server=cfg.server, n=self.unanswered, port=cfg.port))
                return EXIT_REJECTED
            if self.answered_once and self.unanswered == 3:
                log.warning("no answer from %s to the last 3 heartbeats; still beating", cfg.server)
                self.beater.resolved_at = -1e18  # look the name up again before the next beat
            return None
        if self.answered_once and self.unanswered >= 3:
            log.info("%s answers again after %d unanswered heartbeats", cfg.server, self.unanswered)
        self.unanswered = 0
        if outcome.clock_skew:
            self.skewed += 1
            if not self.answered_once and self.skewed >= self.first_tries:
                log.error("the server says this machine's clock is off too far (key and account are right); fix NTP")
                return EXIT_CLOCK
            now = time.monotonic()
            if now - self._skew_logged > 300:
                log.error("the server says this machine's clock is off too far: heartbeats are not accepted; fix NTP")
                self._skew_logged = now
            return None
        self.answered_once = True
        self.skewed = 0
        for reply in outcome.replies:
            family = 6 if ":" in reply.address else 4
            old = self.public.get(family)
            if old is None:
                log.info("heartbeats accepted by %s; public IPv%d address %s", cfg.server, family, reply.address)
            elif old != reply.address:
                log.info("public IPv%d address changed from %s to %s", family, old, reply.address)
            self.public[family] = reply.address
        return None

    def delay(self) -> float:
        """Seconds to the next beat: the interval minus up to 5% jitter, never later than the interval."""
        return self.beater.cfg.interval * random.uniform(0.95, 1.0)


def _wait(seconds: float, wakeup_fd: int) -> None:
    select.select([wakeup_fd], [], [], max(0.0, seconds))


def cmd_run(cfg: ClientConfig) -> int:
    stopping = False
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    os.set_blocking(rfd, False)

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    beater = Beater(cfg, wakeup_fd=rfd)
    runner = Runner(beater)
    log.info(
        "beating to %s every %gs as account %d; once answered, asking for a reply every %gs",
        cfg.server,
        cfg.interval,
        cfg.account_id,
        cfg.reply_every,
    )
    try:
        while not stopping:
            started = time.monotonic()
            result = runner.step()
            if result is not None:
                return result
            if not stopping:
                _wait(runner.delay() - (time.monotonic() - started), rfd)
        try:  # drain the wake-up pipe so the offline beat's wait is not cut short
            while os.read(rfd, 512):
                pass
        except BlockingIOError:
            pass
        beater.wakeup_fd = None
        try:
            outcome = beater.beat(offline=True, timeout=2.0)
        except OSError as exc:
            outcome = Outcome()
            log.warning("cannot send the offline heartbeat: %s", exc)
        if outcome.ok:
            log.info("offline heartbeat accepted: the account is neutral now")
        else:
            log.warning("no answer to the offline heartbeat; the account is neutralized after the missed beats")
    finally:
        beater.close()
        signal.set_wakeup_fd(-1)
        os.close(rfd)
        os.close(wfd)
    return EXIT_OK


def cmd_send(cfg: ClientConfig, offline: bool, timeout: float, tries: int) -> int:
    beater = Beater(cfg)
    try:
        for _ in range(max(1, tries)):
            try:
                outcome = beater.beat(offline=offline, timeout=timeout)
            except OSError as exc:
                print(f"hbdns-client: {exc}", file=sys.stderr)
                return EXIT_NO_ANSWER
            if outcome.reply is not None:
                break
    finally:
        beater.close()
    if outcome.reply is None:
        print(
            "hbdns-client: " + _REJECTED_HELP.format(server=cfg.server, n=max(1, tries), port=cfg.port),
            file=sys.stderr,
        )
        return EXIT_NO_ANSWER
    for reply in outcome.replies:
        print(f"{wire.STATUS_NAMES.get(reply.status, str(reply.status))} {reply.address}")
    if outcome.clock_skew:
        print("hbdns-client: the server says this machine's clock is off too far; fix NTP", file=sys.stderr)
        return EXIT_CLOCK
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the subcommand is not reset by the subcommand's defaults
    sup = argparse.SUPPRESS
    common.add_argument("--config", "-c", default=sup, help="config file (key = value lines)")
    common.add_argument("--server", default=sup, help="host:port or [v6]:port (overrides the file)")
    common.add_argument("--account-id", default=sup)
    common.add_argument("--key-file", default=sup, help="file holding the 64-hex-character key")
    common.add_argument("--interval", default=sup, help="seconds between beats")
    common.add_argument("--source", default=sup, help="local address to send from")
    common.add_argument(
        "--reply-every", default=sup, help="run: seconds between beats that ask for a reply (default 30; 0: every beat)"
    )
    common.add_argument("--verbose", "-v", action="store_true", default=sup)
    parser = argparse.ArgumentParser(
        prog="hbdns-client",
        parents=[common],
        description="Heartbeat client for hbdns. Exit codes: 0 ok, 1 no answer, 2 no authenticated "
        "answer to the first beats (bad key/account id or server unreachable), 3 clock off, 78 bad config.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", parents=[common], help="beat every interval until SIGTERM/SIGINT (then an offline beat)")
    send = sub.add_parser("send", parents=[common], help="send one beat and wait for the answer")
    send.add_argument("--offline", action="store_true", help="going offline: neutralize now")
    send.add_argument("--timeout", type=float, default=2.0, help="seconds to wait per try (default 2)")
    send.add_argument("--tries", type=int, default=3, help="beats to send until one is answered (default 3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s hbdns-client %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    overrides = {
        "server": getattr(args, "server", None),
        "account_id": getattr(args, "account_id", None),
        "key_file": getattr(args, "key_file", None),
        "interval": getattr(args, "interval", None),
        "source": getattr(args, "source", None),
        "reply_every": getattr(args, "reply_every", None),
    }
    try:
        cfg = load_config(getattr(args, "config", None), overrides=overrides)
    except ConfigError as exc:
        print(f"hbdns-client: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "run":
        return cmd_run(cfg)
    return cmd_send(cfg, args.offline, args.timeout, args.tries)


if __name__ == "__main__":
    sys.exit(main())
