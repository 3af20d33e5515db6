"""Server-rendered SVG: the availability strips of the status page and the public status badge.

Plain strings with every text escaped; no script, no external reference, so the strips sit inline
in the page under its strict Content-Security-Policy and the badge can be embedded anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from update_api.status.history import Slot

COLOURS = {"up": "#2e9d4e", "partial": "#e2a20b", "down": "#d64541", "unknown": "#c9ced6"}
BAR, GAP, HEIGHT = 4, 1, 28


def strip(slot_list: Sequence[Slot], label: str, describe: Callable[[Slot], str]) -> str:
    """One bar per slot, coloured by how much of it was live; ``describe(slot)`` is its tooltip."""
    width = len(slot_list) * (BAR + GAP) - GAP
    bars = []
    for i, s in enumerate(slot_list):
        bars.append(
            f'<rect x="{i * (BAR + GAP)}" y="0" width="{BAR}" height="{HEIGHT}" rx="1" '
            f'fill="{COLOURS[s.kind]}" class="slot-{s.kind}"><title>{escape(describe(s))}</title></rect>'
        )
    return (
        f'<svg class="strip" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {HEIGHT}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(label)}">' + "".join(bars) + "</svg>"
    )


def _text_width(text: str) -> int:
    """Width in px of ``text`` at 11 px Verdana, near enough for a badge (wide letters count more)."""
    wide = sum(1 for c in text if c in "mwMW@%")
    narrow = sum(1 for c in text if c in "iljtf.:,;!|' ")
    return int(7 * len(text) + 3 * wide - 3 * narrow) + 10


def badge(label: str, value: str, colour: str) -> str:
    """A shields.io-style two-part badge: ``label`` (grey) | ``value`` (``colour``)."""
    lw, vw = _text_width(label), _text_width(value)
    total = lw + vw
    lt, vt = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{lt}: {vt}">'
        f"<title>{lt}: {vt}</title>"
        f'<rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{lw / 2:.1f}" y="14">{lt}</text><text x="{lw + vw / 2:.1f}" y="14">{vt}</text></g></svg>'
    )
