"""Flushing an account's mail at its backup MXes: the request, its record and the second one.

:mod:`hbdns.mta_flush` makes one flush request reliable; this module is what hbdns does around it,
shared by the notifier's flush consumer (``notifier/flush.py``, on recovery) and the admin CLI
(``hbdns account flush``):

- :func:`flush_account` flushes every name of an account (primary and aliases) at every backup MX,
  appends an ``mx_flushed`` entry with each result to the account's event log (``hbdns account
  log``) and counts the outcomes per target in Redis (:func:`keys.flush_counts`, for every process).
- The second flush: a backup MX behind a caching resolver may still get the neutral address for up
  to the record TTL after the customer is back (plus pdns' own cache), and its delivery attempt
  then is deferred again; so a recovery also schedules one more flush for then, in a sorted set
  (:func:`keys.flush_due`) that survives restarts. :func:`schedule`, :func:`claim_due` (leased: a
  process that dies mid-flush leaves it due again) and :func:`done` (kept if rescheduled meanwhile).

The log entry has the shape of the liveness scripts' entries (``type``, ``account``, ``fqdn``,
``at`` in ms, ``event_id`` of the event that caused it) but goes to the log only, not to the event
stream: it is a record of what was asked, not a state transition to notify.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from hbdns import keys, scripts
from hbdns.etrn import FlushResult
from hbdns.model import Account
from hbdns.mta_flush import MtaFlusher

FLUSHED = "mx_flushed"  # the log entry's type
LOG_SIZE = 200  # as HBDNS_ACCOUNT_LOG_SIZE's default; the caller passes its setting


def redis_ms(r: redis.Redis) -> int:
    """Redis' clock (Unix ms): the one clock of every schedule."""
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def flush_account(
    r: redis.Redis,
    flusher: MtaFlusher,
    account: Account,
    *,
    why: str,
    event_id: str = "",
    log_size: int = LOG_SIZE,
) -> list[FlushResult]:
    """Flush every name of ``account`` now, log and count the results; ``why`` says what asked
    (``recovered``, ``ip_changed``, ``again``, ``admin``)."""
    results = flusher.flush(account.names)
    record(r, account, results, why=why, event_id=event_id, log_size=log_size)
    return results


def record(
    r: redis.Redis,
    account: Account,
    results: Sequence[FlushResult],
    *,
    why: str,
    event_id: str = "",
    log_size: int = LOG_SIZE,
) -> None:
    """The ``mx_flushed`` log entry and the counters of one account's flush."""
    if not results:
        return
    entry: dict[str, Any] = {
        "type": FLUSHED,
        "account": account.id,
        "fqdn": account.fqdn,
        "at": redis_ms(r),
        "event_id": event_id,
        "why": why,
        "ok": all(res.ok for res in results),
        "results": [res.to_dict() for res in results],
    }
    pipe = r.pipeline(transaction=False)
    pipe.lpush(keys.account_log(account.id), json.dumps(entry, sort_keys=True))
    pipe.ltrim(keys.account_log(account.id), 0, log_size - 1)
    for res in results:
        pipe.hincrby(keys.flush_counts(), f"{res.target} {res.outcome}", 1)
    pipe.execute()


def counts(r: redis.Redis) -> dict[str, int]:
    """``<target> <outcome>`` -> how many flush requests ended so, over all processes."""
    return {str(k): int(v) for k, v in r.hgetall(keys.flush_counts()).items()}


def schedule(r: redis.Redis, due_ms: dict[int, int]) -> None:
    """Flush these accounts again at these times (Unix ms, Redis clock); a later request for an
    account replaces an earlier one."""
    if due_ms:
        r.zadd(keys.flush_due(), {str(i): ms for i, ms in due_ms.items()})


def claim_due(r: redis.Redis, lease_ms: int, limit: int = 100) -> list[tuple[int, int]]:
    """Due accounts as (id, claimed score), each leased for ``lease_ms``."""
    raw = scripts.CLAIM_DUE(r, [keys.flush_due()], [lease_ms, limit])
    return [(int(raw[i]), int(raw[i + 1])) for i in range(0, len(raw), 2)]


def done(r: redis.Redis, account_id: int, claimed: int) -> bool:
    """Remove a claimed entry, unless it was scheduled anew meanwhile."""
    return bool(scripts.DONE_DUE(r, [keys.flush_due()], [str(account_id), str(claimed)]))
