"""Bench-only: the real backend with account data memoized in-process after the first lookup.

Not a product mode (it would break the live/neutral flip at expiry): it measures the ceiling of ANY
Python process behind pdns' remote-backend protocol on this machine, i.e. what remains of the gap to
the bind backend when the per-lookup Redis round trip costs nothing. ``bench_backend`` reports it
next to the real backend so the report says where the gap comes from.
"""

from __future__ import annotations

import sys
from typing import Any

from pdns_backend import main
from pdns_backend.accounts import AccountReader

_real_fetch = AccountReader.fetch
_memo: dict[str, Any] = {}


def _memo_fetch(self: AccountReader, names: list[str]) -> list[Any]:
    missing = [n for n in names if n not in _memo]
    if missing:
        _memo.update(zip(missing, _real_fetch(self, missing), strict=True))
    return [_memo[n] for n in names]


if __name__ == "__main__":
    AccountReader.fetch = _memo_fetch  # type: ignore[method-assign]
    sys.exit(main.main())
