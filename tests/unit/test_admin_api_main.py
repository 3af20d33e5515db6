"""Where the admin API may listen without a warning: loopback, private and link-local addresses."""

from __future__ import annotations

import pytest

from admin.api.main import is_private


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("10.1.2.3", True),
        ("192.168.7.1", True),
        ("fd00::5", True),
        ("0.0.0.0", False),
        ("::", False),
        ("203.0.114.9", False),
        ("2a01:4f8::1", False),
        ("admin.example.net", False),
    ],
)
def test_is_private(host: str, private: bool) -> None:
    assert is_private(host) is private
