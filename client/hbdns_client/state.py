"""The state file: the highest beat counter this machine sent that the server may have accepted.

The server refuses a counter that is not greater than the last one it accepted (a replay), and says
nothing back (a captured packet must not make it talk). A client that restarts with its clock behind
its last counter (a board without a real-time clock, a clock that NTP just moved back, a restart
right after a burst) would send replays and never hear why. So every beat's counter is written
here before the beat leaves, and the next counter is always above it, across restarts.

One small JSON file, replaced atomically (write, fsync, rename: after a power cut it holds the old
or the new value, never half of one); not secret (mode 0644, so ``check`` run by an administrator
and the service's own user share it). ``run``, ``send`` and ``check`` read it before each beat, so
a one-shot command between two beats of ``run`` is never overtaken.

A state file that cannot be read or written is logged once and otherwise ignored: losing it costs
at most beats that look like replays until the clock passes the last counter (docs/client.md).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("hbdns_client")

FORMAT = 1


class StateFile:
    """``counter`` (the floor for the next beat) of one account, in one file."""

    def __init__(self, path: str | Path, account_id: int) -> None:
        self.path = Path(path)
        self.account_id = account_id
        self.written = -1  # what this process wrote last (-1: nothing yet)
        self._reported: set[str] = set()  # kinds of problem logged already: each once, until it is gone

    def read(self) -> int:
        """The stored floor; 0 when there is none (first start, or unreadable: logged once)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            self._report("read", f"cannot read state file {self.path} ({exc}); counters start from the clock")
            return 0
        if not isinstance(data, dict) or data.get("account_id") != self.account_id:
            self._report("account", f"state file {self.path} is for another account; it will be replaced")
            return 0
        counter = data.get("counter")
        if not isinstance(counter, int) or counter < 0:
            self._report("counter", f"state file {self.path} has no valid counter; it will be replaced")
            return 0
        self._reported -= {"read", "account", "counter"}
        return counter

    def write(self, counter: int) -> bool:
        """Store ``counter`` durably before the beat that uses it leaves; False if that failed."""
        text = json.dumps({"format": FORMAT, "account_id": self.account_id, "counter": counter}) + "\n"
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            self._report(
                "write",
                f"cannot write state file {self.path} ({exc.strerror or exc}): after a restart with a clock "
                "that went back, beats may look like replays until the clock passes the last counter",
            )
            return False
        self.written = counter
        if "write" in self._reported:
            log.info("state file %s written again", self.path)
            self._reported.discard("write")
        return True

    def _report(self, kind: str, problem: str) -> None:
        if kind not in self._reported:
            log.warning("%s", problem)
            self._reported.add(kind)
