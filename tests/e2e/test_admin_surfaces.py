"""The admin API and the status page as ``make run`` starts them (``python -m tools.devstack``):
an account provisioned over HTTP beats with ``hbdns-client`` and answers in pdns, and a customer
uses the status page in Debian's chromium (selenium): a wrong password is refused, the page turns
from live to neutral without a reload when the beats stop, and new quiet hours are applied.

``HBDNS_SAVE_SCREENSHOT=docs/status-page.png`` also saves the status page as the README shows it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import wait_for
from tests.support.stack import Stack

ZONE = "dyn.portal.test"
PLANS = {"test-fast": {"kind": "heartbeat", "interval": 1, "misses": 2, "ttl": 1}}
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or ""
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        Path(tmp_path_factory.mktemp("stack")),
        extra_env={"HBDNS_PLANS": json.dumps(PLANS), "HBDNS_STATUS_POLL_INTERVAL": "1"},
    )
    try:
        s.start(["zone", "add", ZONE, "--ns", f"ns1.{ZONE}"])
        yield s
    except BaseException:
        print(s.log()[-6000:])
        raise
    finally:
        s.stop()


@pytest.fixture(scope="module")
def token(stack: Stack) -> str:
    made = stack.cli("--json", "token", "add", "--scope", f"zone:{ZONE}", "--label", "portal")
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["token"])


def api(stack: Stack, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{stack.admin_api_port}/api/v1{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def provision(stack: Stack, token: str, fqdn: str, tmp_path: Path, **fields: Any) -> tuple[dict[str, Any], Path]:
    """An account made over the API, and its client config (written from the API's answer)."""
    status, made = api(stack, "POST", "/accounts", token, {"fqdn": fqdn, "plan": "test-fast", **fields})
    assert status == 201, made
    conf = tmp_path / f"{fqdn}.conf"
    conf.write_text(made["client_config"])
    conf.chmod(0o600)
    return made, conf


def test_make_run_serves_the_api_and_the_status_page(stack: Stack) -> None:
    log = wait_for(lambda: "Status page:" in stack.log() and stack.log(), 30, what="the stack's banner")
    assert f"http://127.0.0.1:{stack.admin_api_port}/api/v1" in log
    assert "hbdns token add --scope admin" in log
    assert f"http://127.0.0.1:{stack.status_port}/" in log
    status, doc = api(stack, "GET", "/openapi.json", "")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert api(stack, "GET", "/accounts", "not-a-token")[0] == 401
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.status_port}/login", timeout=10) as resp:
        assert resp.status == 200 and b"Log in" in resp.read()


def test_an_account_provisioned_over_http_beats_and_answers(stack: Stack, token: str, tmp_path: Path) -> None:
    host = f"api.{ZONE}"
    made, conf = provision(stack, token, host, tmp_path, mx=True)
    assert stack.answers(host, "A") == {"192.0.2.1"}
    sent = stack.client(conf, "send")
    assert sent.proc.wait(20) == 0, sent.log_text()
    wait_for(lambda: stack.answers(host, "A") == {"127.0.0.1"}, 10, what=f"{host} A 127.0.0.1")
    assert f"10 {host}." in stack.answers(host, "MX")
    status, state = api(stack, "GET", f"/accounts/{made['id']}/state", token)
    assert status == 200 and state["live"] is True and state["ipv4"] == "127.0.0.1"


# --- the browser ----------------------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make sysdeps installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch a browser or a driver
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--lang=en-US",
        "--window-size=1200,2200", f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")), options=opts
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def seed_history(stack: Stack, account_id: int, fqdn: str) -> None:
    """A week of older transitions in the account's log (oldest last, as the scripts keep it), as an
    account that has been running for a while has: the strips and tables then show outages of
    each kind. Addresses from the documentation range."""
    from hbdns import keys
    from hbdns.connection import connect

    now, hour, day = int(time.time() * 1000), 3_600_000, 86_400_000
    start = now - 8 * day

    def entry(kind: str, at: int, **extra: Any) -> str:
        return json.dumps({"type": kind, "account": account_id, "fqdn": fqdn, "at": at, "event_id": f"{at}-0", **extra})

    history = [
        entry("recovered", start, first="1", neutral_since=start, duration_ms=0, source="beat"),
        entry("ip_changed", start, family="4", old="", new="203.0.113.20", source="beat"),
        entry("neutralized", start + 2 * day + 2 * hour, reason="missed"),
        entry(
            "recovered",
            start + 2 * day + 3 * hour,
            first="0",
            neutral_since=start + 2 * day + 2 * hour,
            duration_ms=hour,
        ),
        entry("ip_changed", start + 3 * day, family="4", old="203.0.113.20", new="203.0.113.45", source="beat"),
        entry("neutralized", start + 4 * day + 20 * hour, reason="offline"),
        entry(
            "recovered",
            start + 5 * day + 2 * hour,
            first="0",
            neutral_since=start + 4 * day + 20 * hour,
            duration_ms=6 * hour,
        ),
        entry("ip_changed", start + 6 * day, family="4", old="203.0.113.45", new="203.0.113.77", source="beat"),
        entry("neutralized", start + 7 * day + 3 * hour, reason="missed"),
        entry(
            "recovered",
            start + 7 * day + 3 * hour + 900_000,
            first="0",
            neutral_since=start + 7 * day + 3 * hour,
            duration_ms=900_000,
        ),
    ]
    r = connect(f"redis://127.0.0.1:{stack.redis_port}/0")
    r.rpush(keys.account_log(account_id), *reversed(history))
    r.close()


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def _log_in(driver: Any, base: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.ID, "name").clear()
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def test_status_page_in_a_browser(stack: Stack, token: str, browser: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    host, password = f"home.{ZONE}", "customer-pass-1"
    made, conf = provision(stack, token, host, tmp_path, password=password, emails=["me@customer.test"])
    seed_history(stack, made["id"], host)
    base = f"http://127.0.0.1:{stack.status_port}"

    # a wrong password is refused, and no page of the account is reachable
    # a page being replaced (a form's answer) may hand out elements that go stale: look again
    wait = WebDriverWait(
        browser, 20, poll_frequency=0.2, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    )
    _log_in(browser, base, host, "not-my-password")
    refused = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".notice.error"))
    assert "Wrong account name or password." in refused[0].text
    browser.get(f"{base}/account")
    assert browser.current_url.endswith("/login")

    # some history: beats, a planned stop (offline beat), beats again from another address
    client = stack.client(conf, "run")
    wait_for(lambda: stack.answers(host, "A") == {"127.0.0.1"}, 15, what="first beats")
    client.signal(signal.SIGTERM)
    assert client.proc.wait(15) == 0
    wait_for(lambda: stack.answers(host, "A") == {"192.0.2.1"}, 10, what="the offline beat")
    client = stack.client(conf, "run", source="127.0.0.2")
    try:
        wait_for(lambda: stack.answers(host, "A") == {"127.0.0.2"}, 15, what="beats again")
        _log_in(browser, base, host, password)
        wait.until(lambda d: d.current_url.endswith("/account") and _text(d, "state") == "LIVE")
        assert _text(browser, "ipv4") == "127.0.0.2"
        assert "client went offline" in _text(browser, "outages")
        assert "127.0.0.1" in _text(browser, "ip-changes") and "203.0.113.45" in _text(browser, "ip-changes")
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.strip rect.slot-partial")) >= 4
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.strip rect.slot-down")) >= 4  # the 6 h outage
        shot = tmp_path / "status-page.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("HBDNS_SAVE_SCREENSHOT"):
            shutil.copy(shot, ROOT / os.environ["HBDNS_SAVE_SCREENSHOT"])

        # the beats stop (the client dies without a goodbye): neutral without a reload
        browser.execute_script("window.hbdnsNoReload = 42;")
        client.kill()
        wait.until(lambda d: _text(d, "state") == "NEUTRAL")
        assert browser.execute_script("return window.hbdnsNoReload;") == 42
        assert browser.find_element(By.ID, "state-card").get_attribute("data-state") == "neutral"
        assert stack.answers(host, "A") == {"192.0.2.1"}
    finally:
        client.stop()

    # new quiet hours: saved, shown, and stored for the notifier
    browser.execute_script(
        "document.getElementById('quiet-from').value = '21:30';document.getElementById('quiet-to').value = '06:15';"
    )
    tz = browser.find_element(By.ID, "pref-tz")
    tz.clear()
    tz.send_keys("Europe/Berlin")
    browser.find_element(By.ID, "save-prefs").click()
    wait.until(lambda d: "Quiet hours: 21:30-06:15 (Europe/Berlin)." in _text(d, "quiet-now"))
    assert "Saved." in browser.find_element(By.CSS_SELECTOR, ".notice").text
    shown = stack.cli("--json", "account", "show", host)
    prefs = json.loads(shown.stdout)["prefs"]
    assert prefs["quiet_hours"] == "21:30-06:15" and prefs["tz"] == "Europe/Berlin"
