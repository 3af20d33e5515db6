"""Sending e-mail and SMS at a configured rate, shared by every notifier: SMTP relays and SMS
gateways throttle, and a mass outage's hold ends with thousands of messages at once.

One GCRA bucket per channel in Redis (:mod:`hbdns.ratelimit`), ``HBDNS_NOTIFY_EMAIL_RATE`` and
``HBDNS_NOTIFY_SMS_RATE`` messages per second (0: no limit). Backlog messages (retries from the
queue, the held messages of a mass outage) also pass a second bucket at ``BULK_SHARE`` of the
rate, so a fresh event's message for another account always finds room. A message over the rate
is not attempted: it waits in the queue, due when the bucket has room (:mod:`notifier.dispatch`).
Webhooks go to many receivers of their own and are not paced here.
"""

from __future__ import annotations

from redis import Redis

from hbdns import keys
from hbdns.config import Settings
from hbdns.ratelimit import Limit, RateLimiter
from notifier.messages import EMAIL, SMS, Message

BULK_SHARE = 0.8  # of a channel's rate, at most, for backlog messages


class Pacer:
    def __init__(self, r: Redis, settings: Settings) -> None:
        self.limiter = RateLimiter(r)
        self.rates = {EMAIL: settings.notify_email_rate, SMS: settings.notify_sms_rate}

    def wait(self, message: Message, *, bulk: bool) -> float:
        """0 when ``message`` may go now (and it is counted), else seconds until its channel has room."""
        rate = self.rates.get(message.channel, 0.0)
        if rate <= 0:
            return 0.0
        burst = max(1, int(rate))
        if bulk:  # its burst too is a share: a backlog never empties the bucket fresh messages use
            limit = Limit(rate * BULK_SHARE * 60, max(1, int(burst * BULK_SHARE)))
            wait = self.limiter.check(keys.ratelimit("send-bulk", message.channel), limit)
            if wait > 0:
                return wait
        return self.limiter.check(keys.ratelimit("send", message.channel), Limit(rate * 60, burst))

    def spacing(self, message: Message) -> float:
        """Seconds between two messages of ``message``'s channel at its rate (0: no limit)."""
        rate = self.rates.get(message.channel, 0.0)
        return 1.0 / rate if rate > 0 else 0.0
