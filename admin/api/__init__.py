"""The provisioning REST API (``hbdns-admin-api``): ``/api/v1``, JSON, for a provider's billing
system, portal and resellers. Private: it binds an address of its own on loopback by default.

Modules, by job: :mod:`~admin.api.schemas` (the pydantic models: request validation and the OpenAPI
document), :mod:`~admin.api.problems` (RFC 9457 errors), :mod:`~admin.api.auth` (tokens, scopes,
rate limits), :mod:`~admin.api.zones`, :mod:`~admin.api.accounts`, :mod:`~admin.api.notifications`
(the routes), :mod:`~admin.api.service` (what the views work with), :mod:`~admin.api.app` (the app
factory) and :mod:`~admin.api.main` (the waitress process). Checks and writes are
:mod:`hbdns.provision`'s, the CLI's own. See docs/api.md.
"""
