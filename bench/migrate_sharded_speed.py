"""How fast ``hbdns migrate``'s step ``sharded`` moves an unsharded database (docs/upgrade.md).

Set-up: a real redis-server on loopback; N accounts written with the unsharded key names
(:mod:`hbdns.keys_unsharded`) as the last unsharded version left them after a beat: hash, IPv4
alive key with a TTL, deadline member, one log entry, name index entry, one ``recovered`` event
each in the old stream, which the notifier's group has read; the old live count. Then the step
alone, timed, three times on a fresh copy each. Not part of ``make bench`` (a one-time job).

Run: ``python -m bench.migrate_sharded_speed [N]`` (default 20,000).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

from hbdns import keys
from hbdns import keys_unsharded as old
from hbdns.connection import connect
from hbdns.migrations import sharded
from tests.support.servers import RedisServer

RUNS = 3


def write_old(r: redis.Redis, n: int) -> None:
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for i in range(1, n + 1):
        name = f"a{i}.z.test"
        pipe.hset(old.account(i), mapping={"fqdn": name, "state": "live", "ipv4": "203.0.113.1", "zone": "z.test",
                                           "live": "4", "plan": "heartbeat-c", "counter": "1"})  # fmt: skip
        pipe.set(old.alive(i, 4), "1", px=600_000)
        pipe.zadd(old.deadlines(), {f"{i}:4": 1_900_000_000_000})
        pipe.lpush(old.account_log(i), '{"type":"recovered"}')
        pipe.hset(keys.names(), name, i)
        pipe.sadd(keys.accounts(), i)
        pipe.xadd(old.events(), {"type": "recovered", "account": str(i), "fqdn": name, "at": "1"})
        if i % 5000 == 0:
            pipe.execute()
    pipe.hset(old.stats(), "live", n)
    pipe.execute()
    r.xgroup_create(old.events(), "hbdns-notifier", id="$")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    server = RedisServer(Path(tempfile.mkdtemp(prefix="hbmig"))).start()
    try:
        r = connect(server.url)
        runs = []
        for _ in range(RUNS):
            write_old(r, n)
            t = time.perf_counter()
            sharded.apply(r)
            runs.append(time.perf_counter() - t)
            assert not r.exists(old.events(), old.deadlines()) and r.exists(keys.account(n))
        med = statistics.median(runs)
        print(f"{n} accounts: median {med:.2f} s ({', '.join(f'{x:.2f}' for x in runs)}), {n / med:.0f} accounts/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
