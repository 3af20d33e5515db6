"""``hbdns migrate``: convert data an older version wrote (hbdns/migrations), idempotent.

Each step is safe while the services of its own version run, except the ``sharded`` step: the
versions before it and after it do not read each other's keys, so it runs with the old writers
stopped (docs/upgrade.md gives the order and what DNS answers meanwhile)."""

from __future__ import annotations

import argparse
from typing import Any

from admin.cli.output import emit, table, ts
from hbdns import migrations
from hbdns.store import Store


def migrate(store: Store, args: argparse.Namespace) -> int:
    if args.status:
        runs = migrations.last_runs(store.r)
        rows = [
            {
                "step": s.name,
                "last_run": ts(runs.get(s.name, {}).get("at", 0)),
                "converted": runs.get(s.name, {}).get("converted", "-"),
                "what": s.summary,
            }
            for s in migrations.STEPS
        ]
        emit(args, runs, table(rows, ["step", "last_run", "converted", "what"]))
        return 0
    done = migrations.run(store.r, dry_run=args.dry_run)
    verb = "to convert" if args.dry_run else "converted"
    rows = [{"step": s.name, verb: n, "what": s.summary} for s, n in done]
    emit(args, {s.name: n for s, n in done}, table(rows, ["step", verb, "what"]))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``migrate`` command."""
    p = sub.add_parser("migrate", parents=[common], help="convert data written by an older version")
    p.add_argument("--dry-run", action="store_true", help="only count what would be converted")
    p.add_argument("--status", action="store_true", help="when each step last ran")
    p.set_defaults(func=migrate)
