"""The plan table: how often a client reports, how many misses neutralize, and the record TTL.

Figures are the seed's: heartbeat plans beat every 45/15/5 s and neutralize after 3 missed beats;
expiry plans (update-only clients, "Ablaufzeit") neutralize when one interval passes without update.
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

    @property
    def expiry_ms(self) -> int:
        """Liveness TTL: the account is neutral this long after its last beat or update."""
        return round(self.interval * self.misses * 1000)


_MIN = 60.0
_HOUR = 3600.0

DEFAULT_PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan("heartbeat-a", "heartbeat", 45.0, 3, 45),
        Plan("heartbeat-b", "heartbeat", 15.0, 3, 15),
        Plan("heartbeat-c", "heartbeat", 5.0, 3, 5),
        Plan("setip-a", "expiry", 15 * _MIN, 1, 60),
        Plan("setip-b", "expiry", 10 * _MIN, 1, 60),
        Plan("setip-c", "expiry", 5 * _MIN, 1, 60),
        Plan("business-a", "expiry", 90 * _MIN, 1, 60),
        Plan("business-b", "expiry", 60 * _MIN, 1, 60),
        Plan("business-c", "expiry", 30 * _MIN, 1, 60),
        Plan("private-a", "expiry", 6 * _HOUR, 1, 300),
        Plan("private-b", "expiry", 3 * _HOUR, 1, 300),
    )
}

_FIELDS = {"kind": str, "interval": float, "misses": int, "ttl": int}


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
            missing = sorted(set(_FIELDS) - set(spec))
            if missing:
                raise ConfigError(f"HBDNS_PLANS: new plan {name!r} needs field {missing[0]!r}")
            base = Plan(name, "heartbeat", 1.0, 1, 1)
        try:
            values = {k: _FIELDS[k](v) for k, v in spec.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"HBDNS_PLANS: plan {name!r} has a value of the wrong type") from None
        plan = replace(base, **values)
        if plan.kind not in ("heartbeat", "expiry") or plan.interval <= 0 or plan.misses < 1 or plan.ttl < 0:
            raise ConfigError(f"HBDNS_PLANS: plan {name!r} is out of range")
        table[name] = plan
    return table
