"""Sending beats and matching their answers: one socket per address family the server name has.

A beat over IPv4 sets the account's A record, over IPv6 its AAAA record, so each beat goes out over
every family the name resolves to (one packet each, consecutive counters) unless ``source`` pins
one: a dual-stack site keeps both records current. Families take turns, each beat sent after the
previous one's answer (or its share of the timeout) or, for beats that ask nothing, after a short
gap: IPv4 and IPv6 take different paths, and a counter that overtook its predecessor would make the
predecessor a replay.

Only sockets and ``select`` on sockets are used (Windows' ``select`` takes nothing else); the stop
request is a socket too (:mod:`hbdns_client.stopping`), so every wait ends as soon as it comes.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from dataclasses import dataclass
from typing import Protocol

from hbdns_client import wire
from hbdns_client.clock import ServerClock
from hbdns_client.config import ClientConfig
from hbdns_client.counters import Counters
from hbdns_client.resolve import NameNotResolved, Resolver, Target

RESOLVE_EVERY = 600.0  # seconds between lookups of the server name while all is well


class Wake(Protocol):
    """Readable (``fileno``) once a stop was requested."""

    requested: bool

    def fileno(self) -> int: ...


@dataclass(frozen=True)
class Sent:
    """One packet of a beat: its family (4 or 6), where it went and what came back."""

    family: int
    target: str
    counter: int
    reply: wire.Reply | None = None
    rtt: float | None = None  # seconds until the reply
    refused: bool = False  # ICMP port unreachable came back: nothing listens there


@dataclass(frozen=True)
class Outcome:
    """What became of one beat."""

    sent: tuple[Sent, ...] = ()
    send_errors: tuple[str, ...] = ()  # families whose packet could not leave ("IPv6: no route")
    resolve_error: str = ""  # the lookup failed; the last known addresses were used
    interrupted: bool = False  # a stop request cut it short

    @property
    def replies(self) -> tuple[wire.Reply, ...]:
        return tuple(s.reply for s in self.sent if s.reply is not None)

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
        return any(r.status == wire.STATUS_CLOCK_SKEW for r in self.replies)

    @property
    def refused(self) -> bool:
        return any(s.refused for s in self.sent)


def _address(target: Target) -> str:
    host = str(target[0])
    return f"[{host}]:{target[1]}" if ":" in host else f"{host}:{target[1]}"


class Beater:
    """Builds, sends and matches beats for one account; owns the sockets, the counters and the lookups."""

    def __init__(
        self,
        cfg: ClientConfig,
        counters: Counters,
        wake: Wake | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.cfg = cfg
        self.counters = counters
        self.server_clock: ServerClock = counters.clock
        self.wake = wake
        self.resolver = resolver or Resolver(cfg.host, cfg.port, cfg.source)
        self.targets: dict[int, tuple[socket.socket, Target]] = {}  # family -> (socket, server address)
        self.resolved_at = -1e18  # monotonic time of the last successful lookup
        self.refresh_due = True

    # --- addresses ---------------------------------------------------------------------------------

    def resolve(self, timeout: float | None = None) -> None:
        """Look the server name up (raises :class:`NameNotResolved`) and open a socket per family."""
        wake = self.wake
        wanted = self.resolver.lookup((lambda: bool(wake.requested)) if wake is not None else (lambda: False), timeout)
        for old in list(self.targets):
            if old not in wanted:
                self.targets.pop(old)[0].close()
        errors = []
        for fam, addr in wanted.items():
            if fam in self.targets:
                self.targets[fam] = (self.targets[fam][0], addr)
                continue
            try:
                sock = socket.socket(fam, socket.SOCK_DGRAM)  # EAFNOSUPPORT where IPv6 is switched off
            except OSError as exc:
                errors.append(exc)
                continue
            try:
                sock.setblocking(False)
                if self.cfg.source:
                    sock.bind((self.cfg.source, 0))  # EADDRNOTAVAIL while the address is not up yet
            except OSError as exc:
                sock.close()
                errors.append(exc)
                continue
            self.targets[fam] = (sock, addr)
        if not self.targets:  # no family can send: the caller reports it and tries again later
            raise errors[0]
        self.resolved_at = time.monotonic()
        self.refresh_due = False

    def _ensure_targets(self) -> str:
        """Resolve if due; the lookup's error if it failed but old addresses remain (else it raises)."""
        if not self.refresh_due and self.targets and time.monotonic() - self.resolved_at < RESOLVE_EVERY:
            return ""
        try:
            self.resolve()
        except NameNotResolved as exc:
            if not self.targets:
                raise
            return str(exc)
        return ""

    def close(self) -> None:
        for sock, _ in self.targets.values():
            sock.close()
        self.targets.clear()

    # --- beats -------------------------------------------------------------------------------------

    def family_gap(self) -> float:
        """Seconds between the families' beats when not waiting for answers."""
        return min(0.5, self.cfg.interval / 10)

    def beat(self, *, offline: bool = False, timeout: float = 2.0, reply: bool = True, lookup: bool = True) -> Outcome:
        """One packet per family; with ``reply``, each asks for and waits for its authenticated answer.

        Raises :class:`NameNotResolved` when there is no address at all, and OSError when no family's
        packet could leave (no route, source address not up yet). ``lookup=False``: the addresses known
        now, no name lookup even if one is due.
        """
        if lookup:
            resolve_error = self._ensure_targets()
        elif not self.targets:
            raise NameNotResolved(f"no address known for {self.cfg.host}")
        else:
            resolve_error = ""
        flags = (wire.FLAG_REPLY if reply else 0) | (wire.FLAG_OFFLINE if offline else 0)
        sent: list[Sent] = []
        errors: list[str] = []
        targets = list(self.targets.items())
        deadline = time.monotonic() + timeout
        for i, (fam, (sock, addr)) in enumerate(targets):
            family = 6 if fam == socket.AF_INET6 else 4
            if not reply and sent and self._pause(self.family_gap()):
                return Outcome(tuple(sent), tuple(errors), resolve_error, interrupted=True)
            counter = self.counters.next()
            packet = wire.encode_beat(self.cfg.account_id, counter, self.cfg.key, flags)
            try:
                sock.sendto(packet, addr)
            except OSError as exc:  # e.g. no IPv6 route here: the other family may still work
                errors.append(f"IPv{family}: {exc.strerror or exc}")
                continue
            if not reply:
                sent.append(Sent(family, _address(addr), counter))
                continue
            share = deadline + (i + 1 - len(targets)) * timeout / len(targets)  # this family's turn ends
            started = time.monotonic()
            answer, refused, interrupted = self._await_reply(sock, packet, share)
            rtt = time.monotonic() - started if answer is not None else None
            if answer is not None and answer.status == wire.STATUS_CLOCK_SKEW:
                self.counters.refused(counter, answer.server_ms, answer.window_ms)
                if answer.server_ms is not None:
                    self.server_clock.sync(answer.server_ms, time.monotonic() - (rtt or 0) / 2, answer.window_ms)
            sent.append(Sent(family, _address(addr), counter, answer, rtt, refused))
            if interrupted:
                return Outcome(tuple(sent), tuple(errors), resolve_error, interrupted=True)
        if not sent:
            raise OSError("; ".join(errors) or "no address to send to")
        return Outcome(tuple(sent), tuple(errors), resolve_error)

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if a stop was requested (then True)."""
        if self.wake is None:
            time.sleep(seconds)
            return False
        select.select([self.wake], [], [], seconds)
        return bool(self.wake.requested)

    def _await_reply(self, sock: socket.socket, packet: bytes, deadline: float) -> tuple[wire.Reply | None, bool, bool]:
        """(the authenticated answer to ``packet`` by ``deadline``, port refused, stop requested)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, False, False
            fds: list[socket.socket | Wake] = [sock] if self.wake is None else [sock, self.wake]
            ready, _, _ = select.select(fds, [], [], left)
            if self.wake is not None and self.wake.requested:
                return None, False, True
            if sock not in ready:
                continue
            try:
                data = sock.recv(64)
            except (ConnectionRefusedError, ConnectionResetError):  # ICMP port unreachable (Windows: reset)
                return None, True, False
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                return None, False, False  # e.g. host unreachable reported on the socket
            try:
                return wire.parse_reply(data, packet, self.cfg.key), False, False
            except wire.WireError:
                continue  # an answer to an older beat, or not from the server: keep waiting
