"""The script loader without a server: what it loads, how it encodes, where Lua may live."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import redis

from hbdns import scripts
from pdns_backend.answers import ACCOUNT_FIELDS

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "hbdns" / "lua"
PACKAGES = (
    "hbdns",
    "pdns_backend",
    "heartbeat_listener",
    "update_api",
    "notifier",
    "sweeper",
    "neutral_host",
    "backup_mx",
    "admin",
    "tools",
)
# Python files still allowed to hold Lua in strings: none, every script is in hbdns/lua/ (a file
# listed here that holds no Lua fails the test too, so the set could only shrink)
NOT_MOVED_YET: set[str] = set()


def test_every_lua_file_is_one_script() -> None:
    names = [s.name for s in scripts.ALL]
    assert len(set(names)) == len(names)
    assert sorted(p.stem for p in LUA.glob("*.lua")) == sorted([*names, "lib"])


def test_lib_goes_in_front_only_where_declared() -> None:
    lib = (LUA / "lib.lua").read_text()
    for s in scripts.ALL:
        body = (LUA / f"{s.name}.lua").read_text()
        assert s.source in (body, lib + "\n" + body)
        assert ("local function clock()" in s.source) == s.source.startswith(lib), s.name
    assert not scripts.LOOKUP.source.startswith(lib)  # read-only, needs none of it


def test_sha_and_raw_command_are_what_redis_py_sends() -> None:
    s = scripts.BEAT
    assert s.sha == hashlib.sha1(s.source.encode()).hexdigest()
    expected = b"".join(redis.Connection().pack_command("EVALSHA", s.sha, 2, "k1", "k2", "a", ""))
    assert s.command(["k1", "k2"], ["a", ""]) == expected
    assert expected.split(b"\r\n", 1)[1].startswith(s.head)
    assert s.load_command == b"".join(redis.Connection().pack_command("SCRIPT", "LOAD", s.source))


def test_lookup_script_returns_the_fields_the_backend_parses() -> None:
    m = re.search(r"redis\.call\('HMGET', KEYS\[k \+ 1\], ([^)]*)\)", scripts.LOOKUP.source)
    assert m, "the lookup script's HMGET of the account hash"
    assert tuple(re.findall(r"'([a-z0-9_]+)'", m.group(1))) == ACCOUNT_FIELDS


def test_no_lua_in_python_strings() -> None:
    holding = {
        str(path.relative_to(ROOT))
        for pkg in PACKAGES
        for path in (ROOT / pkg).rglob("*.py")
        if re.search(r"redis\.p?call\(", path.read_text())
    }
    assert holding == NOT_MOVED_YET
