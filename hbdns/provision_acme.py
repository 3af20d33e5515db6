"""ACME credentials as the admin CLI and the admin API make them: one name of one account, shown
once, with what lego, acme.sh and certbot need to use them (docs/acme.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hbdns import acme_credentials, validate
from hbdns.acme_credentials import Credential
from hbdns.model import Account
from hbdns.validate import Fields

if TYPE_CHECKING:
    from hbdns.store import Store


@dataclass(frozen=True)
class Issued:
    credential: Credential
    key: str  # shown once
    server_url: str

    def as_dict(self) -> dict[str, Any]:
        """The answer of ``acme-credentials``: acme-dns's account (for lego's storage file and
        certbot's acmedns.json, under the name), the httpreq Basic credentials and acme.sh's
        variables."""
        account = acme_credentials.acme_dns_account(self.credential, self.key, self.server_url)
        base = self.server_url.removesuffix("/acme-dns")
        return {
            "name": self.credential.name,
            "fulldomain": self.credential.fulldomain,
            "acme_dns": {self.credential.name: account},
            "httpreq": {"endpoint": base + "/httpreq", "username": self.credential.id, "password": self.key},
            "acme_sh": {
                "ACMEDNS_BASE_URL": self.server_url,
                "ACMEDNS_USERNAME": self.credential.id,
                "ACMEDNS_PASSWORD": self.key,
                "ACMEDNS_SUBDOMAIN": self.credential.id,
            },
        }


def _own_name(account: Account, name: str | None) -> str:
    f = Fields()
    chosen = f.check("name", validate.hostname, name) if name else account.fqdn
    if chosen is not None and chosen not in account.names:
        f.add("name", f"{chosen} is not a name of account {account.fqdn} (its names: {', '.join(account.names)})")
    f.done()
    assert chosen is not None
    return chosen


def issue(store: Store, account: Account, name: str | None = None) -> Issued:
    """New credentials for ``name`` (default: the account's own name); the previous ones of that
    name stop working now."""
    chosen = _own_name(account, name)
    cred, key = acme_credentials.make(store.r, account.id, chosen)
    return Issued(credential=cred, key=key, server_url=store.settings.acme_dns_url)


def revoke(store: Store, account: Account, name: str | None = None) -> bool:
    """Revoke the credentials of ``name``; False when it had none."""
    return acme_credentials.revoke(store.r, account.id, _own_name(account, name))


def listing(store: Store, account: Account) -> list[Credential]:
    return acme_credentials.listing(store.r, account.id)
