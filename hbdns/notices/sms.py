"""How long an SMS text is, how many segments it takes, and how to cut one cleanly.

GSM 03.38: a text of characters of the GSM 7-bit default alphabet (which has the German umlauts and
ß) counts one septet per character, and its extension table (form feed, ^ { } \\ [ ~ ] | and €)
two, an escape and the character. A single SMS holds 160 septets; a longer text is sent in
segments of 153 (each carries a 7-septet concatenation header), and an escape pair is never split
across two. A text with any other character (typographic quotes, most accents, emoji) goes as
UCS-2: 70 UTF-16 code units single, 67 per segment; a character outside the Basic Multilingual
Plane (most emoji) is a surrogate pair, two units, never split either.

:func:`fit` cuts a text to a number of segments at a character boundary (never inside an escape
pair, a surrogate pair or before a combining mark), preferably after a word, and ends it in "...".
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

GSM7, UCS2 = "GSM-7", "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}  # units in one SMS
PER_SEGMENT = {GSM7: 153, UCS2: 67}  # units per segment of a concatenated SMS
ELLIPSIS = "..."  # GSM-7 (a typographic ellipsis would force UCS-2 on the whole text)

# The default alphabet in table order (0x00-0x7F); 0x1B is the escape to the extension table.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_BASIC_TABLE) == 128
BASIC = frozenset(_BASIC_TABLE) - {"\x1b"}
EXTENSION = frozenset("\f^{}\\[~]|€")

_JOINERS = frozenset("\u200d\ufe0e\ufe0f")  # zero-width joiner, variation selectors: part of the previous character


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # GSM-7 or UCS-2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int

    @property
    def limit(self) -> int:
        """Units that fit in this many segments."""
        return SINGLE[self.encoding] if self.segments <= 1 else self.segments * PER_SEGMENT[self.encoding]

    def describe(self) -> str:
        """'GSM-7, 93 of 160 septets, 1 segment'."""
        unit = "septets" if self.encoding == GSM7 else "UCS-2 units"
        return (
            f"{self.encoding}, {self.units} of {self.limit} {unit}, {self.segments} segment{'s' * (self.segments != 1)}"
        )


def encoding(text: str) -> str:
    return GSM7 if all(c in BASIC or c in EXTENSION for c in text) else UCS2


def _costs(text: str, enc: str) -> list[int]:
    if enc == GSM7:
        return [2 if c in EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def _segments(costs: list[int], enc: str) -> int:
    if sum(costs) <= SINGLE[enc]:
        return 1
    per, segments, used = PER_SEGMENT[enc], 1, 0
    for cost in costs:  # a pair that does not fit in this segment starts the next one
        if used + cost > per:
            segments, used = segments + 1, 0
        used += cost
    return segments


def measure(text: str) -> SmsSize:
    enc = encoding(text)
    costs = _costs(text, enc)
    return SmsSize(encoding=enc, units=sum(costs), segments=_segments(costs, enc))


@dataclass(frozen=True)
class Fitted:
    text: str
    size: SmsSize
    cut: bool  # shortened to fit


def _boundary(text: str, i: int) -> int:
    """The nearest cut position <= ``i`` that keeps a character whole with its combining marks and joiners."""
    while 0 < i < len(text) and (unicodedata.combining(text[i]) or text[i] in _JOINERS or text[i - 1] == "\u200d"):
        i -= 1
    return i


def fit(text: str, max_segments: int) -> Fitted:
    """``text`` if it fits in ``max_segments``, else its longest clean prefix that fits with "..." appended."""
    size = measure(text)
    if size.segments <= max_segments:
        return Fitted(text, size, cut=False)

    def fits(n: int) -> bool:
        return measure(text[:n].rstrip() + ELLIPSIS).segments <= max_segments

    lo, hi = 0, len(text)  # a prefix that fits is shorter than one that does not: binary search
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    n = _boundary(text, lo)
    space = text.rfind(" ", 0, n + 1)
    if space > 0 and n - space <= 20 and text[n : n + 1] not in ("", " "):
        n = space  # end after a whole word when one ends near the cut
    head = text[:n].rstrip(" ,;:-")
    out = head + ELLIPSIS
    return Fitted(out, measure(out), cut=True)
