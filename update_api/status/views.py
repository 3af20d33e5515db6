"""The status page's routes: log in and out, the account page, its state poll, its three forms
(notification preferences, the badge, a new heartbeat key) and the public badge.

Every form carries a CSRF token (the session's, or for the login forms a double-submit cookie) and
is refused without it; every change answers with a redirect (so a reload does not repeat it),
except a new key, whose page is the one place the key is shown.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, g, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from hbdns import provision, validate
from hbdns.provision import AccountChanges
from update_api.parsing import client_address
from update_api.status import badges, i18n, pages
from update_api.status.service import Login, StatusService
from update_api.status.sessions import same
from update_api.status.svg import badge as badge_svg_text

EXTENSION = "hbdns_status_page"
bp = Blueprint("status", __name__, static_folder="static", static_url_path="/static", template_folder="templates")

FIELD_MESSAGES = {
    "prefs.quiet_hours": "quiet hours must look like 22:00-07:00",
    "prefs.tz": "unknown time zone",
    "prefs.sms_min_outage": "a whole number of seconds, 0 or more",
}
NOTICES = {"prefs": "Saved.", "badge-on": "Badge on.", "badge-off": "Badge off: its address no longer works."}


def svc() -> StatusService:
    service: StatusService = current_app.extensions[EXTENSION]
    return service


def cookie_name(base: str) -> str:
    """``__Host-`` names (Secure, host-only, path /) whenever cookies are Secure."""
    return f"__Host-{base}" if current_app.config["HBDNS_COOKIE_SECURE"] else base


def _set_cookie(resp: BaseResponse, base: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(
        cookie_name(base),
        value,
        max_age=max_age,
        path="/",
        secure=current_app.config["HBDNS_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def _source() -> str | None:
    headers = {h: request.headers.get(h, "") for h in ("X-Forwarded-For", "X-Real-IP")}
    return client_address(request.remote_addr, headers, current_app.config["HBDNS_TRUSTED_PROXIES"])


@bp.before_app_request
def load_session() -> None:
    g.lang = i18n.choose(request.accept_languages)
    g.session, g.account = None, None
    if request.endpoint in ("status.static", "status.badge_svg"):
        return
    found = svc().sessions.load(request.cookies.get(cookie_name("hbdns-session"), ""), svc().account)
    if found:
        g.session, g.account = found


def render(template: str, status: int = 200, **ctx: Any) -> BaseResponse:
    _ = i18n.translator(g.lang)
    notice = NOTICES.get(request.args.get("done", ""))
    base = {
        "lang": g.lang,
        "_": _,
        "account": g.account,
        "csrf": g.session.csrf if g.session else "",
        "notices": [("ok", _(notice))] if notice else [],
    }
    resp = make_response(render_template(template, **{**base, **ctx}), status)
    resp.headers["Vary"] = "Accept-Language, Cookie"
    return resp


def message(title: str, text: str, status: int, **fmt: Any) -> BaseResponse:
    _ = i18n.translator(g.lang)
    return render("message.html", status, title=_(title), text=_(text).format(**fmt))


def login_required(func: Callable[..., BaseResponse]) -> Callable[..., BaseResponse]:
    @wraps(func)
    def inner(*args: Any, **kwargs: Any) -> BaseResponse:
        if g.account is None:
            if request.method == "GET" and not request.path.endswith(".json"):
                return redirect(url_for("status.login"))
            return message("Log in", "Please log in again.", 401)
        return func(*args, **kwargs)

    return inner


def csrf_ok(expected: str) -> bool:
    return same(request.form.get("csrf", ""), expected)


@bp.get("/")
def index() -> BaseResponse:
    return redirect(url_for("status.account_page" if g.account else "status.login"))


def _login_page(status: int = 200, error: str = "", **fmt: Any) -> BaseResponse:
    token = request.cookies.get(cookie_name("hbdns-login"), "")
    fresh = not (16 <= len(token) <= 64)
    if fresh:
        token = secrets.token_urlsafe(24)
    notices = [("error", i18n.translator(g.lang)(error).format(**fmt))] if error else []
    resp = render("login.html", status, login_csrf=token, name=request.form.get("name", "")[:253], notices=notices)
    if fresh:
        _set_cookie(resp, "hbdns-login", token, None)
    return resp


@bp.get("/login")
def login() -> BaseResponse:
    return redirect(url_for("status.account_page")) if g.account else _login_page()


def _logged_in(result: Login) -> BaseResponse:
    session = svc().sessions.open(result.account, result.auth)
    resp = redirect(url_for("status.account_page"), 303)
    _set_cookie(resp, "hbdns-session", session.cookie, current_app.config["HBDNS_SESSION_TTL"])
    return resp


def _refused(result: Any, wrong: str) -> BaseResponse:
    if result.wait:
        resp = _login_page(429, "Too many failed logins. Try again in {seconds} seconds.", seconds=int(result.wait + 1))
        resp.headers["Retry-After"] = str(int(result.wait + 1))
        return resp
    return _login_page(401, wrong)


@bp.post("/login")
def login_post() -> BaseResponse:
    if not csrf_ok(request.cookies.get(cookie_name("hbdns-login"), "")):
        return _login_page(400, "The form expired. Please try again.")
    name, password = request.form.get("name", ""), request.form.get("password", "")
    result = svc().login_password(name, password, _source())
    return _logged_in(result) if isinstance(result, Login) else _refused(result, "Wrong account name or password.")


@bp.post("/login/token")
def login_token() -> BaseResponse:
    if not csrf_ok(request.cookies.get(cookie_name("hbdns-login"), "")):
        return _login_page(400, "The form expired. Please try again.")
    result = svc().login_token(request.form.get("token", "")[:100], _source())
    if isinstance(result, Login):
        return _logged_in(result)
    return _refused(result, "This login link or token is not valid.")


@bp.post("/logout")
def logout() -> BaseResponse:
    if g.session is not None and csrf_ok(g.session.csrf):
        svc().sessions.close(g.session)
    resp = redirect(url_for("status.login"), 303)
    resp.delete_cookie(cookie_name("hbdns-session"), path="/", secure=current_app.config["HBDNS_COOKIE_SECURE"])
    return resp


def _badge_url(badge: str) -> str:
    base = svc().settings.status_public_url or request.host_url.rstrip("/")
    return f"{base}{url_for('status.badge_svg', badge=badge)}" if badge else ""


def _account_page(status: int = 200, errors: list[tuple[str, str]] | None = None) -> BaseResponse:
    store, account, lang = svc().store, g.account, g.lang
    _ = i18n.translator(lang)
    now_ms = int(time.time() * 1000)
    st = store.status(account)
    log = store.account_log(account.id, store.settings.account_log_size)
    quiet_from, quiet_to = pages.quiet_fields(account)
    return render(
        "account.html",
        status,
        state=pages.state(store, st, now_ms, lang),
        strips=pages.strips(store, st, log, now_ms, lang),
        outages=pages.outages(account, log, now_ms, lang),
        ip_changes=pages.ip_changes(account, log, now_ms, lang),
        prefs=account.prefs,
        quiet_from=quiet_from,
        quiet_to=quiet_to,
        quiet_text=pages.quiet_text(account, lang),
        channels=[(c, _(t)) for c, t in pages.CHANNELS],
        levels=[(lv, _(t)) for lv, t in pages.LEVELS],
        contacts=pages.contacts(account, lang),
        badge_url=_badge_url(badges.badge_id(store.r, account.id)),
        poll_ms=int(svc().settings.status_poll_interval * 1000),
        errors=errors or [],
    )


@bp.get("/account")
@login_required
def account_page() -> BaseResponse:
    return _account_page()


@bp.get("/account/state.json")
@login_required
def state_json() -> BaseResponse:
    store = svc().store
    data = pages.state(store, store.status(g.account), int(time.time() * 1000), g.lang)
    resp = make_response(data)
    resp.headers["Vary"] = "Accept-Language, Cookie"
    return resp


def _form_prefs() -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The preferences form as provision's prefs mapping, and the refusals only the form can make."""
    form, errors = request.form, []
    prefs: dict[str, Any] = {}
    for channel, _title in pages.CHANNELS:
        value = form.get(channel, "")
        if value not in dict(pages.LEVELS):
            errors.append((f"prefs.{channel}", "not a valid choice"))
        prefs[channel] = value
    raw = form.get("sms_min_outage", "").strip()
    if not raw.isdigit() or len(raw) > 9:
        errors.append(("prefs.sms_min_outage", FIELD_MESSAGES["prefs.sms_min_outage"]))
    else:
        prefs["sms_min_outage"] = int(raw)
    start, end = form.get("quiet_from", "").strip(), form.get("quiet_to", "").strip()
    if bool(start) != bool(end):
        errors.append(("prefs.quiet_hours", "quiet hours need a start and an end, e.g. 22:00 and 07:00"))
    prefs["quiet_hours"] = f"{start}-{end}" if start and end else ""
    prefs["tz"] = form.get("tz", "").strip()[:64] or "UTC"
    return prefs, errors


@bp.post("/account/prefs")
@login_required
def prefs() -> BaseResponse:
    if not csrf_ok(g.session.csrf):
        return message("Log in", "The form expired. Please try again.", 400)
    values, errors = _form_prefs()
    if not errors:
        try:
            provision.change_account(svc().store, g.account, AccountChanges(prefs=values))
        except validate.Invalid as exc:
            errors = [(e.field, FIELD_MESSAGES.get(e.field, "not a valid choice")) for e in exc.errors]
    if errors:
        _ = i18n.translator(g.lang)
        shown = [("", _("Not saved: please check the marked fields."))] + [(f, _(m)) for f, m in errors]
        return _account_page(422, shown)
    return redirect(url_for("status.account_page", done="prefs") + "#prefs", 303)


@bp.post("/account/badge")
@login_required
def badge() -> BaseResponse:
    if not csrf_ok(g.session.csrf):
        return message("Log in", "The form expired. Please try again.", 400)
    on = request.form.get("on") == "1"
    (badges.enable if on else badges.disable)(svc().store.r, g.account.id)
    return redirect(url_for("status.account_page", done="badge-on" if on else "badge-off") + "#badge", 303)


@bp.post("/account/rotate-key")
@login_required
def rotate_key() -> BaseResponse:
    if not csrf_ok(g.session.csrf):
        return message("Log in", "The form expired. Please try again.", 400)
    store = svc().store
    account = store.rotate_key(g.account)
    current_app.logger.info("heartbeat key rotated on the status page", extra={"account": account.id})
    config = provision.client_config(store, account)
    return render("rotated.html", key=account.hb_key.hex(), config_b64=base64.b64encode(config.encode()).decode())


@bp.get("/badge/<badge>.svg")
def badge_svg(badge: str) -> BaseResponse:
    store = svc().store
    account_id = badges.account_for(store.r, badge)
    account = store.get_account(account_id) if account_id is not None else None
    if account is None:
        return Response("no such badge\n", status=404, mimetype="text/plain")
    live = store.status(account).live
    body = badge_svg_text(account.fqdn, "live" if live else "neutral", "#2e9d4e" if live else "#d64541")
    resp = Response(body, mimetype="image/svg+xml")
    resp.headers["Cache-Control"] = "no-cache, max-age=0"
    return resp
