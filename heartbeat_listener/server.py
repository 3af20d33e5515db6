"""The socket shell around the pure stages (:mod:`heartbeat_listener.protocol`): wait, drain, decide, act.

One :meth:`UdpListener.step` is one wake-up: poll the IPv4/IPv6 sockets, drain up to ``batch``
datagrams without blocking (shared fairly between the sockets), screen them, verify MACs with the
account cache (accounts it lacks cost one pipelined HMGET round trip), and send the batch's beats
as one beat-script call. The scripts' results are read ``depth`` steps later: while Redis runs batches
k and k+1, this process receives and verifies batch k+2 (Redis and Python work in parallel instead of
taking turns, and Redis still has work queued when this process is briefly descheduled on a busy
host; depth 2 gave 11-30% more beats/s than 1 in 4 alternating cycles of bench/bench_listener.py
runs on 2 cores). When no datagram is waiting, every batch in flight is finished at once, so a lone beat is
answered without delay. Then: replies, purges, counters, rate-limited logs.

Nothing is charged before a MAC verified (:mod:`heartbeat_listener.verify`): ``preauth`` decides
which accounts not cached are looked up, ``recent`` drops authentic copies the listener already
knows the verdict of and holds the per-account limit, ``limiter`` the per-source one.

While Redis is failing, datagrams are still drained and counted as ``redis_down``; Redis is tried
again after a backoff that doubles up to ``backoff_max``.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from hbdns.liveness import BeatRequest, BeatResult
from hbdns.logs import RateLimitedLog
from hbdns.purge import Purger
from heartbeat_listener.accounts import AccountCache, AccountInfo, StoreUnavailable
from heartbeat_listener.batch import Authenticated, Candidate, Datagram, Decisions, Screened
from heartbeat_listener.decide import DEFAULT_WINDOW_MS, StaleReplies, conclude, dropped
from heartbeat_listener.metrics import Metrics
from heartbeat_listener.preauth import PreAuth
from heartbeat_listener.recent import RecentBeats
from heartbeat_listener.sources import SourceLimiter
from heartbeat_listener.verify import Checks, authenticate_all, screen

log = logging.getLogger(__name__)

RECV_SIZE = 64  # anything longer than a beat (24 bytes) is rejected as "long" anyway
RCVBUF = 4 << 20  # the kernel caps it at net.core.rmem_max


class PipelinedWriter(Protocol):
    """Sends a batch of beat scripts now and reads their results later, in order."""

    def submit(self, reqs: Sequence[BeatRequest]) -> Any: ...

    def collect(self, ticket: Any) -> list[BeatResult]: ...


def open_socket(host: str, port: int, *, v6only: bool = True, rcvbuf: int = RCVBUF) -> socket.socket:
    """A non-blocking UDP socket with SO_REUSEPORT, so several listener processes can share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class UdpListener:
    def __init__(
        self,
        sockets: Sequence[socket.socket],
        lookup: Callable[[Sequence[int]], Mapping[int, AccountInfo | str]],
        writer: PipelinedWriter,
        *,
        metrics: Metrics,
        limiter: SourceLimiter | None = None,
        purger: Purger | None = None,
        batch: int = 256,
        backoff_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        cache: AccountCache | None = None,
        depth: int = 2,
        max_skew_ms: int = DEFAULT_WINDOW_MS,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        preauth: PreAuth | None = None,
        recent: RecentBeats | None = None,
    ) -> None:
        if not sockets:
            raise ValueError("no socket to listen on")
        self.sockets = list(sockets)
        self.lookup = lookup
        self.writer = writer
        self.metrics = metrics
        self.limiter = limiter
        self.purger = purger
        self.batch = batch
        self.backoff_max = backoff_max
        self.clock = clock
        self.cache = cache if cache is not None else AccountCache()
        self.depth = depth  # batches left in flight at Redis while the next one is received
        self.max_skew_ms = max_skew_ms  # the beat script's window, told to clients in CLOCK_SKEW answers
        self.wall_ms = wall_ms  # this host's clock (Unix ms) for those answers
        self.stale = StaleReplies()  # each stale beat is answered once, however often it is replayed
        self.preauth = preauth
        self.recent = recent
        self._requeue: list[Candidate] = []  # beats the script refused as 'rekey': once more, fresh
        self._by_family = {s.family: s for s in self.sockets}
        self._poll = select.poll()
        self._by_fd = {s.fileno(): s for s in self.sockets}
        for s in self.sockets:
            self._poll.register(s, select.POLLIN)
        self._inflight: deque[tuple[Authenticated, Any]] = deque()
        self._down_until = 0.0
        self._backoff = 0.0
        self._next_prune = 0.0
        self._bad_log = RateLimitedLog(log, 10.0)
        self._redis_log = RateLimitedLog(log, 10.0)

    # --- I/O --------------------------------------------------------------------------------------

    def receive(self, timeout: float) -> list[Datagram]:
        """Wait up to ``timeout`` s for a datagram, then drain up to ``batch`` without blocking."""
        ready = self._poll.poll(max(0.0, timeout) * 1000)
        if not ready:
            return []
        socks = [self._by_fd[fd] for fd, _ in ready]
        out: list[Datagram] = []
        share = max(1, self.batch // len(socks))
        for sock in socks:  # first pass: a fair share each, so a flood on one family can't starve the other
            self._drain(sock, share, out)
        if len(socks) > 1 and len(out) < self.batch:
            for sock in socks:
                self._drain(sock, self.batch - len(out), out)
        return out

    @staticmethod
    def _drain(sock: socket.socket, limit: int, out: list[Datagram]) -> None:
        recv = sock.recvfrom
        append = out.append
        for _ in range(limit):
            try:
                append(recv(RECV_SIZE))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors reported on the socket: keep going
                log.debug("recvfrom failed", extra={"error": str(exc)})
                return

    def send_replies(self, replies: Sequence[tuple[bytes, tuple[object, ...]]]) -> int:
        sent = 0
        for data, addr in replies:
            sock = self._by_family.get(socket.AF_INET if len(addr) == 2 else socket.AF_INET6)
            if sock is None:
                continue
            try:
                sock.sendto(data, addr)
                sent += 1
            except OSError:
                self.metrics.inc("hbdns_heartbeat_reply_errors_total")
        return sent

    # --- the step ---------------------------------------------------------------------------------

    def step(self, timeout: float = 0.25) -> int:
        """One wake-up; returns the number of datagrams received (0 after a quiet ``timeout``)."""
        datagrams = self.receive(0.0 if self._inflight or self._requeue else timeout)
        out: list[Decisions] = []
        if datagrams or self._requeue:
            self.metrics.inc("hbdns_heartbeat_batches_total")
            now = self.clock()
            if now >= self._next_prune and self.limiter is not None:
                self.limiter.prune(now)
                self._next_prune = now + 30.0
            out.append(self._start(datagrams, now))
        # finish every batch in flight but the last ``depth`` (Redis works on them while we receive)
        keep = self.depth if datagrams else 0
        while len(self._inflight) > keep:
            auth, ticket = self._inflight.popleft()
            try:
                results = self.writer.collect(ticket)
                out.append(
                    conclude(
                        auth,
                        results,
                        now_ms=self.wall_ms(),
                        window_ms=self.max_skew_ms,
                        stale=self.stale,
                        recent=self.recent,
                    )
                )
            except StoreUnavailable as exc:
                out.append(dropped(auth, str(exc)))
                out.extend(dropped(a, str(exc)) for a, _ in self._inflight)  # the connection is gone
                self._inflight.clear()
        for decisions in out:
            if decisions.redis_error:
                self._redis_failed(decisions.redis_error)
            self.apply(decisions)
        return len(datagrams)

    def _start(self, datagrams: Sequence[Datagram], now: float) -> Decisions:
        """Screen, look up, verify and submit one batch; what is already decided is returned."""
        screened = screen(datagrams)
        again: tuple[Candidate, ...] = ()
        if self._requeue:  # refused as 'rekey': authenticated and admitted already, now with fresh data
            again, self._requeue = tuple(self._requeue), []
        if not screened.candidates and not again:
            return Decisions(counts=screened.counts, rejects=screened.rejects)
        if now < self._down_until:
            d = dropped(self._all(again, screened), "")
            return Decisions(counts=d.counts, rejects=d.rejects)  # still backing off: not a new failure
        checks = Checks(
            preauth=self.preauth,
            recent=self.recent,
            limiter=self.limiter,
            window_ms=self.max_skew_ms,
            now=now,
            now_ms=self.wall_ms(),
        )
        try:
            auth = authenticate_all(screened, self.cache, self.lookup, checks)
            if again:  # older first
                auth = authenticate_all(Screened(candidates=again), self.cache, self.lookup).merge(auth)
        except StoreUnavailable as exc:
            return dropped(self._all(again, screened), str(exc))
        if auth.requests:
            try:
                ticket = self.writer.submit(auth.requests)
            except StoreUnavailable as exc:
                return dropped(auth, str(exc))
            # what was dropped before the script is counted now, not again when its results come
            self._inflight.append((replace(auth, counts={}, rejects=()), ticket))
        self._redis_ok()
        return Decisions(counts=auth.counts, rejects=auth.rejects)

    @staticmethod
    def _all(again: tuple[Candidate, ...], screened: Screened) -> Screened:
        return Screened(candidates=again + screened.candidates, counts=screened.counts, rejects=screened.rejects)

    def flush(self) -> None:
        """Finish the batches in flight and the requeued beats (before exiting)."""
        while self._inflight or self._requeue:
            self.step(0.0)

    def _redis_ok(self) -> None:
        if self._backoff:
            log.info("redis reachable again")
            self._backoff = 0.0
        self.metrics.gauges["hbdns_heartbeat_redis_up"] = 1.0

    def _redis_failed(self, error: str) -> None:
        now = self.clock()
        if now < self._down_until:
            return  # one outage, one backoff step (a failed batch and its queued successor)
        self._backoff = min(self.backoff_max, max(0.1, self._backoff * 2))
        self._down_until = now + self._backoff
        self.metrics.gauges["hbdns_heartbeat_redis_up"] = 0.0
        self.metrics.inc("hbdns_heartbeat_redis_errors_total")
        self._redis_log.log(
            logging.WARNING, "redis", "redis failed; dropping beats", error=error, retry_in_s=self._backoff
        )

    def apply(self, decisions: Decisions) -> None:
        m = self.metrics
        m.add_packets(decisions.counts)
        if decisions.evict:
            self.cache.evict(decisions.evict)
        if decisions.requeue:
            self._requeue.extend(decisions.requeue)
        if decisions.replies:
            m.inc("hbdns_heartbeat_replies_total", self.send_replies(decisions.replies))
        if decisions.purge and self.purger is not None:
            self.purger.purge(decisions.purge)
        if decisions.changes:
            m.inc("hbdns_heartbeat_changes_total", len(decisions.changes))
            for c in decisions.changes:
                log.debug(
                    "dns answer changed",
                    extra={"account": c.account_id, "status": c.status, "source": c.source, "old_ipv4": c.old_ipv4},
                )
        for reason, source, account_id in decisions.rejects:
            self._bad_log.log(
                logging.INFO,
                reason,
                "heartbeat dropped",
                reason=reason,
                source=source,
                account=account_id if account_id >= 0 else None,
            )
