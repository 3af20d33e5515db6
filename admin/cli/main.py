"""``hbdns``: the operator's command line for zones, accounts, status, notifications and migrations.

Human tables by default, ``--json`` for scripts. Refused input exits 2 with one line on stderr and
writes nothing; an unreachable Redis exits 1. ``main(argv)`` is what tests call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import redis

from admin.cli import accounts, migrate, notify, status, zones
from admin.cli.output import EXIT_REFUSED, EXIT_UNAVAILABLE, Refused
from hbdns import config, validate
from hbdns.connection import connect
from hbdns.store import Store, StoreError


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the subcommand; SUPPRESS keeps a leaf from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser = argparse.ArgumentParser(prog="hbdns", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    sub = parser.add_subparsers(dest="group", required=True)
    for group in (zones, accounts, status, notify, migrate):
        group.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None, *, redis_client: redis.Redis | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[Store, argparse.Namespace], int] = args.func
    try:
        settings = config.load()
        client = redis_client or connect(settings.redis_url)
        return func(Store(client, settings), args)
    except (Refused, validate.ValidationError, StoreError, config.ConfigError) as exc:
        print(f"hbdns: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except redis.RedisError as exc:
        print(f"hbdns: Redis unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
