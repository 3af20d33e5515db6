"""The notification queue on Redis: jobs that wait for another attempt, who is attempting which, dead letters.

A job (:class:`hbdns.notify_queue.Job`) is due at a time in ``notify_queue``; its JSON is in
``notify_jobs``. :meth:`Queue.claim` takes due jobs for one owner (a notifier incarnation, see
:mod:`notifier.presence`): each is marked in ``notify_inflight`` and pushed ``lease`` seconds ahead,
so it comes due again by itself if its owner hangs. When an owner's liveness ends, :meth:`Queue.takeover`
makes its jobs due at once: no fixed lease to sit out after a crash. :meth:`Queue.put` (schedule
again) and :meth:`Queue.finish` (sent, moot or dead-lettered) act only for the job's owner, so a
notifier that was taken for dead and comes back cannot undo what its successor did.

The scripts are ``hbdns/lua/notify_{claim,put,finish,takeover}.lua`` (:mod:`hbdns.scripts`); they
touch only ``{notify}`` keys, passed in KEYS: one Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from hbdns import keys, scripts
from hbdns.notify_queue import DEAD_LETTER_CAP, Job


class Queue:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def claim(self, now: float, lease: float, limit: int, token: str) -> list[Job]:
        """Due jobs for ``token``, each leased until ``now + lease`` (or until its owner dies)."""
        flat = scripts.NOTIFY_CLAIM(
            self.r,
            [keys.notify_queue(), keys.notify_jobs(), keys.notify_inflight()],
            [repr(now), repr(now + lease), limit, token],
        )
        return [Job.from_json(flat[i + 1]) for i in range(0, len(flat), 2)]

    def put(self, job: Job, due: float, token: str, *, client: Any = None) -> Any:
        """Queue ``job`` (new or claimed by ``token``) to be due at ``due`` (1, or 0: another owner has it)."""
        args = [job.id, job.to_json(), repr(due), repr(job.first), token]
        return scripts.NOTIFY_PUT(
            client or self.r,
            [keys.notify_queue(), keys.notify_jobs(), keys.notify_queued_since(), keys.notify_inflight()],
            args,
        )

    def finish(self, job_id: str, token: str, letter: str = "", now: float = 0.0, *, client: Any = None) -> Any:
        """Remove a job (sent, moot, duplicate); with ``letter``, dead-letter it in the same step."""
        args: list[str | int] = [job_id, token]
        if letter:
            args += [letter, repr(now), DEAD_LETTER_CAP]
        return scripts.NOTIFY_FINISH(
            client or self.r,
            [
                keys.notify_queue(),
                keys.notify_jobs(),
                keys.notify_queued_since(),
                keys.notify_inflight(),
                keys.notify_dead(),
                keys.notify_dead_index(),
                keys.notify_dead_dropped(),
            ],
            args,
        )

    def takeover(self, now: float, live: Iterable[str]) -> int:
        """Make the claimed jobs of every owner not in ``live`` due at once; returns how many."""
        return int(scripts.NOTIFY_TAKEOVER(self.r, [keys.notify_queue(), keys.notify_inflight()], [repr(now), *live]))

    def size(self) -> int:
        return int(self.r.zcard(keys.notify_queue()))
