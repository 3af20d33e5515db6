"""The heartbeat codec: round trips, every single bit flip rejected, and docs/protocol.md's worked example."""

from __future__ import annotations

import hmac
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hbdns_client import wire

KEYS = st.binary(min_size=32, max_size=32)
IDS = st.integers(0, wire.MAX_ACCOUNT_ID)
COUNTERS = st.integers(0, wire.MAX_COUNTER)
FLAGS = st.sampled_from([0, wire.FLAG_OFFLINE, wire.FLAG_REPLY, wire.FLAG_OFFLINE | wire.FLAG_REPLY])
ADDRESSES = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"  # the repository's docs


def rejected(data: bytes, key: bytes) -> bool:
    try:
        beat = wire.parse_beat(data)
    except wire.WireError:
        return True
    return not wire.verify_beat(beat, key)


@given(key=KEYS, account_id=IDS, counter=COUNTERS, flags=FLAGS)
def test_beat_round_trip(key: bytes, account_id: int, counter: int, flags: int) -> None:
    data = wire.encode_beat(account_id, counter, key, flags)
    assert len(data) == wire.BEAT_LEN == 24
    beat = wire.parse_beat(data)
    assert (beat.version, beat.flags, beat.account_id, beat.counter) == (1, flags, account_id, counter)
    assert beat.offline == bool(flags & wire.FLAG_OFFLINE)
    assert beat.wants_reply == bool(flags & wire.FLAG_REPLY)
    assert wire.verify_beat(beat, key)


@given(key=KEYS, account_id=IDS, counter=COUNTERS, flags=FLAGS, bit=st.integers(0, 24 * 8 - 1))
def test_any_single_bit_flip_is_rejected(key: bytes, account_id: int, counter: int, flags: int, bit: int) -> None:
    data = bytearray(wire.encode_beat(account_id, counter, key, flags))
    data[bit // 8] ^= 1 << (bit % 8)
    assert rejected(bytes(data), key)


@given(key=KEYS, other=KEYS, account_id=IDS, counter=COUNTERS)
def test_other_key_is_rejected(key: bytes, other: bytes, account_id: int, counter: int) -> None:
    data = wire.encode_beat(account_id, counter, key)
    assert rejected(data, other) == (key != other)


@given(data=st.binary(max_size=64))
def test_garbage_never_raises_anything_but_wire_error(data: bytes) -> None:
    try:
        beat = wire.parse_beat(data)
    except wire.WireError as exc:
        assert exc.reason in {"short", "long", "version", "flags"}
        return
    assert len(data) == 24 and beat.version == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (b"\x01" * 23, "short"),
        (b"\x01" * 25, "long"),
        (b"\x02" + b"\x00" * 23, "version"),
        (b"\x01\x04" + b"\x00" * 22, "flags"),
        (b"\x01\x80" + b"\x00" * 22, "flags"),
    ],
)
def test_shape_errors_name_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.parse_beat(data)
    assert info.value.reason == reason


def test_encode_refuses_out_of_range_values() -> None:
    key = bytes(32)
    for args in ((-1, 0), (2**32, 0), (0, -1), (0, 2**64)):
        with pytest.raises(ValueError):
            wire.encode_beat(*args, key)
    with pytest.raises(ValueError):
        wire.encode_beat(1, 1, key, flags=0x04)


@given(key=KEYS, account_id=IDS, counter=COUNTERS, flags=FLAGS, address=ADDRESSES, status=st.sampled_from([0, 1, 2]))
def test_reply_round_trip_and_never_larger_than_the_beat(
    key: bytes, account_id: int, counter: int, flags: int, address: str, status: int
) -> None:
    data = wire.encode_beat(account_id, counter, key, flags)
    reply = wire.encode_reply(wire.parse_beat(data), status, address, key)
    assert len(reply) <= len(data)
    assert wire.parse_reply(reply, data, key) == wire.Reply(status, address)


@given(
    key=KEYS,
    account_id=IDS,
    counter=COUNTERS,
    server_ms=COUNTERS,
    window_ms=st.integers(0, wire.MAX_WINDOW_MS),
    bit=st.integers(0, 20 * 8 - 1),
)
def test_clock_skew_reply_round_trip_bit_flips_and_size(
    key: bytes, account_id: int, counter: int, server_ms: int, window_ms: int, bit: int
) -> None:
    data = wire.encode_beat(account_id, counter, key, wire.FLAG_REPLY)
    reply = wire.encode_clock_skew(wire.parse_beat(data), server_ms, window_ms, key)
    assert len(reply) == 20 < len(data)
    assert wire.parse_reply(reply, data, key) == wire.Reply(wire.STATUS_CLOCK_SKEW, "", server_ms, window_ms)
    flipped = bytearray(reply)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(wire.WireError):
        wire.parse_reply(bytes(flipped), data, key)


def test_a_20_byte_reply_must_be_clock_skew_and_old_style_skew_replies_still_parse() -> None:
    key = bytes(32)
    data = wire.encode_beat(1, 5, key, wire.FLAG_REPLY)
    beat = wire.parse_beat(data)
    body = bytes((wire.VERSION, wire.STATUS_OK)) + bytes(12)  # an OK status in the clock layout
    forged = body + wire.hmac.digest(key, b"hbdns-reply" + data[:14] + body, "sha256")[:6]
    with pytest.raises(wire.WireError, match="status 0"):
        wire.parse_reply(forged, data, key)
    # a server that predates the clock field answered CLOCK_SKEW with the address layout
    old = wire.encode_reply(beat, wire.STATUS_CLOCK_SKEW, "192.0.2.7", key)
    assert wire.parse_reply(old, data, key) == wire.Reply(wire.STATUS_CLOCK_SKEW, "192.0.2.7")


@given(key=KEYS, counter=COUNTERS, address=ADDRESSES, bit=st.integers(0, 24 * 8 - 1))
def test_reply_bit_flip_or_other_beat_is_rejected(key: bytes, counter: int, address: str, bit: int) -> None:
    data = wire.encode_beat(7, counter, key, wire.FLAG_REPLY)
    reply = bytearray(wire.encode_reply(wire.parse_beat(data), wire.STATUS_OK, address, key))
    other_beat = wire.encode_beat(7, (counter + 1) % 2**64, key, wire.FLAG_REPLY)
    with pytest.raises(wire.WireError):
        wire.parse_reply(bytes(reply), other_beat, key)  # a reply answers exactly one beat
    bit %= len(reply) * 8
    reply[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(wire.WireError):
        wire.parse_reply(bytes(reply), data, key)


# --- MacKey: precomputed HMAC states ---------------------------------------------------------------


@given(key=st.binary(min_size=0, max_size=100), data=st.binary(max_size=300))
@example(key=b"", data=b"")
@example(key=b"k" * 64, data=b"x")  # one block: used as is
@example(key=b"k" * 65, data=b"x")  # longer than a block: hashed first
@example(key=bytes(range(100)), data=bytes(24))
def test_mac_key_is_exactly_hmac_sha256(key: bytes, data: bytes) -> None:
    """Keys shorter than, equal to and longer than SHA-256's 64-byte block (hashed first)."""
    assert wire.MacKey(key).digest(data) == hmac.digest(key, data, "sha256")


@given(
    key=st.binary(min_size=0, max_size=100),
    other=st.binary(min_size=0, max_size=100),
    account_id=IDS,
    counter=COUNTERS,
    flags=FLAGS,
    bit=st.none() | st.integers(16, 24 * 8 - 1),  # bytes 2..23: id, counter, MAC (still parses)
)
def test_verify_beat_agrees_for_bytes_and_mac_key(
    key: bytes, other: bytes, account_id: int, counter: int, flags: int, bit: int | None
) -> None:
    data = bytearray(wire.encode_beat(account_id, counter, key, flags))
    if bit is not None:
        data[bit // 8] ^= 1 << (bit % 8)
    beat = wire.parse_beat(bytes(data))
    for k in (key, other):
        assert wire.verify_beat(beat, wire.MacKey(k)) == wire.verify_beat(beat, k)
    assert wire.verify_beat(beat, wire.MacKey(key)) == (bit is None)


@given(key=KEYS, account_id=IDS, counter=COUNTERS, address=ADDRESSES)
def test_encode_reply_is_the_same_with_bytes_and_mac_key(
    key: bytes, account_id: int, counter: int, address: str
) -> None:
    beat = wire.parse_beat(wire.encode_beat(account_id, counter, key, wire.FLAG_REPLY))
    assert wire.encode_reply(beat, wire.STATUS_OK, address, wire.MacKey(key)) == wire.encode_reply(
        beat, wire.STATUS_OK, address, key
    )


def test_mac_key_repr_never_shows_the_key() -> None:
    key = bytes(range(7, 39))
    text = repr(wire.MacKey(key)) + str(wire.MacKey(key))
    assert key.hex() not in text and key.hex()[:8] not in text and repr(key) not in text


# --- docs/protocol.md ------------------------------------------------------------------------------


def _doc_hex(label: str) -> bytes:
    m = re.search(rf"^\s+{label}: ([0-9a-f ]+)$", DOC.read_text(), re.MULTILINE)
    assert m, f"no '{label}:' line in {DOC}"
    return bytes.fromhex(m.group(1))


def test_worked_example_in_protocol_doc() -> None:
    text = DOC.read_text()
    key_hex = re.search(r"Key \(32 bytes, hex\): `([0-9a-f]{64})`", text)
    assert key_hex
    key = bytes.fromhex(key_hex.group(1))
    assert "Account id: `42`. Counter: `1700000000000`" in text

    beat = _doc_hex("beat")
    assert beat == wire.encode_beat(42, 1_700_000_000_000, key, wire.FLAG_REPLY)
    parsed = wire.parse_beat(beat)
    assert wire.verify_beat(parsed, key)
    assert _doc_hex("reply") == wire.encode_reply(parsed, wire.STATUS_OK, "203.0.113.7", key)
    assert wire.parse_reply(_doc_hex("reply"), beat, key) == wire.Reply(wire.STATUS_OK, "203.0.113.7")
    assert _doc_hex("reply6") == wire.encode_reply(parsed, wire.STATUS_OK, "2001:db8::7", key)
    skew = _doc_hex("skew")
    assert skew == wire.encode_clock_skew(parsed, 1_700_000_400_000, 300_000, key)
    assert wire.parse_reply(skew, beat, key) == wire.Reply(wire.STATUS_CLOCK_SKEW, "", 1_700_000_400_000, 300_000)
    offline = _doc_hex("offline")
    assert offline == wire.encode_beat(42, 1_700_000_005_000, key, wire.FLAG_REPLY | wire.FLAG_OFFLINE)
    # the field table's MAC row and the full HMAC quoted in the text agree with the beat
    assert beat[14:].hex(" ") in text
    assert wire.hmac.new(key, beat[:14], "sha256").hexdigest() in text
