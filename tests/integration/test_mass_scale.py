"""What a mass outage sends at scale (issue 20): pdns purges coalesced per zone, e-mail paced at its
configured rate with the backlog below fresh messages, on real receivers and a real redis-server."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import redis

from hbdns import config
from hbdns.purge import Purger
from notifier.main import Notifier
from notifier.messages import EMAIL, Message
from tests.support.servers import wait_for
from tests.support.services import env_for
from tests.support.sinks import HttpSink, SmtpSink


def test_a_burst_of_purges_is_one_call_per_zone(http: HttpSink) -> None:
    purger = Purger([http.url], "key")
    names = [f"h{i}.dyn.example.net" for i in range(500)] + [f"h{i}.other.example.org" for i in range(3)]
    purger.purge(names)  # queued before the thread runs: one burst
    purger.start()
    try:
        wait_for(lambda: purger.sent == 4, 10, what="purges sent")
    finally:
        purger.stop()
    domains = sorted(parse_qs(urlsplit(r.path).query)["domain"][0] for r in http.log())
    assert domains == ["dyn.example.net.", "h0.other.example.org.", "h1.other.example.org.", "h2.other.example.org."]
    assert purger.coalesced == 499


def _mail(i: int, to: str) -> Message:
    return Message(
        channel=EMAIL,
        recipient=to,
        subject=f"hbdns: h{i} has a new IPv4 address",
        text="changed",
        account=1000 + i,
        fqdn=f"h{i}.example.test",
        event_type="ip_changed",
        event_id=f"1-{i}",
    )


def test_email_goes_at_its_rate_and_a_fresh_message_passes_the_backlog(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink
) -> None:
    settings = config.load(env_for(redis_url, smtp, HBDNS_NOTIFY_EMAIL_RATE="10"))
    notifier = Notifier(settings, r=real_redis)
    started = time.monotonic()
    backlog = notifier.dispatcher.send_all([_mail(i, f"c{i}@example.org") for i in range(40)], bulk=True)
    sent = sum(o.status == "sent" for o in backlog)
    # the backlog's burst: 80% of the bucket (and what it refilled while they went), the rest waits
    assert 8 <= sent <= 8 + (time.monotonic() - started) * 8 + 1
    [fresh] = notifier.dispatcher.send_all([_mail(99, "urgent@example.org")])
    assert fresh.status == "sent"  # another account's fresh message finds room at once
    wait_for(lambda: notifier.schedule_step() == 0 and len(smtp.mails) == 41, 60, interval=0.1, what="backlog sent")
    # the rest at most 8/s: the rate holds however fast the notifier could send
    assert time.monotonic() - started >= (40 - sent) / 8 - 1
    assert sorted(m.rcpts[0] for m in smtp.mails) == sorted(
        [f"c{i}@example.org" for i in range(40)] + ["urgent@example.org"]
    )
