"""The unix-socket transport: line protocol, same handlers as HTTP, failures without ``result``."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from hbdns import config
from hbdns.store import Store
from pdns_backend.backend import Backend
from pdns_backend.unix import UnixServer, answer_line, answer_lines


@pytest.fixture
def backend(store: Store, r: redis.Redis, settings: config.Settings) -> Backend:
    store.add_account(store.new_account("host.example.com", "heartbeat-b"))
    return Backend(r, settings.plan_table(), zone_max_age=0)


def call(backend: Backend, method: str, **params: Any) -> Any:
    line = answer_line(backend, json.dumps({"method": method, "parameters": params}).encode())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    return json.loads(line)


def test_initialize_and_lookup(backend: Backend) -> None:
    assert call(backend, "initialize", path="/run/x.sock", timeout="2000") == {"result": True}
    reply = call(backend, "lookup", qname="Host.Example.com.", qtype="ANY", remote="127.0.0.1", **{"zone-id": -1})
    assert [(x["qname"], x["qtype"], x["content"], x["ttl"]) for x in reply["result"]] == [
        ("host.example.com.", "A", "192.0.2.1", 15),
        ("host.example.com.", "AAAA", "2001:db8::1", 15),
    ]


def test_unknown_name_and_method_answer_false(backend: Backend) -> None:
    assert call(backend, "lookup", qname="nope.example.com.", qtype="ANY") == {"result": False}
    assert call(backend, "getUpdatedMasters") == {"result": False}
    assert call(backend, "getDomainInfo", name="host.example.com.") == {"result": False}
    assert call(backend, "getAllDomains", include_disabled=True)["result"][0]["zone"] == "example.com."


@pytest.mark.parametrize("line", [b"not json", b"[1, 2]", b'{"parameters": {}}', b'"lookup"'])
def test_malformed_request_gets_reply_without_result(backend: Backend, line: bytes) -> None:
    assert "result" not in json.loads(answer_line(backend, line))


def test_redis_down_reply_has_no_result(backend: Backend, server: fakeredis.FakeServer) -> None:
    server.connected = False
    reply = call(backend, "lookup", qname="host.example.com.", qtype="ANY")
    assert "result" not in reply and "error" in reply
    assert "result" not in call(backend, "getAllDomains")
    server.connected = True
    assert call(backend, "lookup", qname="host.example.com.", qtype="A")["result"][0]["content"] == "192.0.2.1"


@pytest.fixture
def sock_path() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))
    yield d / "b.sock"
    shutil.rmtree(d, ignore_errors=True)


def test_server_answers_lines_on_several_connections(backend: Backend, sock_path: Path) -> None:
    srv = UnixServer(sock_path, backend).start()
    try:
        conns = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        for c in conns:
            c.settimeout(5)
            c.connect(str(sock_path))
        for c in conns:
            f = c.makefile("rb")
            c.sendall(b'{"method":"initialize","parameters":{}}\n')
            assert json.loads(f.readline()) == {"result": True}
            # two requests in one write, the second split across writes
            c.sendall(b'{"method":"lookup","parameters":{"qname":"host.example.com.","qtype":"A"}}\n{"method":"lo')
            c.sendall(b'okup","parameters":{"qname":"x.example.com.","qtype":"A"}}\n')
            assert json.loads(f.readline())["result"][0]["content"] == "192.0.2.1"
            assert json.loads(f.readline()) == {"result": False}
        for c in conns:
            c.close()
    finally:
        srv.stop()
    assert not sock_path.exists()


def test_stale_socket_file_is_replaced_but_live_one_is_not(backend: Backend, sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # file left behind, nobody listening
    srv = UnixServer(sock_path, backend).start()
    try:
        with pytest.raises(RuntimeError, match="another process"):
            UnixServer(sock_path, backend).start()
    finally:
        srv.stop()


def test_lookups_arriving_together_share_one_batch(backend: Backend) -> None:
    lines = [
        json.dumps({"method": "lookup", "parameters": {"qname": q, "qtype": "ANY"}}).encode()
        for q in ("host.example.com.", "example.com.", "nope.example.com.", "host.example.com.", "x.other.")
    ]
    lines.insert(2, b'{"method":"getDomainMetadata","parameters":{"name":"example.com.","kind":"X"}}')
    replies = [json.loads(x) for x in answer_lines(backend, lines)]
    assert replies[0]["result"][0]["content"] == "192.0.2.1"
    assert replies[1]["result"][0]["qtype"] == "SOA"
    assert replies[2] == {"result": []}
    assert replies[3] == {"result": False}
    assert replies[4] == replies[0]
    assert replies[5] == {"result": False}


def test_script_cache_flush_is_survived(backend: Backend) -> None:
    backend.r.script_flush()  # Redis restarted or was flushed: EVALSHA gets NOSCRIPT
    assert call(backend, "lookup", qname="host.example.com.", qtype="A")["result"][0]["content"] == "192.0.2.1"
    backend.r.script_flush()
    lines = [b'{"method":"lookup","parameters":{"qname":"host.example.com.","qtype":"A"}}'] * 3
    assert all(json.loads(x)["result"] for x in answer_lines(backend, lines))
