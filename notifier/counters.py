"""Counters of what the notifier did, for the metrics (issue 17 exports them to Prometheus; until
then they are logged when the notifier stops).

- ``sms_sent_total``: SMS the gateway accepted; ``sms_segments_total``: their segments (what the
  gateway bills); ``sms_sent_segments_<n>``: SMS sent as ``n`` segments;
- ``sms_cut_total``: SMS texts that were cut to ``HBDNS_SMS_MAX_SEGMENTS`` when built.
"""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Monotonic counters by name, safe to bump from the sending threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counts[name] += by

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))
