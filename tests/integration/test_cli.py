"""The admin CLI against a real Redis: output, --json, and refusals that write nothing."""

from __future__ import annotations

import json
import time

import pytest
import redis

from admin.cli.main import main
from hbdns.liveness import BeatRequest
from hbdns.store import Store

ZONE = "dyn.example.net"


def run(r: redis.Redis, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), redis_client=r)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def zone(real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]) -> str:
    code, _, err = run(
        real_redis,
        capsys,
        "zone",
        "add",
        ZONE,
        "--ns",
        "ns1.example.net",
        "--backup-mx",
        "mx.example.net",
        "--record",
        "mx-backup A 192.0.2.25",
    )
    assert code == 0, err
    return ZONE


def test_account_add_prints_id_and_key_once(real_redis, capsys, zone, store: Store) -> None:
    code, out, _ = run(
        real_redis,
        capsys,
        "--json",
        "account",
        "add",
        f"home.{ZONE}",
        "--plan",
        "heartbeat-c",
        "--mx",
        "--email",
        "ops@example.org",
        "--phone",
        "+4915112345678",
        "--password",
        "s3cret-pass",
    )
    assert code == 0
    data = json.loads(out)
    account = store.resolve(f"home.{ZONE}")
    assert data["id"] == account.id and data["heartbeat_key"] == account.hb_key.hex()
    assert len(bytes.fromhex(data["heartbeat_key"])) == 32
    assert data["update_password"] is None  # given by the operator: not echoed
    # never shown again
    code, out, _ = run(real_redis, capsys, "account", "show", str(account.id))
    assert code == 0 and account.hb_key.hex() not in out and "s3cret-pass" not in out
    assert "home.dyn.example.net" in out and "neutral" in out


def _snapshot(r: redis.Redis) -> dict[str, object]:
    out: dict[str, object] = {}
    for k in sorted(r.keys("*")):
        t = r.type(k)
        out[k] = {
            "hash": r.hgetall,
            "set": r.smembers,
            "string": r.get,
            "stream": r.xlen,
            "list": r.llen,
            "zset": lambda x: r.zrange(x, 0, -1, withscores=True),
        }[t](k)
    return out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["account", "add", "bad_host.dyn.example.net", "--plan", "heartbeat-c"], "LDH"),
        (["account", "add", ("a" * 60 + ".") * 4 + ZONE, "--plan", "heartbeat-c"], "too long"),
        (["account", "add", "x.elsewhere.org", "--plan", "heartbeat-c"], "no zone"),
        (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-z"], "unknown plan"),
        (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--neutral-ipv4", "10.1"], "IPv4"),
        (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--email", "ops@"], "e-mail"),
        (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--phone", "0151 1234567"], "E.164"),
        (["account", "add", f"home.{ZONE}", "--plan", "heartbeat-c"], "taken"),
        (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--alias", f"home.{ZONE}"], "taken"),
        (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--quiet-hours", "late"], "quiet hours"),
        (["zone", "add", ZONE], "exists"),
        (["zone", "add", "bad..zone"], "LDH"),
        (["zone", "remove", ZONE], "account"),
        (["account", "set", "nobody", "--mx"], "no account"),
    ],
)
def test_invalid_input_exits_2_with_one_line_and_writes_nothing(real_redis, capsys, zone, argv, reason) -> None:
    assert run(real_redis, capsys, "account", "add", f"home.{ZONE}", "--plan", "heartbeat-c")[0] == 0
    before = _snapshot(real_redis)
    code, _out, err = run(real_redis, capsys, *argv)
    assert code == 2
    assert reason in err and err.count("\n") == 1 and err.startswith("hbdns: ")
    assert _snapshot(real_redis) == before


def test_status_shows_live_and_neutral(real_redis, capsys, zone, store: Store) -> None:
    for name in ("a", "b"):
        assert run(real_redis, capsys, "account", "add", f"{name}.{ZONE}", "--plan", "heartbeat-c")[0] == 0
    a = store.resolve(f"a.{ZONE}")
    store.liveness.beat(BeatRequest(a.id, ZONE, 60_000, ipv4="127.0.0.2", counter=time.time_ns() // 1_000_000))
    code, out, _ = run(real_redis, capsys, "status")
    assert code == 0
    line_a = next(line for line in out.splitlines() if line.startswith(f"a.{ZONE}"))
    line_b = next(line for line in out.splitlines() if line.startswith(f"b.{ZONE}"))
    assert " live " in line_a and "127.0.0.2" in line_a
    assert " neutral " in line_b
    assert "1 live, 1 neutral" in out
    code, out, _ = run(real_redis, capsys, "--json", "status")
    data = {d["fqdn"]: d for d in json.loads(out)["accounts"]}
    assert data[f"a.{ZONE}"]["live"] is True and data[f"b.{ZONE}"]["live"] is False


def test_set_rotate_password_log_remove(real_redis, capsys, zone, store: Store) -> None:
    assert run(real_redis, capsys, "account", "add", f"h.{ZONE}", "--plan", "heartbeat-c")[0] == 0
    old = store.resolve(f"h.{ZONE}")
    code, _, err = run(
        real_redis,
        capsys,
        "account",
        "set",
        f"h.{ZONE}",
        "--plan",
        "setip-a",
        "--alias",
        f"mail.{ZONE}",
        "--mx",
        "--sms-min-outage",
        "300",
    )
    assert code == 0, err
    new = store.resolve(f"mail.{ZONE}")
    assert new.id == old.id and new.plan == "setip-a" and new.mx and new.prefs.sms_min_outage == 300
    code, out, _ = run(real_redis, capsys, "--json", "account", "rotate-key", str(old.id))
    assert code == 0 and json.loads(out)["heartbeat_key"] == store.resolve(str(old.id)).hb_key.hex() != old.hb_key.hex()
    code, out, _ = run(real_redis, capsys, "account", "set-password", str(old.id))
    from hbdns.passwords import verify_password

    assert code == 0 and verify_password(out.strip().rsplit(": ", 1)[1], store.resolve(str(old.id)).pw_hash)
    code, out, _ = run(real_redis, capsys, "account", "log", f"h.{ZONE}")
    assert code == 0 and "created" in out
    code, _, _ = run(real_redis, capsys, "account", "remove", f"h.{ZONE}")
    assert code == 0 and store.account_id_for(f"h.{ZONE}") is None and store.account_id_for(f"mail.{ZONE}") is None


def test_zone_list_show_remove(real_redis, capsys, zone) -> None:
    code, out, _ = run(real_redis, capsys, "zone", "list")
    assert code == 0 and ZONE in out and "mx.example.net" in out
    code, out, _ = run(real_redis, capsys, "--json", "zone", "show", ZONE)
    data = json.loads(out)
    assert data["records"][0] == {"name": f"mx-backup.{ZONE}", "type": "A", "content": "192.0.2.25", "ttl": 3600}
    assert run(real_redis, capsys, "zone", "remove", ZONE)[0] == 0
    assert run(real_redis, capsys, "zone", "show", ZONE)[0] == 2


def test_redis_down_exits_1(capsys) -> None:
    from hbdns.connection import connect

    r = connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    code, _, err = run(r, capsys, "zone", "list")
    assert code == 1 and "Redis unavailable" in err
