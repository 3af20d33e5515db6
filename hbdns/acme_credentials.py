"""ACME credentials: what a customer's ACME client proves to set one name's DNS-01 values, and
nothing else.

Made by the operator (``hbdns account acme-credentials NAME``) or the customer (the admin API with
an account token), shown once, stored only as the SHA-256 of the key, like admin API tokens
(:mod:`hbdns.tokens`): the key is 256 random bits, so no slow hash is needed, and the digest is
compared with ``hmac.compare_digest``; an unknown or malformed id is compared against a dummy
digest, so timing tells neither whether an id exists nor how much of a key matched.

A credential is bound to one name of one account (its id): it can set only that name's challenge
values, dies with the account or when the name leaves it, and is replaced by the next one made for
that name. Its shape is acme-dns's (``username``, ``password``, ``subdomain``, ``fulldomain``), so
lego, acme.sh and certbot's acme-dns hook take it as it is; lego's httpreq takes ``username`` and
``password`` as Basic credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from hbdns import acme, keys

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_DUMMY = hashlib.sha256(b"hbdns-no-such-acme-credential").hexdigest()
MAX_PRESENTED = 200  # characters of a presented id or key that are looked at


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Credential:
    id: str  # acme-dns's username (and subdomain)
    name: str  # the account name whose challenge it sets
    account_id: int
    digest: str  # SHA-256 of the key
    created: float = 0.0

    @property
    def fulldomain(self) -> str:
        return acme.challenge_name(self.name)

    def public_dict(self) -> dict[str, Any]:
        return {"username": self.id, "name": self.name, "fulldomain": self.fulldomain, "created": self.created}


def acme_dns_account(cred: Credential, key: str, server_url: str) -> dict[str, Any]:
    """The credential as acme-dns's ``/register`` answers it, plus ``server_url`` (lego's storage
    file and certbot's acmedns.json hold exactly these)."""
    return {
        "username": cred.id,
        "password": key,
        "subdomain": cred.id,
        "fulldomain": cred.fulldomain,
        "allowfrom": [],
        "server_url": server_url,
    }


def make(r: Any, account_id: int, name: str) -> tuple[Credential, str]:
    """A new credential for ``name`` of account ``account_id`` and its key (shown once); the one
    made before for that name stops working now."""
    cred = Credential(id=str(uuid.uuid4()), name=name, account_id=account_id, digest="", created=time.time())
    key = secrets.token_urlsafe(32)
    cred = Credential(cred.id, name, account_id, digest(key), cred.created)
    # the new credential first, then the account's index switched to it, then the old one deleted:
    # three keys in three slots, each step a single-key command (no MULTI across slots)
    old = r.hget(keys.acme_credentials(account_id), name)
    r.hset(
        keys.acme_credential(cred.id),
        mapping={"name": name, "account": str(account_id), "sha256": cred.digest, "created": repr(cred.created)},
    )
    r.hset(keys.acme_credentials(account_id), name, cred.id)
    if old:
        r.delete(keys.acme_credential(str(old)))
    return cred, key


def listing(r: Any, account_id: int) -> list[Credential]:
    """The account's current credentials, one per name at most."""
    ids = r.hgetall(keys.acme_credentials(account_id))
    out = []
    for name in sorted(ids):
        cred = get(r, str(ids[name]))
        if cred is not None and cred.name == name:
            out.append(cred)
    return out


def get(r: Any, cred_id: str) -> Credential | None:
    h = r.hgetall(keys.acme_credential(cred_id))
    if not h.get("sha256"):
        return None
    return Credential(cred_id, h["name"], int(h["account"]), h["sha256"], float(h.get("created", 0)))


def check(r: Any, cred_id: str, key: str) -> Credential | None:
    """The credential ``cred_id``/``key`` prove, or None; the same work either way."""
    cred_id, key = cred_id.strip()[:MAX_PRESENTED].lower(), key[:MAX_PRESENTED]
    cred = get(r, cred_id) if _ID.match(cred_id) else None
    ok = hmac.compare_digest(cred.digest if cred else _DUMMY, digest(key))
    return cred if ok and cred is not None else None


def revoke(r: Any, account_id: int, name: str) -> bool:
    """Revoke the credential of ``name``; False when it had none."""
    old = r.hget(keys.acme_credentials(account_id), name)
    if not old:
        return False
    r.delete(keys.acme_credential(str(old)))  # revoked from here on; then out of the index
    r.hdel(keys.acme_credentials(account_id), name)
    return True


def forget(r: Any, shard_tx: Any, account_id: int, names: list[str], *, everything: bool = False) -> list[str]:
    """For ``names`` leaving an account (with ``everything``: the account goes), queue on
    ``shard_tx`` (the MULTI in the account's shard that stops confirming them) the removal of their
    entries in the account's credential index, and return the keys to delete after it: their
    credentials and challenge values (global keys and keys of their own slots, one DEL each)."""
    creds = r.hgetall(keys.acme_credentials(account_id))
    gone = sorted(creds) if everything else sorted(n for n in names if n in creds)
    if everything:
        shard_tx.delete(keys.acme_credentials(account_id))
    elif gone:
        shard_tx.hdel(keys.acme_credentials(account_id), *gone)
    return [keys.acme_credential(str(creds[n])) for n in gone] + acme.challenge_keys(sorted(set(names)))
