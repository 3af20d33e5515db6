"""The mail world of issue 13, built inside a private namespace (:mod:`tests.support.netns`).

Addresses (all on the namespace's ``lo``; DNS from pdns on 127.0.0.1:53, the namespace's resolver):

======================  =======================  ===============================================
who                     address                  what runs there
======================  =======================  ===============================================
customer                127.0.0.5, fd00::5       its mail server (:class:`~tests.support.mailboxes.Mailbox`)
customer, moved         127.0.0.6                the same, after its address changed (a stranger gets .5)
dual-stack customer     127.0.0.11, fd00::11     its mail server on both families
resolver                127.0.0.53               pdns-recursor: the backup MX's caching resolver
neutral host            127.0.0.9, fd00::9       ``hbdns-neutral-host`` (421 on 25, page on 80)
refusing neutral        127.0.0.8                nothing (connections are refused)
dropping neutral        127.0.0.7                a listener that never answers (connect timeout)
backup MX               127.0.0.25, fd00::25     Postfix from deploy/postfix/main.cf
sending MTA             127.0.0.30, fd00::30     a second, stock Postfix (follows MX order)
sender's mailbox        127.0.0.31               where bounces (DSNs) arrive
hbdns                   127.0.0.1                Redis, hbdns-backup-mx-maps (:8026), pdns, flushes
======================  =======================  ===============================================

``MailNet(stack=False)`` (phase 1) serves DNS from pdns' bind backend with a zone file the scenario
rewrites (:class:`StaticDns`). ``stack=True`` (phase 2) runs the hbdns stack instead
(:class:`~tests.support.mailstack.HbdnsStack`): DNS follows the customers' beats, and the backup
MX resolves through the caching resolver. The backup MX's tables come from hbdns' Redis through
hbdns-backup-mx-maps either way.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

from backup_mx.maps import RECIPIENTS_FIELD
from hbdns import config, keys
from hbdns.connection import connect
from hbdns.model import Account, StaticRecord, Zone
from hbdns.store import Store
from tests.support import netns
from tests.support.mailboxes import Mailbox
from tests.support.mailstack import HbdnsStack
from tests.support.neutral import NeutralHostProcess
from tests.support.pdns import PdnsServer
from tests.support.postfix import DEPLOY, Postfix, mail_root, parse_main
from tests.support.servers import Process, RedisServer, wait_for

ROOT = Path(__file__).resolve().parents[2]

CUSTOMER, CUSTOMER6 = "127.0.0.5", "fd00::5"
NEUTRAL, NEUTRAL6 = "127.0.0.9", "fd00::9"
REFUSING = "127.0.0.8"
DROPPING = "127.0.0.7"
BACKUP, BACKUP6 = "127.0.0.25", "fd00::25"
SENDER, SENDER6 = "127.0.0.30", "fd00::30"
DSN = "127.0.0.31"
MOVED = "127.0.0.6"
DUAL, DUAL6 = "127.0.0.11", "fd00::11"
RESOLVER = "127.0.0.53"
ADDRESSES = [CUSTOMER, CUSTOMER6, NEUTRAL, NEUTRAL6, REFUSING, DROPPING, BACKUP, BACKUP6, SENDER, SENDER6, DSN,
             MOVED, DUAL, DUAL6, RESOLVER]  # fmt: skip

ZONE = "dyn.hbdns.test"
HOME = f"home.{ZONE}"
DUAL_HOME = f"dual.{ZONE}"
BACKUP_MX = "mx-backup.provider.test"
USERS = {"alice", "bob"}
FROM = "carol@sender.test"
MAP_PORT = int(parse_main((DEPLOY / "main.cf").read_text())["relay_domains"].split(":")[3])
TTL = 3  # heartbeat-c's record TTL


class StaticDns:
    """pdns + bind backend serving ``test.`` from a zone file; :meth:`set_host` rewrites it."""

    def __init__(self, workdir: Path, names: list[str]) -> None:
        self.workdir = workdir
        self.zonefile = workdir / "test.zone"
        self.serial = 1
        named = workdir / "named.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        named.write_text(f'zone "test" {{ type master; file "{self.zonefile}"; }};\n')
        self.hosts: dict[str, tuple[str | None, str | None, list[tuple[int, str]]]] = {
            name: (CUSTOMER, None, [(10, name), (50, BACKUP_MX)]) for name in names
        }
        self._write()
        self.pdns = PdnsServer(
            workdir / "pdns", "", port=53, extra={"launch": "bind", "bind-config": str(named), "loglevel": "3"}
        )

    def start(self) -> StaticDns:
        self.pdns.start()
        return self

    def stop(self) -> None:
        self.pdns.stop()

    def set_host(self, name: str, *, a: str | None, mx: list[tuple[int, str]], aaaa: str | None = None) -> float:
        """Serve these records for ``name``; returns the wall time pdns first answered them."""
        self.hosts[name] = (a, aaaa, mx)
        self._write()
        code, out = self.pdns.control("bind-reload-now", "test")
        if code != 0:
            raise RuntimeError(f"bind-reload-now: {out}")
        # As hbdns' writers do after a change: pdns' caches are keyed by the query's shape, so a
        # resolver asking differently from this check would otherwise get the old answer for ~1 s.
        self.pdns.purge(name)
        want_a = {a} if a else set()
        want_mx = {f"{p} {h}." for p, h in mx}
        wait_for(
            lambda: self._answers(name, "A") == want_a and self._answers(name, "MX") == want_mx,
            10,
            interval=0.01,
            what=f"{name} in the new zone",
        )
        return time.time()

    def _write(self) -> None:
        self.serial += 1
        rows = []
        for name, (a, aaaa, mx) in sorted(self.hosts.items()):
            rows += [f"{name}. IN A {a}"] if a else []
            rows += [f"{name}. IN AAAA {aaaa}"] if aaaa else []
            rows += [f"{name}. IN MX {pref} {host}." for pref, host in mx]
        tmp = self.zonefile.with_suffix(".new")
        tmp.write_text(
            f"$TTL {TTL}\n"
            f"@ IN SOA ns1.provider.test. hostmaster.provider.test. {self.serial} 60 60 600 {TTL}\n"
            "@ IN NS ns1.provider.test.\n"
            "ns1.provider.test. IN A 127.0.0.1\n"
            f"{BACKUP_MX}. IN A {BACKUP}\n{BACKUP_MX}. IN AAAA {BACKUP6}\n"
            f"mta.sender.test. IN A {SENDER}\n"
            "sender.test. IN MX 10 mail.sender.test.\n"
            f"mail.sender.test. IN A {DSN}\n" + "\n".join(rows) + "\n"
        )
        tmp.replace(self.zonefile)

    def _answers(self, name: str, rdtype: str) -> set[str]:
        from tests.support.pdns import answer_texts

        return answer_texts(self.pdns.query(name, rdtype, timeout=1.0), name, rdtype)


def backup_settings(etrn_table: str, **over: str) -> dict[str, str]:
    """deploy/postfix/main.cf as the test runs it: its own name, addresses and ETRN table (its
    socketmap tables stay as deployed: hbdns-backup-mx-maps listens on their port here)."""
    return {
        "myhostname": BACKUP_MX,
        "inet_interfaces": f"{BACKUP}, {BACKUP6}",
        # the "Internet" here is 127.0.0.x: only hbdns' own 127.0.0.1 is the backup's network
        "mynetworks": "127.0.0.1/32 [::1]/128",
        "smtpd_etrn_restrictions": f"check_client_access cidr:{etrn_table}, reject",
        "delay_logging_resolution_limit": "3",
        **over,
    }


def sender_settings(**over: str) -> dict[str, str]:
    """A stock Postfix somewhere on the Internet: Postfix defaults, its own name and address."""
    return {
        "compatibility_level": "3.6",
        "myhostname": "mta.sender.test",
        "inet_interfaces": f"{SENDER}, {SENDER6}",
        "inet_protocols": "all",
        "mydestination": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "mynetworks": "127.0.0.0/8 [::1]/128",
        "smtp_bind_address": SENDER,
        "smtp_bind_address6": SENDER6,
        "delay_logging_resolution_limit": "3",
        **over,
    }


class MailNet:
    """Everything of the table above; :meth:`stop` stops it all (the namespace ends the rest)."""

    def __init__(
        self,
        workdir: Path,
        *,
        recipients: list[str] | None = None,
        extra_names: int = 0,
        stack: bool = False,
        flush: bool = True,
    ) -> None:
        self.workdir = workdir
        self.root = mail_root()
        self.recipients = sorted(USERS) if recipients is None else recipients
        self.names = [HOME] + [f"ref{i:02d}.{ZONE}" for i in range(1, extra_names + 1)]
        if stack:
            self.names.append(DUAL_HOME)
        self.redis = RedisServer(workdir / "redis")
        self.dns = StaticDns(workdir / "dns", self.names) if not stack else None
        self.stack: HbdnsStack | None = None  # made in start(): it takes ports, and lo is up only then
        self._stack_options = {"flush": flush} if stack else None
        self.accounts: dict[str, Account] = {}
        self.neutral = NeutralHostProcess(workdir, (NEUTRAL, NEUTRAL6), name="neutral.provider.test")
        self.customer = Mailbox(CUSTOMER, name=HOME, users=USERS, domains=set(self.names))
        self.dropping: list[socket.socket] = []
        self.dsn = Mailbox(DSN, name="mail.sender.test")
        self.maps: Process | None = None
        self.backup = Postfix(self.root, "backup", {}, base=(DEPLOY / "main.cf").read_text())
        self.sender = Postfix(self.root, "sender", sender_settings())
        self.store: Store | None = None
        self.account_id = 0

    def start(self) -> MailNet:
        netns.enter(ADDRESSES, "127.0.0.1", self.workdir)
        if self._stack_options is not None:
            self.stack = HbdnsStack(self.workdir / "hbdns", self.redis, [ZONE, "sender.test", "provider.test"],
                                    flush_to=f"{BACKUP}:25", **self._stack_options)  # fmt: skip
        self.redis.start()
        settings = config.load({"HBDNS_REDIS_URL": self.redis.url})
        self.store = Store(connect(self.redis.url), settings)
        self.store.add_zone(
            Zone(apex=ZONE, ns=("ns1.provider.test",), hostmaster="hostmaster.provider.test", neutral_ipv4=NEUTRAL,
                 neutral_ipv6=NEUTRAL6, backup_mx=BACKUP_MX, allow_private=True)
        )  # fmt: skip
        if self.stack is not None:
            for zone in static_zones():
                self.store.add_zone(zone)
        for name in self.names:
            acct = self.store.add_account(self.store.new_account(name, "heartbeat-c", mx=True, emails=[f"ops@{name}"]))
            self.account_id = self.account_id or acct.id
            self.accounts[name] = acct
            if self.recipients:  # as the provisioning surfaces write it (hbdns account set --mx-recipient)
                self.store.r.hset(keys.account(acct.id), RECIPIENTS_FIELD, json.dumps(self.recipients))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        env.update(HBDNS_REDIS_URL=self.redis.url, HBDNS_BACKUP_MX_MAP_PORT=str(MAP_PORT))
        self.maps = Process([sys.executable, "-m", "backup_mx.main"], self.workdir / "maps.log", env=env, cwd=str(ROOT))
        wait_for(lambda: _port_open("127.0.0.1", MAP_PORT), 20, what="hbdns-backup-mx-maps")
        if self.dns is not None:
            self.dns.start()
        if self.stack is not None:
            self.stack.start()
        self.neutral.start()
        self.customer.start()
        self.dsn.start()
        etrn = self.backup.dir / "hbdns_etrn_clients"
        self.backup.dir.mkdir(parents=True, exist_ok=True)
        etrn.write_text((DEPLOY / "hbdns_etrn_clients").read_text())
        self.backup.main.update(backup_settings(str(etrn)))
        resolver = None
        if self.stack is not None:  # the backup MX resolves through the caching resolver
            resolver = self.workdir / "resolv-backup.conf"
            resolver.write_text(f"nameserver {RESOLVER}\noptions timeout:1 attempts:2\n")
        self.backup.write().start(listen=(BACKUP, 25), resolv_conf=resolver)
        self.sender.write().start(listen=(SENDER, 25))
        return self

    def stop(self) -> None:
        dns = self.dns.stop if self.dns is not None else self.stack.stop if self.stack is not None else None
        for step in (self.sender.stop, self.backup.stop, self.dsn.stop, self.customer.stop, self.neutral.stop,
                     dns, self._stop_maps, self.redis.stop):  # fmt: skip
            if step is None:
                continue
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                print(f"stop: {step}: {exc!r}", file=sys.stderr)

    def _stop_maps(self) -> None:
        if self.maps is not None:
            self.maps.stop()
        for sock in self.dropping:
            sock.close()

    def keep_logs(self) -> None:
        """Copy the Postfix logs next to the other logs (the mail root is removed)."""
        for pf in (self.backup, self.sender):
            if pf.maillog.exists():
                (self.workdir / f"{pf.name}.maillog").write_bytes(pf.maillog.read_bytes())

    def remove_root(self) -> None:
        subprocess.run(["rm", "-rf", str(self.root)], check=False)

    # --- acting -----------------------------------------------------------------------------------

    def send(self, count: int, rcpt: str = f"alice@{HOME}", tag: str = "m") -> list[str]:
        """Submit ``count`` messages to the sending MTA (each told ``250 queued``); their Message-IDs."""
        ids = []
        with smtplib.SMTP(SENDER, 25, timeout=30, source_address=("127.0.0.1", 0)) as smtp:
            for i in range(count):
                msg = EmailMessage()
                msg["From"] = FROM
                msg["To"] = rcpt
                msg["Subject"] = f"{tag} {i}"
                msg["Message-ID"] = f"<{tag}-{i}-{uuid.uuid4().hex[:12]}@sender.test>"
                msg.set_content(f"message {tag} {i}\n")
                smtp.send_message(msg)
                ids.append(msg["Message-ID"])
        return ids

    def set_home(self, *, a: str | None, mx: list[tuple[int, str]], name: str = HOME) -> float:
        """Phase 1: rewrite the static zone."""
        assert self.dns is not None, "the hbdns stack's DNS follows the beats"
        return self.dns.set_host(name, a=a, mx=mx)

    def drop_connections_to(self, address: str) -> None:
        """Make ``address``:25 swallow connection attempts (no answer at all, like an unrouted
        neutral IP on the Internet): a listener that never accepts, its accept queue filled."""
        listener = socket.socket()
        listener.bind((address, 25))
        listener.listen(0)
        self.dropping.append(listener)
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect((address, 25))
            except BlockingIOError:
                pass
            self.dropping.append(filler)

    def delivered(self, ids: list[str]) -> list[str]:
        got = set(self.customer.ids())
        return [i for i in ids if i in got]

    def bounces(self) -> list[str]:
        """Subjects of the DSNs that reached the sender's mailbox."""
        return [m.subject for m in self.dsn.received() if m.sender == ""]


def static_zones() -> list[Zone]:
    """The other names of the mail world as hbdns zones with static records: the provider's (backup
    MX, name server) and the sending side's (its MTA, the sender's mailbox for bounces)."""
    base = {"hostmaster": "hostmaster.provider.test", "neutral_ipv4": NEUTRAL}
    return [
        Zone(apex="provider.test", ns=("ns1.provider.test",), **base, records=(  # type: ignore[arg-type]
            StaticRecord(BACKUP_MX, "A", BACKUP, 60), StaticRecord(BACKUP_MX, "AAAA", BACKUP6, 60),
            StaticRecord("ns1.provider.test", "A", "127.0.0.1", 60))),
        Zone(apex="sender.test", ns=("ns1.provider.test",), **base, records=(  # type: ignore[arg-type]
            StaticRecord("sender.test", "MX", "10 mail.sender.test", 60),
            StaticRecord("mail.sender.test", "A", DSN, 60), StaticRecord("mta.sender.test", "A", SENDER, 60),
            StaticRecord("ns1.sender.test", "A", "127.0.0.1", 60))),
    ]  # fmt: skip


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
