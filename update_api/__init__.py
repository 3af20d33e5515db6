"""The dyndns2 update API (``hbdns-update-api``): stock clients (ddclient, inadyn, routers) update an
account over HTTP.

This is the seed's full account update over TCP ("SetIP"); for expiry plans it is also what keeps an
account alive. The protocol is Dyn's (``/nic/update``, ``/v3/update``) with deSEC's status codes,
answered as text/plain lines the clients parse (see ``docs/update-clients.md``).

Modules, by job: :mod:`~update_api.answers` (answer codes, HTTP status), :mod:`~update_api.parsing`
(hostnames, addresses, the client's address behind proxies), :mod:`~update_api.ratelimit` (shared
GCRA buckets in Redis), :mod:`~update_api.service` (authenticate, limit, apply one update; no Flask),
:mod:`~update_api.app` (the Flask app factory), :mod:`~update_api.main` (the waitress process).
The ACME DNS-01 APIs (acme-dns, lego's httpreq) live in :mod:`update_api.acme`, served by the same
process on paths of their own (docs/acme.md).
"""
