"""What the neutral host says (neutral_host.replies, neutral_host.admission): pure, no sockets."""

from __future__ import annotations

import pytest

from hbdns import validate
from neutral_host import replies
from neutral_host.admission import Admission, source_key


def test_greeting_is_one_421_line_with_the_name() -> None:
    assert replies.greeting("Neutral.Example.NET") == (
        b"421 4.4.2 neutral.example.net is offline; mail is queued by its backup MX\r\n"
    )
    with pytest.raises(validate.ValidationError):
        replies.greeting("bad name\r\n250 ok")


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, ("de", "en")),
        ("", ("de", "en")),
        ("fr-FR,fr;q=0.9", ("de", "en")),
        ("*", ("de", "en")),
        ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", ("de",)),
        ("en-GB,en;q=0.9,de;q=0.5", ("en",)),
        ("fr,en;q=0.5,de;q=0.5", ("de", "en")),
        ("de-AT", ("de",)),
        ("en;q=0, de;q=0.1", ("de",)),
        ("en;q=abc", ("de", "en")),
    ],
)
def test_language_choice(header: str | None, chosen: tuple[str, ...]) -> None:
    assert replies.choose_languages(header) == chosen


def _get(head: str) -> bytes:
    return replies.response(replies.parse_head(head.encode()))


def test_page_for_any_host_is_503_in_both_languages_without_outside_content() -> None:
    out = _get("GET /wp-login.php?x=1 HTTP/1.1\r\nHost: home.dyn.example.net\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'" in head
    assert b"Cache-Control: no-store" in head and b"Connection: close" in head
    text = body.decode()
    assert "home.dyn.example.net ist zurzeit offline" in text and "home.dyn.example.net is offline" in text
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    for outside in ("src=", "href=", "://", "@import", "url("):
        assert outside not in text


def test_language_follows_accept_language() -> None:
    de = _get("GET / HTTP/1.1\r\nHost: a.test\r\nAccept-Language: de-DE,de;q=0.9\r\n\r\n").decode()
    assert "Content-Language: de\r\n" in de and "is offline" not in de and '<html lang="de">' in de
    en = _get("GET / HTTP/1.1\r\nHost: a.test\r\nAccept-Language: en-US\r\n\r\n").decode()
    assert "Content-Language: en\r\n" in en and "ist zurzeit offline" not in en


@pytest.mark.parametrize("host", ["<script>alert(1)</script>", "a.test:80:80", "[::1]:80", "x" * 300, ""])
def test_odd_host_headers_are_never_echoed(host: str) -> None:
    out = _get(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").decode()
    assert "This host is offline" in out and "Dieser Server" in out
    if host:
        assert host not in out.partition("\r\n\r\n")[2]


def test_host_with_port_shows_the_name() -> None:
    assert "shop.example.net is offline" in _get("GET / HTTP/1.0\r\nHost: shop.example.net:80\r\n\r\n").decode()


def test_head_gets_headers_only() -> None:
    out = _get("HEAD / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert out.endswith(b"\r\n\r\n") and b"503" in out


@pytest.mark.parametrize(
    "head",
    [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/2\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        "1 / HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_heads_are_400(head: str) -> None:
    with pytest.raises(replies.BadRequest) as err:
        replies.parse_head(head.encode())
    assert err.value.status == 400
    assert replies.error_response(400).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_oversized_head_is_431() -> None:
    with pytest.raises(replies.BadRequest) as err:
        replies.parse_head(b"GET / HTTP/1.1\r\nX: " + b"a" * replies.MAX_HEAD + b"\r\n\r\n")
    assert err.value.status == 431


def test_admission_caps_total_and_per_source() -> None:
    adm = Admission(max_total=3, per_source=2)
    assert adm.admit("a") and adm.admit("a") and not adm.admit("a")
    assert adm.admit("b") and not adm.admit("c")  # total cap
    adm.release("a")
    assert adm.admit("c") and adm.total == 3
    for key in ("a", "b", "c"):
        adm.release(key)
    assert adm.total == 0 and adm.admit("a")


def test_ipv6_sources_count_per_64() -> None:
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("198.51.100.4") == "198.51.100.4"
