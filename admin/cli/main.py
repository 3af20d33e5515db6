"""``hbdns``: the operator's command line for zones, accounts, status and migrations.

Human tables by default, ``--json`` for scripts. Refused input exits 2 with one line on stderr and
writes nothing; an unreachable Redis exits 1. ``main(argv)`` is what tests call. With
``HBDNS_PDNS_API_URLS`` set, a change purges the names it alters from pdns before the command
returns (the admin API purges the same names, in the background).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence

import redis

from admin.cli import accounts, migrate, status, tokens, zones
from admin.cli.output import EXIT_REFUSED, EXIT_UNAVAILABLE, Refused
from hbdns import config, validate
from hbdns.connection import connect
from hbdns.purge import Purger
from hbdns.store import Store, StoreError
from hbdns.tokens import TokenError


class SyncPurger(Purger):
    """Purges at once: a one-shot command must not exit with purges still queued."""

    def purge(self, names: Iterable[str]) -> None:
        for name in names:
            self.flush_now(name)


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the subcommand; SUPPRESS keeps a leaf from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser = argparse.ArgumentParser(prog="hbdns", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    sub = parser.add_subparsers(dest="group", required=True)
    for group in (zones, accounts, status, tokens, migrate):
        group.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None, *, redis_client: redis.Redis | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[Store, argparse.Namespace], int] = args.func
    try:
        settings = config.load()
        client = redis_client or connect(settings.redis_url)
        purger = SyncPurger(settings.pdns_api_urls, settings.pdns_api_key, settings.pdns_api_timeout)
        return func(Store(client, settings, purger if purger.enabled else None), args)
    except (Refused, validate.ValidationError, StoreError, TokenError, config.ConfigError) as exc:
        print(f"hbdns: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except redis.RedisError as exc:
        print(f"hbdns: Redis unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
