"""The plan table: how often a client reports, how many misses neutralize, and the record TTL.

Figures are the seed's: heartbeat plans beat every 45/15/5 s and neutralize after 3 missed beats;
expiry plans (update-only clients, "Ablaufzeit") neutralize when one interval passes without update.

The grace (issue 14): with the window exactly misses x interval, the third beat that arrives on
time races the expiry, so each plan adds a little: 0.5 s for heartbeat plans (a client's timer and
the network are late by milliseconds, rarely by more), 5 s for update plans (HTTP, routers). The
seed's promise for heartbeat-c is "neutral within 20 s", which must hold through a caching resolver
too: window + grace + pdns' cache (1 s) + the record TTL = 15 + 0.5 + 1 + 3 = 19.5 s, so
heartbeat-c's record TTL is 3 s (was 5 s). Measured figures: README's plan table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hbdns.config import ConfigError


@dataclass(frozen=True)
class Plan:
    name: str
    kind: str  # "heartbeat" (UDP beats) or "expiry" (dyndns2 updates)
    interval: float  # seconds between beats/updates the client is expected to send
    misses: int  # intervals without a beat/update before the account is neutralized
    ttl: int  # DNS record TTL for the account's records, seconds
    grace: float = 0.0  # seconds on top, so a last beat that is a little late still counts

    @property
    def expiry_ms(self) -> int:
        """Liveness TTL of a family (its alive key and deadline): neutral this long after the last
        beat or update over it, misses x interval + grace."""
        return round((self.interval * self.misses + self.grace) * 1000)


_MIN = 60.0
_HOUR = 3600.0

DEFAULT_PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan("heartbeat-a", "heartbeat", 45.0, 3, 45, grace=0.5),
        Plan("heartbeat-b", "heartbeat", 15.0, 3, 15, grace=0.5),
        Plan("heartbeat-c", "heartbeat", 5.0, 3, 3, grace=0.5),
        Plan("setip-a", "expiry", 15 * _MIN, 1, 60, grace=5.0),
        Plan("setip-b", "expiry", 10 * _MIN, 1, 60, grace=5.0),
        Plan("setip-c", "expiry", 5 * _MIN, 1, 60, grace=5.0),
        Plan("business-a", "expiry", 90 * _MIN, 1, 60, grace=5.0),
        Plan("business-b", "expiry", 60 * _MIN, 1, 60, grace=5.0),
        Plan("business-c", "expiry", 30 * _MIN, 1, 60, grace=5.0),
        Plan("private-a", "expiry", 6 * _HOUR, 1, 300, grace=5.0),
        Plan("private-b", "expiry", 3 * _HOUR, 1, 300, grace=5.0),
    )
}

_FIELDS = {"kind": str, "interval": float, "misses": int, "ttl": int, "grace": float}
_REQUIRED = ("kind", "interval", "misses", "ttl")


def build_plans(overrides: dict[str, Any]) -> dict[str, Plan]:
    """Merge ``HBDNS_PLANS`` overrides (JSON object of name -> partial plan) over the defaults."""
    table = dict(DEFAULT_PLANS)
    for name, spec in overrides.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"HBDNS_PLANS: plan {name!r} must be an object")
        bad = sorted(set(spec) - set(_FIELDS))
        if bad:
            raise ConfigError(f"HBDNS_PLANS: plan {name!r} has unknown field {bad[0]!r}")
        base = table.get(name)
        if base is None:
            missing = sorted(set(_REQUIRED) - set(spec))
            if missing:
                raise ConfigError(f"HBDNS_PLANS: new plan {name!r} needs field {missing[0]!r}")
            base = Plan(name, "heartbeat", 1.0, 1, 1)
        try:
            values = {k: _FIELDS[k](v) for k, v in spec.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"HBDNS_PLANS: plan {name!r} has a value of the wrong type") from None
        plan = replace(base, **values)
        if (
            plan.kind not in ("heartbeat", "expiry")
            or plan.interval <= 0
            or plan.misses < 1
            or plan.ttl < 0
            or plan.grace < 0
        ):
            raise ConfigError(f"HBDNS_PLANS: plan {name!r} is out of range")
        table[name] = plan
    return table
