"""Who may send a message now (its sent marker) and whether a receiver may be tried now (its hold).

**Sent markers** (``keys.sent(message.key)``): ``sending:<owner>`` while an attempt runs, then
``sent``, ``dead`` or ``moot``, kept ``notify_sent_ttl`` seconds, so a message handed over twice (a
redelivered stream entry, two notifiers, a retry racing a takeover) goes out once. A ``sending``
marker of an owner that is no longer live (:mod:`notifier.presence`) is taken over at once; the
marker's own expiry (5 x ``notify_claim_idle``, at least 5 min) only covers an owner that is alive
but stuck. Only a
crash between the receiver's acceptance and the marker write sends a message twice.

**Holds** (``keys.notify_holds``): when a receiver fails as a whole (the SMTP relay or SMS gateway
is down, a webhook host answers 503) it is held: messages for it wait in the queue without an
attempt, and one probe per backoff step tries it. The backoff is the time since the hold began,
clamped to [``notify_backoff``, ``notify_probe_max``] (Postfix's rule for its queue), so probes
double their spacing up to the cap; a ``Retry-After`` is honoured up to the cap. A success ends
the hold, and the waiting messages follow at once.

The scripts: ``hbdns/lua/notify_marker.lua`` and ``notify_hold.lua`` (:mod:`hbdns.scripts`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from hbdns import cluster_pipeline, keys, scripts

GO, BUSY = "go", "busy"
OPEN, DUE, PROBE = "open", "due", "probe"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Markers:
    """The sent markers of messages, by idempotency key."""

    def __init__(self, r: redis.Redis, *, lease: float, ttl: int) -> None:
        self.r = r
        self.lease_ms = int(lease * 1000)
        self.ttl = ttl

    def claim(self, items: Sequence[tuple[str, bool]], token: str, live: Iterable[str]) -> list[str]:
        """For each (message key, may take a dead marker): ``go``, ``busy`` or ``done:<state>``; one round trip."""
        live_args = list(live)
        pipe = cluster_pipeline.pipeline(self.r)
        for key, allow_dead in items:
            args = ["claim", token, self.lease_ms, "1" if allow_dead else "0", *live_args]
            scripts.NOTIFY_MARKER(pipe, [keys.sent(key)], args)
        return [str(x) for x in pipe.execute()]

    def release(self, key: str, token: str, pipe: redis.client.Pipeline) -> None:
        scripts.NOTIFY_MARKER(pipe, [keys.sent(key)], ["release", token])

    def set(self, key: str, token: str, state: str, pipe: redis.client.Pipeline) -> None:
        scripts.NOTIFY_MARKER(pipe, [keys.sent(key)], ["set", token, state, self.ttl])


class Holds:
    """Receivers that fail as a whole, shared by every notifier (see the module docstring)."""

    def __init__(self, r: redis.Redis, *, base: float, cap: float) -> None:
        self.r = r
        self.base = base
        self.cap = cap

    def _call(self, args: list[str | int], client: Any = None) -> Any:
        return scripts.NOTIFY_HOLD(
            self.r if client is None else client, [keys.notify_holds(), keys.notify_queue()], args
        )

    def check(self, dests: Iterable[str], now: float) -> dict[str, str | float]:
        """Per destination: ``open``, ``due`` (held, but a probe may go now), or the time it is held until."""
        todo = list(dests)
        if not todo:
            return {}
        pipe = cluster_pipeline.pipeline(self.r)
        for dest in todo:
            self._call(["check", dest, _ms(now)], pipe)
        return {dest: _state(reply) for dest, reply in zip(todo, pipe.execute(), strict=True)}

    def probe(self, dest: str, now: float, lease: float) -> str | float:
        """Take the probe of a ``due`` destination (held ``lease`` more seconds meanwhile): ``probe``, or
        the time it is held until (another notifier probes it), or ``open`` (the hold ended)."""
        return _state(self._call(["probe", dest, _ms(now), _ms(now + lease)]))

    def fail(self, dest: str, now: float, reason: str, retry_after: float = 0.0) -> float:
        """Record a failure of ``dest`` as a whole; returns when it may be tried next."""
        args: list[str | int] = ["fail", dest, _ms(now), _ms(self.base), _ms(self.cap), _ms(retry_after), reason[:300]]
        return int(self._call(args)) / 1000

    def ok(self, dest: str, now: float, window: float) -> int:
        """End the hold of ``dest``: what waits in the queue for up to ``window`` more seconds is due now."""
        return int(self._call(["ok", dest, _ms(now), _ms(now + window)]))


def _state(reply: Any) -> str | float:
    text = str(reply)
    return text if text in (OPEN, DUE, PROBE) else int(text) / 1000


class Gates:
    """The receivers' hold states within one batch: one probe per held receiver, the others wait for it.

    The probe is taken only when a message is about to be attempted (``probe``), so a batch whose
    messages all turn out moot does not hold the receiver for a probe that never runs.
    """

    def __init__(self, states: dict[str, str | float], timeout: float, probe: Callable[[str], str | float]) -> None:
        self.states = dict(states)
        self.timeout = timeout
        self._probe = probe
        self._probing: set[str] = set()
        self._cond = threading.Condition()

    def enter(self, dest: str) -> str | float:
        """``open`` or ``probe``: attempt (as the probe); a float: held until then, do not attempt."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                state = self.states.get(dest, OPEN)
                if state == DUE and dest not in self._probing:
                    self.states[dest] = state = self._probe(dest)
                    if state == PROBE:
                        self._probing.add(dest)
                        return PROBE
                if state not in (DUE, PROBE):
                    return state
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    return time.time() + self.timeout

    def resolve(self, dest: str, state: str | float) -> None:
        """The probe's outcome: ``open``, or held until a time."""
        with self._cond:
            self.states[dest] = state
            self._probing.discard(dest)
            self._cond.notify_all()
