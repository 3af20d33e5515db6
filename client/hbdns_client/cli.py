"""``hbdns-client``: the commands ``run`` (the daemon), ``send`` and ``check`` (one-shot), and ``main``.

``run`` beats every ``interval`` seconds until it is asked to stop, then sends an OFFLINE beat (DNS is
neutral at once instead of after the missed beats) and exits 0. It never exits because of anything
outside its configuration (:mod:`hbdns_client.runner`): only a configuration error stops it (78).

``send`` sends one beat (``--offline`` for a planned shutdown) and ``check`` diagnoses (name lookup,
one real beat per address family, answered or not, clock offset); both say the outcome in their exit
code, for scripts: 0 accepted, 1 no authenticated answer (or nothing could be sent), 3 the server
says this machine's clock is off (``send`` still gets its beat accepted when the server's answer
carries its clock), 78 configuration error (bad options included).
"""

from __future__ import annotations

import argparse
import logging
import select
import socket
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from hbdns_client import stopping, wire
from hbdns_client.beater import Beater, Outcome
from hbdns_client.clock import Clock, ServerClock
from hbdns_client.config import ClientConfig, ConfigError, load_config
from hbdns_client.counters import Counters
from hbdns_client.runner import Runner, never_answered
from hbdns_client.state import StateFile

log = logging.getLogger("hbdns_client")

EXIT_OK, EXIT_NO_ANSWER, EXIT_CLOCK, EXIT_CONFIG = 0, 1, 3, 78
OFFLINE_BUDGET = 1.5  # seconds the OFFLINE beat may take when stopping (two tries; systemd allows 10)


def make_beater(cfg: ClientConfig, wake: stopping.Stopper | None = None) -> Beater:
    counters = Counters(ServerClock(Clock.from_env()), StateFile(cfg.state_file, cfg.account_id))
    return Beater(cfg, counters, wake=wake)


# --- run ------------------------------------------------------------------------------------------


def cmd_run(cfg: ClientConfig) -> int:
    stopper = stopping.Stopper()
    stopping.install(stopper)
    beater = make_beater(cfg, stopper)
    runner = Runner(beater)
    log.info(
        "beating to %s every %gs as account %d (once answered, asking for a reply every %gs); counter kept in %s",
        cfg.server,
        cfg.interval,
        cfg.account_id,
        cfg.reply_every,
        cfg.state_file,
    )
    failed = ""
    try:
        while not stopper.requested:
            started = time.monotonic()
            try:
                delay = runner.step()
            except Exception as exc:  # a bug must cost one beat, not the heartbeats
                if repr(exc) != failed:
                    log.exception("heartbeat failed; still beating")
                    failed = repr(exc)
                delay = cfg.interval
            if not stopper.requested:
                select.select([stopper], [], [], max(0.0, delay - (time.monotonic() - started)))
        go_offline(beater)
    finally:
        stopper.finished()
        beater.close()
        stopper.close()
    return EXIT_OK


def go_offline(beater: Beater, budget: float = OFFLINE_BUDGET) -> bool:
    """Send the OFFLINE beat within ``budget`` seconds (a second try if the first got no answer)."""
    beater.wake = None  # the stop request that brought us here must not cut these waits short
    deadline = time.monotonic() + budget
    outcome = Outcome()
    try:
        if not beater.targets:
            beater.resolve(timeout=budget / 2)
        for share in (0.6, 1.0):
            left = deadline - time.monotonic()
            if left <= 0.05:
                break
            outcome = beater.beat(offline=True, timeout=left * share, lookup=False)
            if outcome.reply is not None or outcome.refused:
                break
    except OSError as exc:  # NameNotResolved included
        log.warning("cannot send the offline heartbeat (%s); the account goes neutral after the missed beats", exc)
        return False
    if outcome.ok:
        log.info("offline heartbeat accepted: the account is neutral now")
        return True
    log.warning("offline heartbeat sent but not answered; the account goes neutral after the missed beats")
    return False


# --- send and check -------------------------------------------------------------------------------


def cmd_send(cfg: ClientConfig, offline: bool, timeout: float, tries: int) -> int:
    beater = make_beater(cfg)
    outcome = Outcome()
    skewed = False
    try:
        for _ in range(max(1, tries)):
            try:
                outcome = beater.beat(offline=offline, timeout=timeout)
            except OSError as exc:
                print(f"hbdns-client: {exc.strerror or exc}", file=sys.stderr)
                return EXIT_NO_ANSWER
            skewed = skewed or outcome.clock_skew
            if outcome.ok:
                break  # a CLOCK_SKEW answer moved the counters to the server's clock: the next try counts
    finally:
        beater.close()
    if outcome.reply is None:
        print("hbdns-client: " + never_answered(cfg), file=sys.stderr)
        return EXIT_NO_ANSWER
    for reply in outcome.replies:
        print(f"{wire.STATUS_NAMES.get(reply.status, str(reply.status))} {reply.address}".rstrip())
    if skewed:
        print(f"hbdns-client: {_clock_text(beater)}", file=sys.stderr)
    return EXIT_OK if outcome.ok else EXIT_CLOCK


def _clock_text(beater: Beater) -> str:
    offset = beater.server_clock.wall_offset_s()
    if offset is None:
        return "the server says this machine's clock is off too far; fix NTP"
    return (
        f"this machine's clock is {abs(offset):.1f} s {'ahead of' if offset > 0 else 'behind'} the server's; "
        "beats followed the server's clock, but fix NTP"
    )


def cmd_check(cfg: ClientConfig, timeout: float) -> int:
    """Diagnose: lookup, one real beat per family (it does set the address), answers, clock."""
    beater = make_beater(cfg)
    out: list[str] = [f"account {cfg.account_id} at {cfg.server}; counter kept in {cfg.state_file}"]
    code = EXIT_OK
    try:
        try:
            beater.resolve()
        except OSError as exc:
            print("\n".join([*out, f"lookup: {exc}", "result: nothing sent"]))
            return EXIT_NO_ANSWER
        addresses = ", ".join(
            f"{addr[0]} (IPv{4 if fam == socket.AF_INET else 6})" for fam, (_, addr) in beater.targets.items()
        )
        out.append(f"lookup: {cfg.host} -> {addresses}")
        try:
            outcome = beater.beat(timeout=timeout)
            if outcome.clock_skew:
                out.append(f"clock: {_clock_text(beater)} (window +-{(beater.server_clock.window_ms or 0) / 1000:g} s)")
                code = EXIT_CLOCK
                outcome = beater.beat(timeout=timeout, lookup=False)  # now with the server's clock
        except OSError as exc:
            print("\n".join([*out, f"send: {exc.strerror or exc}", "result: nothing sent"]))
            return EXIT_NO_ANSWER
    finally:
        beater.close()
    for sent in outcome.sent:
        if sent.reply is None:
            why = (
                "port unreachable (no listener there?)" if sent.refused else f"no authenticated answer in {timeout:g} s"
            )
            out.append(f"IPv{sent.family} {sent.target}: {why}")
            code = code or EXIT_NO_ANSWER
        else:
            status = wire.STATUS_NAMES.get(sent.reply.status, str(sent.reply.status))
            rtt = f", answered in {sent.rtt * 1000:.1f} ms" if sent.rtt is not None else ""
            seen = f", public address {sent.reply.address}" if sent.reply.address else ""
            out.append(f"IPv{sent.family} {sent.target}: {status}{seen}{rtt}")
            if sent.reply.status == wire.STATUS_CLOCK_SKEW:
                code = EXIT_CLOCK
    out.extend(f"send: {e}" for e in outcome.send_errors)
    if code == EXIT_OK:
        out.append("clock: within the server's window (it states its clock only to beats outside it)")
    if code == EXIT_NO_ANSWER:
        out.append("hint: " + never_answered(cfg))
    out.append("result: " + {EXIT_OK: "ok", EXIT_NO_ANSWER: "no answer", EXIT_CLOCK: "clock off"}[code])
    print("\n".join(out))
    return code


# --- main -----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # a bad option is a configuration error: no restart helps
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: an option given before the subcommand is not reset by the subcommand's defaults
    sup = argparse.SUPPRESS
    common.add_argument("--config", "-c", default=sup, help="config file (key = value lines)")
    common.add_argument("--server", default=sup, help="host:port or [v6]:port (overrides the file)")
    common.add_argument("--account-id", default=sup)
    common.add_argument("--key-file", default=sup, help="file holding the 64-hex-character key")
    common.add_argument("--interval", default=sup, help="seconds between beats")
    common.add_argument("--source", default=sup, help="local address to send from")
    common.add_argument(
        "--reply-every", default=sup, help="run: seconds between beats that ask for a reply (default 30; 0: every beat)"
    )
    common.add_argument("--state-file", default=sup, help="where the last counter is kept")
    common.add_argument("--log-file", default=sup, help="append the log to this file instead of stderr")
    common.add_argument("--verbose", "-v", action="store_true", default=sup)
    parser = _Parser(
        prog="hbdns-client",
        parents=[common],
        description="Heartbeat client for hbdns. 'run' never gives up (exit 78 only for a bad configuration). "
        "Exit codes of send/check: 0 accepted, 1 no authenticated answer, 3 clock off, 78 bad configuration.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("run", parents=[common], help="beat every interval until stopped (then an offline beat)")
    send = sub.add_parser("send", parents=[common], help="send one beat and wait for the answer")
    send.add_argument("--offline", action="store_true", help="going offline: neutralize now")
    send.add_argument("--timeout", type=float, default=2.0, help="seconds to wait per try (default 2)")
    send.add_argument("--tries", type=int, default=3, help="beats to send until one is accepted (default 3)")
    check = sub.add_parser("check", parents=[common], help="diagnose: lookup, one real beat, answer, clock")
    check.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each answer (default 2)")
    return parser


def setup_logging(log_file: str, verbose: bool) -> None:
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s hbdns-client %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = ("server", "account_id", "key_file", "interval", "source", "reply_every", "state_file", "log_file")
    overrides = {name: getattr(args, name, None) for name in names}
    try:
        cfg = load_config(getattr(args, "config", None), overrides=overrides)
    except ConfigError as exc:
        print(f"hbdns-client: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        setup_logging(cfg.log_file, getattr(args, "verbose", False))
    except OSError as exc:
        print(f"hbdns-client: configuration: log_file {cfg.log_file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "run":
        return cmd_run(cfg)
    if args.command == "check":
        return cmd_check(cfg, args.timeout)
    return cmd_send(cfg, args.offline, args.timeout, args.tries)
