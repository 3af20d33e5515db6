"""The customer status page (``hbdns-status-page``): a customer logs in with the account name and its
update password (or a login link) and sees live/neutral, addresses, history and availability,
changes notification preferences, rotates the heartbeat key and turns a status badge on or off.

It lives in ``update_api`` because it is the update API's other public face and shares what matters
most with it: the same credential (the update password), the same failed-login limits per
(source, account), source and account (:mod:`update_api.ratelimit`, through
:meth:`update_api.service.UpdateService.authenticate`), and the same handling of the client's
address behind trusted proxies (:mod:`update_api.parsing`). As a package of its own it could only
share those by moving them into the core; it runs as its own process all the same (main.py).

Modules: :mod:`~.service` (logins, no Flask), :mod:`~.sessions` (Redis sessions, CSRF),
:mod:`~.history` (outages, IP changes, availability from the event log; pure), :mod:`~.svg`
(strips, badge), :mod:`~.pages` (what the templates show), :mod:`~.i18n` (English, German),
:mod:`~.badges`, :mod:`~.views` (routes), :mod:`~.app` (the factory), :mod:`~.main`.
"""
