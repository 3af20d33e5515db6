"""``hbdns-client run`` as a step function: one beat per call, so tests drive it directly.

The daemon never gives up on anything outside its configuration. After a power cut the machine is
often up minutes before its DSL or cable line; the server may be down; the name may not resolve; the
clock may be off by hours. Each of those is a state the link is in, logged once when it begins and
once when it ends, and the client keeps beating through all of them:

- ``answered``: beats are accepted (the public address is logged when it changes);
- ``silent``: beats that asked got no authenticated answer. The server never answers a beat it
  cannot verify, so before the first answer a wrong key or account id looks exactly like an
  unreachable server, and the log says so;
- ``refused``: the server's port answered "unreachable" (ICMP): nothing listens there;
- ``unresolved``: the server name does not resolve (tried again with a backoff of 1 s doubling up
  to the interval while there is no address to send to);
- ``unreachable``: no packet could leave (no route yet, source address not configured yet);
- ``skewed``: the server says our clock is off; its answer carries its clock, the counters follow it
  from then on (:mod:`hbdns_client.clock`) and the next beat goes out at once.

Not every beat asks for a reply (:meth:`Runner.wants_reply`): a beat that does not ask is sent and
forgotten, never judged answered or unanswered.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from hbdns_client.beater import Beater, Outcome
from hbdns_client.config import ClientConfig
from hbdns_client.resolve import NameNotResolved

log = logging.getLogger("hbdns_client")

SILENT_AFTER = 3  # unanswered asks in a row before the link counts as silent

NEVER_ANSWERED = (
    "no authenticated answer from {server} yet. The server stays silent for beats it cannot verify, so "
    "a wrong key or account id looks exactly like an unreachable server: compare the account id and key "
    "with 'hbdns account show' on the server (or rotate the key and write a new client config), and check "
    "that UDP port {port} of {host} is reachable from here"
)


def never_answered(cfg: ClientConfig) -> str:
    """What to tell a customer whose beats never got an authenticated answer."""
    return NEVER_ANSWERED.format(server=cfg.server, host=cfg.host, port=cfg.port)


class Runner:
    """The ``run`` loop's state; :meth:`step` sends one beat and says when the next is due.

    ``clock`` is the monotonic clock (tests pass their own).
    """

    def __init__(self, beater: Beater, clock: Callable[[], float] = time.monotonic) -> None:
        self.beater = beater
        self.clock = clock
        self.state = "starting"
        self.answered_once = False
        self.unanswered = 0  # beats in a row that asked and got no answer
        self.asked_at: float | None = None  # clock() of the last beat that asked
        self.failures = 0  # beats in a row that could not be sent at all (the retry backoff)
        self.public: dict[int, str] = {}  # address family (4/6) -> public address the server saw
        self._refresh_at = SILENT_AFTER  # unanswered asks at which to look the name up again
        self._resynced = False  # the last beat was the immediate one after a CLOCK_SKEW
        self._lookup_failing = ""  # the name stopped resolving while old addresses are still used

    # --- when to ask, when to beat -------------------------------------------------------------------

    def wants_reply(self, now: float) -> bool:
        """Every beat until answered and after an unanswered ask, else every ``reply_every`` seconds.

        A reply per beat would double the server's packets for little news.
        """
        if not self.answered_once or self.unanswered or self.asked_at is None or self.state != "answered":
            return True
        return now - self.asked_at >= self.beater.cfg.reply_every

    def delay(self) -> float:
        """Seconds to the next beat: the interval minus up to 5% jitter, never later than the interval."""
        return self.beater.cfg.interval * random.uniform(0.95, 1.0)

    def _retry_delay(self) -> float:
        """After a beat that could not leave at all: 1 s, doubling, at most the interval."""
        self.failures += 1
        return min(self.beater.cfg.interval, 2.0 ** (self.failures - 1)) * random.uniform(0.95, 1.0)

    # --- the step ------------------------------------------------------------------------------------

    def step(self) -> float:
        """Send one beat (asking for a reply if due), judge the answer; seconds until the next step."""
        cfg = self.beater.cfg
        now = self.clock()
        ask = self.wants_reply(now)
        if ask:
            self.asked_at = now
        wake = self.beater.wake
        try:
            outcome = self.beater.beat(timeout=min(2.0, cfg.interval * 0.8), reply=ask)
        except NameNotResolved as exc:
            if wake is not None and wake.requested:
                return 0.0
            self._enter("unresolved", str(exc))
            return self._retry_delay()
        except OSError as exc:
            self._enter("unreachable", exc.strerror or str(exc))
            return self._retry_delay()
        self.failures = 0
        self._note_lookup(outcome.resolve_error)
        if outcome.interrupted or not ask:
            return 0.0 if outcome.interrupted else self.delay()
        return self._judge(outcome)

    def _judge(self, outcome: Outcome) -> float:
        cfg = self.beater.cfg
        if outcome.reply is None:
            self.unanswered += 1
            if outcome.refused:
                self._enter("refused")
            elif self.unanswered >= SILENT_AFTER:
                self._enter("silent")
            if self.unanswered >= self._refresh_at:  # the server may have moved: look the name up again
                self.beater.refresh_due = True
                self._refresh_at *= 2
            return self.delay()
        self.unanswered = 0
        self._refresh_at = SILENT_AFTER
        if outcome.clock_skew:
            self._enter("skewed")
        if not outcome.ok:
            if self._resynced:  # already beat again at once: back to the interval
                self._resynced = False
                return self.delay()
            self._resynced = True
            return 0.0  # the counters follow the server's clock now: beat again right away
        self._resynced = False
        self._enter("answered")
        self.answered_once = True
        for reply in outcome.replies:
            if not reply.address:
                continue
            family = 6 if ":" in reply.address else 4
            old = self.public.get(family)
            if old is None:
                log.info("public IPv%d address %s (as %s sees it)", family, reply.address, cfg.server)
            elif old != reply.address:
                log.info("public IPv%d address changed from %s to %s", family, old, reply.address)
            self.public[family] = reply.address
        return self.delay()

    # --- logging changes, once each ------------------------------------------------------------------

    def _enter(self, state: str, detail: str = "") -> None:
        if state == self.state:
            return
        before, self.state = self.state, state
        cfg = self.beater.cfg
        if state == "answered":
            if not self.answered_once:
                log.info("heartbeats accepted by %s (account %d)", cfg.server, cfg.account_id)
            else:
                log.info("heartbeats accepted by %s again (it was %s)", cfg.server, before)
        elif state == "silent":
            if self.answered_once:
                log.warning("no answer from %s to the last %d heartbeats; still beating", cfg.server, self.unanswered)
            else:
                log.warning("%s; still beating", never_answered(cfg))
        elif state == "refused":
            log.warning(
                "%s refuses heartbeats (ICMP port unreachable): the listener is not running there, or the port "
                "is wrong; still beating",
                cfg.server,
            )
        elif state == "unresolved":
            log.warning("%s; the network may not be up yet; trying again", detail)
        elif state == "unreachable":
            log.warning(
                "cannot send heartbeats to %s: %s; the network may not be up yet; trying again", cfg.server, detail
            )
        elif state == "skewed":
            offset = self.beater.server_clock.wall_offset_s()
            if offset is None:
                log.error("%s says this machine's clock is off too far; fix NTP", cfg.server)
            else:
                log.warning(
                    "%s says this machine's clock is off by %+.1f s (ours is %s); heartbeats follow the server's "
                    "clock from now on, but fix NTP",
                    cfg.server,
                    offset,
                    "ahead" if offset > 0 else "behind",
                )

    def _note_lookup(self, error: str) -> None:
        if error and not self._lookup_failing:
            log.warning("%s; beating to the last known addresses", error)
        elif not error and self._lookup_failing:
            log.info("the name %s resolves again", self.beater.cfg.host)
        self._lookup_failing = error
