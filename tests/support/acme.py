"""Real ACME clients for the DNS-01 tests: Debian's ``pebble`` (the ACME test server, resolving
through the test pdns with ``-dnsserver``) and Debian's ``lego`` (with its acme-dns or httpreq
provider pointed at the update API). Both on loopback only: pebble validates against the test
pdns, lego asks its resolver (``--dns.resolvers``, the same pdns) once for the record and never
looks for authoritative servers (``--dns.disable-cp``), so nothing else is contacted.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import Process, free_port, wait_for, which


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 / localhost (pebble's HTTPS)."""
    cert, key = workdir / "pebble.crt", workdir / "pebble.key"
    subprocess.run(
        [
            which("openssl"),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class Pebble:
    """``pebble`` on free loopback ports, validating DNS-01 through ``dns_port`` at full speed
    (no sleeps, no nonce rejections, no reused authorizations: every order is validated anew)."""

    def __init__(self, workdir: Path, dns_port: int) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dns_port = dns_port
        self.port = free_port()
        self.cert, self.key = self_signed(workdir)
        self.process: Process | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self, timeout: float = 30.0) -> Pebble:
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{free_port()}",
                "certificate": str(self.cert),
                "privateKey": str(self.key),
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        path = self.workdir / "pebble.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self.process = Process(
            [which("pebble"), "-config", str(path), "-dnsserver", f"127.0.0.1:{self.dns_port}", "-strict=false"],
            self.workdir / "pebble.log",
            env=env,
        )
        wait_for(self._ready, timeout, interval=0.1, what=f"pebble on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("pebble exited:\n" + (self.process.log_text() if self.process else ""))
        ctx = ssl.create_default_context(cafile=str(self.cert))
        with urllib.request.urlopen(self.directory, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass(frozen=True)
class LegoRun:
    returncode: int
    output: str
    certificate: Path  # where lego writes it (absent when it failed)

    def sans(self) -> set[str]:
        """The certificate's DNS names."""
        out = subprocess.run(
            [which("openssl"), "x509", "-in", str(self.certificate), "-noout", "-ext", "subjectAltName"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return {part.strip().removeprefix("DNS:") for line in out.splitlines()[1:] for part in line.split(",")}


def lego(
    workdir: Path,
    pebble: Pebble,
    domains: list[str],
    provider: str,
    env: dict[str, str],
    *,
    resolver_port: int,
    timeout: float = 120.0,
) -> LegoRun:
    """One ``lego run`` for ``domains`` with DNS provider ``provider`` (``acme-dns`` or ``httpreq``)
    configured by ``env``."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        which("lego"),
        "--accept-tos",
        "--server",
        pebble.directory,
        "--email",
        "acme@example.org",
        "--path",
        str(workdir / "lego"),
        "--key-type",
        "ec256",
        "--dns",
        provider,
        "--dns.resolvers",
        f"127.0.0.1:{resolver_port}",
        "--dns.disable-cp",
        *(arg for d in domains for arg in ("--domains", d)),
        "run",
    ]
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith(("HTTP", "ACME_DNS", "LEGO", "NO_PROXY"))}
    run_env = {**base, "LEGO_CA_CERTIFICATES": str(pebble.cert), **env}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=run_env, cwd=str(workdir))
    main = domains[0].removeprefix("*.")
    cert = workdir / "lego" / "certificates" / f"{'_.' if domains[0].startswith('*.') else ''}{main}.crt"
    return LegoRun(proc.returncode, proc.stdout + proc.stderr, cert)


def acme_dns_hook(workdir: Path, server_url: str, storage: Path) -> Path:
    """A lego ``exec`` hook that sets values through the acme-dns protocol with pyacmedns, the
    acme-dns author's client library (certbot-dns-acmedns's): Debian builds lego without its own
    acme-dns provider (its library is not packaged). ``storage`` is the acme-dns account file
    (domain -> account), as lego's and certbot's acme-dns clients keep it. Cleanup does nothing,
    as in every acme-dns client: the values expire."""
    import sys

    hook = workdir / "acme-dns-hook.py"
    hook.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from pyacmedns import Client, Storage\n"
        "action, fqdn, value = sys.argv[1:4]\n"
        "if action == 'present':\n"
        "    domain = fqdn.rstrip('.').removeprefix('_acme-challenge.')\n"
        f"    account = Storage({str(storage)!r}).fetch(domain)\n"
        "    if not account:\n"
        "        sys.exit(f'no acme-dns account for {domain}')\n"
        f"    Client({server_url!r}).update_txt_record(account, value)\n"
    )
    hook.chmod(0o700)
    return hook
