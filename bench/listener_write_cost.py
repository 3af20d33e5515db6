"""Cost per beat of the listener's write path alone: its encoder and the beat script in Redis.

A same-machine comparison that the shared host's noise does not swamp, unlike beats/s: fast-path
beats (live account, same address) in batches of 256 random accounts of 20,000, sent through the
listener's own writer (:class:`heartbeat_listener.redis_io.RedisBeats`) to a private redis-server.
Per beat: the Python CPU time of ``RedisBeats.encode``, Redis' CPU time (``INFO cpu``) and the
time Redis spent in EVALSHA (``INFO commandstats``). It uses only the writer's and Liveness' public
calls, so the same file measures an older checkout: run it with that checkout as the working
directory (``PYTHONPATH=. python <this file>``) and compare the medians of a few alternating runs.

Run: ``python -m bench.listener_write_cost [--rounds N]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from hbdns import keys
from hbdns.connection import connect
from hbdns.liveness import BeatRequest, Liveness
from hbdns.resp import BatchConnection
from heartbeat_listener.redis_io import RedisBeats
from tests.support.servers import RedisServer

ACCOUNTS = 20_000
BATCH = 256
ZONE = "dyn.test"
TTL_MS = 600_000  # no alive key expires during a run: every measured beat takes the fast path


def measure(rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hbdns-write-cost-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            r = connect(server.url)
            pipe = r.pipeline(transaction=False)
            for i in range(1, ACCOUNTS + 1):
                fields = {"fqdn": f"h{i}.{ZONE}", "zone": ZONE, "state": "neutral", "counter": "0", "fp": "f"}
                pipe.hset(keys.account(i), mapping=fields)
            pipe.execute()
            writer = RedisBeats(BatchConnection(r), Liveness(r))
            counter = int(time.time() * 1000)
            ids = list(range(1, ACCOUNTS + 1))
            for start in range(0, ACCOUNTS, BATCH):  # the first beats: recovered, address recorded
                writer.beats([BeatRequest(i, ZONE, TTL_MS, ipv4="10.0.0.1", counter=counter, fp="f")
                              for i in ids[start : start + BATCH]])  # fmt: skip
            rnd = random.Random(1)
            batches = [
                [BeatRequest(i, ZONE, TTL_MS, ipv4="10.0.0.1", counter=counter + 1 + k, fp="f")
                 for i in rnd.sample(ids, BATCH)]
                for k in range(rounds)
            ]  # fmt: skip
            r.config_resetstat()
            cpu0 = r.info("cpu")
            encode = 0.0
            for batch in batches:
                t0 = time.process_time()
                payload = writer.encode(batch)
                encode += time.process_time() - t0
                writer.conn.roundtrip(payload, 1)
            cpu1 = r.info("cpu")
            evalsha = r.info("commandstats")["cmdstat_evalsha"]
            beats = rounds * BATCH
            redis_cpu = sum(cpu1[k] - cpu0[k] for k in ("used_cpu_user", "used_cpu_sys"))
            return {
                "encode_us_per_beat": encode * 1e6 / beats,
                "redis_cpu_us_per_beat": redis_cpu * 1e6 / beats,
                "evalsha_us_per_beat": evalsha["usec"] / beats,
                "calls": evalsha["calls"],
            }
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listener_write_cost")
    parser.add_argument("--rounds", type=int, default=300, help="batches of 256 beats measured")
    print(json.dumps(measure(parser.parse_args(argv).rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
