"""What the listener remembers of each account's recent beats, so that authentic copies cost no Redis work.

A beat that authenticated can still be worthless: a replay (a captured packet sent again, from any
address) or a copy of a stale beat. The beat script refuses those, but each would cost a script
step, and would count against the account's rate limit, so a replayer of a customer's own captured
packets could drown the customer's beats. Per account, :class:`RecentBeats` keeps:

- ``floor``: a counter the stored one is known to have reached (the script accepted it, or refused
  it as a replay). The stored counter only grows, so every counter up to the floor is a replay: it is
  dropped here, exactly as the script would drop it;
- ``sent``: the counter of the last beat sent to the script, so that copies of a beat in flight are
  not sent again while its verdict is on its way;
- ``low`` and ``ahead``: counters the script refused as stale, behind the clock (anything up to the
  highest such counter stays behind) or ahead of it (the exact counters: an honest client never sends
  one twice). A copy of one is dropped here and never answered; a copy of an ahead beat stays refused
  even once the clock has caught up with it, so a captured stale beat is worth nothing here either;
- the account's token bucket: ``rate`` authenticated beats per second, bursts of ``burst``, charged
  only by beats that passed the checks above (so only by beats worth storing, which only the key's
  holder can make);
- a small bucket for re-reading the account after a bad MAC (its key may have been rotated): only
  a re-read that found the account unchanged (the MAC was forged) is charged, a few at once, then
  one per second; so forged MACs for an account cost a lookup a second at most, and a real key
  change is always looked up at once (unless forgeries drained the bucket: then within a second).

The memory belongs to the account's config fingerprint: a beat authenticated with another one (a
new key, or a new account under an id seen before) starts it afresh. Bounded (starts afresh when
full: that only costs one script step per captured packet again). Per process: with several
listener processes each learns on its own.
"""

from __future__ import annotations

REFRESH_RATE = 1.0  # re-reads of an account per second after bad MACs, sustained
REFRESH_BURST = 3.0
AHEAD_KEPT = 4  # stale-ahead counters remembered per account (one per clock error of an honest client)


class Recent:
    """One account's memory; see :class:`RecentBeats`."""

    __slots__ = ("ahead", "floor", "fp", "low", "refresh", "refreshed", "sent", "tat")

    def __init__(self, fp: str = "") -> None:
        self.fp = fp
        self.floor = -1  # every counter <= floor is a replay
        self.low = -1  # every counter <= low is a replay or stale (behind): max(floor, stale behind)
        self.sent = -1
        self.ahead: tuple[int, ...] = ()
        self.tat = float("-inf")  # the bucket as GCRA: when it would be full again (monotonic s)
        self.refresh = REFRESH_BURST
        self.refreshed = float("-inf")


class RecentBeats:
    def __init__(self, rate: float, burst: int, max_accounts: int = 2_000_000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._step = 1.0 / self.rate  # GCRA: each beat moves the bucket's full-again time this far
        self._tau = (self.burst - 1.0) / self.rate  # ... which may be at most this far ahead of now
        self.max_accounts = max_accounts
        self._d: dict[int, Recent] = {}
        self.stats: dict[str, int] = dict.fromkeys(("replays", "copies", "stale", "rate_limited"), 0)

    def __len__(self) -> int:
        return len(self._d)

    def get(self, account_id: int) -> Recent | None:
        return self._d.get(account_id)

    def entry(self, account_id: int, fp: str | None = None) -> Recent:
        """The account's memory, made afresh when it has none or ``fp`` is not its fingerprint."""
        r = self._d.get(account_id)
        if r is None or (fp is not None and fp != r.fp):
            if r is None and len(self._d) >= self.max_accounts:
                self._d.clear()
            r = self._d[account_id] = Recent(fp or "")
        return r

    def admit(self, account_id: int, counter: int, fp: str, now: float, now_ms: int, window_ms: int) -> str:
        """'' when an authentic beat (authenticated with fingerprint ``fp``) is to go to the beat
        script (and charge the account's bucket), else why it is dropped here: replay, stale or
        account_rate_limited."""
        r = self._d.get(account_id)
        if r is None or r.fp != fp:
            r = self.entry(account_id, fp)
        elif counter <= r.low or counter == r.sent or (r.ahead and counter in r.ahead):
            return self._known(r, counter, now_ms, window_ms)
        tat = r.tat
        if tat < now:
            tat = now
        elif tat - now > self._tau:
            self.stats["rate_limited"] += 1
            return "account_rate_limited"
        r.tat = tat + self._step
        r.sent = counter
        return ""

    def _known(self, r: Recent, counter: int, now_ms: int, window_ms: int) -> str:
        stats = self.stats
        if counter <= r.floor:
            stats["replays"] += 1
            return "replay"
        if counter == r.sent and counter not in r.ahead and counter > r.low:
            stats["copies"] += 1
            return "replay"  # its original's verdict is on its way (a copy of it would be a replay)
        if counter <= r.low or abs(counter - now_ms) > window_ms:
            stats["stale"] += 1
            return "stale"
        stats["replays"] += 1
        return "replay"  # a stale-ahead beat the clock has caught up with: refused as the copy it is

    def may_refresh(self, account_id: int, now: float) -> bool:
        """Whether a bad MAC with the cached key may re-read the account (its key may have changed)."""
        r = self.entry(account_id)
        tokens = r.refresh + (now - r.refreshed) * REFRESH_RATE
        r.refresh = REFRESH_BURST if tokens > REFRESH_BURST else tokens
        r.refreshed = now
        return r.refresh >= 1.0

    def refreshed(self, account_id: int, changed: bool) -> None:
        """The re-read after a bad MAC: only one that found the account unchanged costs a token."""
        r = self._d.get(account_id)
        if r is not None and not changed:
            r.refresh -= 1.0

    def judged(self, account_id: int, counter: int, status: str, now_ms: int) -> None:
        """Learn from the beat script's verdict on a beat of this account."""
        r = self._d.get(account_id)
        if r is None:
            return
        if status in ("ok", "offline", "replay"):
            if counter > r.floor:
                r.floor = counter
                if counter > r.low:
                    r.low = counter
        elif status == "stale":
            if counter > now_ms:
                if counter not in r.ahead:
                    r.ahead = (*r.ahead[-(AHEAD_KEPT - 1) :], counter)
            elif counter > r.low:
                r.low = counter
        elif status == "gone":
            del self._d[account_id]
