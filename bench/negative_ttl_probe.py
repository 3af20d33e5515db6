"""How long a new account takes to show through a caching resolver after its NXDOMAIN was cached,
per zone negative TTL (README, "Names and negative answers"): ``python -m bench.negative_ttl_probe``.

Real redis-server, backend, pdns_server and pdns-recursor (tests/support/recursor.py) on loopback.
For each negative TTL: ask the recursor for a name that does not exist (NXDOMAIN, cached), create
the account at once (pdns purged, as every write does), and time until the recursor answers it.
Not part of ``make bench``: each run waits out a negative TTL.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import dns.rcode

from hbdns import config, provision
from hbdns.connection import connect
from hbdns.provision_zones import ZoneChanges, create_zone
from hbdns.purge import Purger
from hbdns.store import Store
from tests.support.pdns import started_pdns, stop_all
from tests.support.recursor import Recursor
from tests.support.servers import RedisServer


def probe(ttls: list[int], runs: int) -> dict[int, list[float]]:
    work = Path(tempfile.mkdtemp(prefix="hbdns-negttl-"))
    redis_server = RedisServer(work / "redis").start()
    r = connect(redis_server.url)
    store = Store(r, config.load({}))
    for ttl in ttls:
        create_zone(store, f"n{ttl}.probe.test", ZoneChanges(ns=["ns1.probe.test"], negative_ttl=ttl))
    pdns = started_pdns(work / "pdns", redis_server.url)
    purger = Purger([pdns.api_url], pdns.api_key).start()
    writer = Store(r, config.load({}), purger)
    recursors = {t: Recursor(work / f"rec{t}", f"n{t}.probe.test", pdns.port).start() for t in ttls}
    out: dict[int, list[float]] = {t: [] for t in ttls}
    try:
        for ttl in ttls:
            for i in range(runs):
                name = f"new{i}.n{ttl}.probe.test"
                assert recursors[ttl].query(name, "A").rcode() == dns.rcode.NXDOMAIN
                provision.create_account(writer, name, "setip-a")
                t0 = time.monotonic()
                while recursors[ttl].query(name, "A").rcode() != dns.rcode.NOERROR:
                    if time.monotonic() - t0 > ttl + 30:
                        raise TimeoutError(f"{name} not resolved after {ttl + 30} s")
                    time.sleep(0.05)
                out[ttl].append(time.monotonic() - t0)
    finally:
        for rec in recursors.values():
            rec.stop()
        purger.stop()
        stop_all(pdns)
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ttl", type=int, action="append", help="negative TTLs to probe (default 15 and 60)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for ttl, took in probe(args.ttl or [15, 60], args.runs).items():
        shown = ", ".join(f"{t:.1f}" for t in took)
        print(f"negative TTL {ttl} s: new account visible after {shown} s (median {statistics.median(took):.1f})")


if __name__ == "__main__":
    main()
