"""Merging the two messages of one outage when the first could not go out in time.

Per recipient of an account (a *thread*: channel + recipient digest) ``keys.notify_outage`` keeps
how far the latest outage's "offline" message got: ``<outage start ms> sending <owner>@<until>``,
``queued``, ``sent``, ``dead`` or ``closed`` (it will never be sent). Both messages of an outage
carry its start (``Message.outage_ms``: the ``neutralized`` event's time, the ``recovered`` event's
``neutral_since``), and each asks ``hbdns/lua/notify_outage.lua`` before it is sent, atomically with
the account's state (same slot: the account's shard ``{s:<n>}``):

- the offline message goes only while that very outage is still open and nothing closed it; once
  the account is back (or a later outage began) it is moot and never sent, whichever notifier
  holds it and however late its stream entry is read;
- the recovery goes *plain* ("back online after ...") only if the offline message was sent; while
  it is being sent the recovery waits for the outcome; otherwise the recovery goes *merged* ("was
  offline from .. to .., 4 min 38 s") and closes the thread, so the offline message can no longer
  go out after it. For SMS, a recovery whose offline SMS was never attempted (a blip shorter than
  ``sms_min_outage``, or one that ended in quiet hours) sends nothing at all.

So a customer never gets "offline" after "back online", also with several notifier processes, a
crash between any two steps, or a channel down for hours. The decision is made when the recovery
is attempted and depends only on the thread's state, which moves forward only: a retry of the
recovery decides the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from hbdns import cluster_pipeline, keys, scripts
from notifier.messages import SMS, Message

GO, MOOT, DONE, BUSY = "go", "moot", "done", "busy"
PLAIN, MERGED, ABSENT = "plain", "merged", "absent"


class Outages:
    def __init__(self, r: redis.Redis, *, lease: float) -> None:
        self.r = r
        self.lease = lease

    def ask(self, message: Message, token: str, now: float, live: Iterable[str]) -> str:
        """Whether and how ``message`` (one with a ``role``) may go now: see ``notify_outage.lua`` for the answers."""
        return self.ask_many([message], token, now, live)[0]

    def ask_many(self, messages: Sequence[Message], token: str, now: float, live: Iterable[str]) -> list[str]:
        """:meth:`ask` for messages of different threads, in one round trip."""
        live_args = list(live)
        pipe = cluster_pipeline.pipeline(self.r)
        for m in messages:
            args = [m.role, m.thread, str(m.outage_ms), token, repr(now), repr(now + self.lease)]
            args += ["0" if m.channel == SMS else "1", *live_args]
            scripts.NOTIFY_OUTAGE(pipe, [keys.notify_outage(m.account), keys.account(m.account)], args)
        return [str(x) for x in pipe.execute()] if messages else []

    def settle(self, message: Message, outcome: str, token: str, pipe: redis.client.Pipeline) -> None:
        """Record the offline message's outcome (``sent``, ``queued`` or ``dead``) in ``pipe``."""
        args = [outcome, message.thread, str(message.outage_ms), token, "0", "0", "0"]
        scripts.NOTIFY_OUTAGE(pipe, [keys.notify_outage(message.account), keys.account(message.account)], args)
