"""The SMS length counter: GSM-7 septets, extension characters twice, UCS-2 in UTF-16 code units
(a character outside the BMP twice), segments of 153/67 that never split a pair, and clean cuts."""

from __future__ import annotations

import pytest

from hbdns.notices.sms import BASIC, EXTENSION, GSM7, UCS2, fit, measure


def test_the_default_alphabet_has_the_german_letters_and_not_the_typographic_ones() -> None:
    assert set("äöüÄÖÜß") <= BASIC and set("@£$¥§¿¡ΔΩ") <= BASIC
    assert len(BASIC) == 127 and set("\f^{}\\[~]|€") == EXTENSION
    for c in "ç„“”\u2013…\u00b4`áâêëîïôûÿ":  # typographic quotes, en dash, ellipsis, acute accent
        assert measure(c).encoding == UCS2, c
    assert measure("Grüße aus Köln: Straße geöffnet").encoding == GSM7


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", GSM7, 0, 1),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),  # 153 + 8
        ("ü" * 160, GSM7, 160, 1),  # umlauts are one septet
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("€" * 80, GSM7, 160, 1),  # extension characters count twice
        ("€" * 81, GSM7, 162, 2),
        ("[]{}\\~^|\f", GSM7, 18, 1),
        ("a" * 152 + "€" + "a" * 7, GSM7, 161, 2),  # the pair does not fit in segment 1's last septet...
        ("a" * 152 + "€" + "a" * 152, GSM7, 306, 3),  # ...so it moves to segment 2, which then overflows
        ("a" * 151 + "€" + "a" * 153, GSM7, 306, 2),  # ends exactly at 153: two full segments
        ("é" * 69 + "ç", UCS2, 70, 1),  # one character outside GSM-7 makes the whole text UCS-2
        ("ç" * 71, UCS2, 71, 2),  # 67 + 4
        ("a" * 69 + "€", GSM7, 71, 1),
        ("a" * 69 + "“", UCS2, 70, 1),
        ("a" * 70 + "“", UCS2, 71, 2),
        ("😀" * 35, UCS2, 70, 1),  # outside the BMP: a surrogate pair, two units
        ("😀" * 36, UCS2, 72, 2),
        ("a" * 66 + "😀" + "a" * 66, UCS2, 134, 3),  # the pair starts segment 2 (66 + 2 > 67): 66 | 2+65 | 1
        ("a" * 65 + "😀" + "a" * 67, UCS2, 134, 2),  # 65 + 2 = 67 | 67
    ],
)
def test_length_and_segments(text: str, encoding: str, units: int, segments: int) -> None:
    size = measure(text)
    assert (size.encoding, size.units, size.segments) == (encoding, units, segments)


def test_describe() -> None:
    assert measure("a" * 93).describe() == "GSM-7, 93 of 160 septets, 1 segment"
    assert measure("ç" * 71).describe() == "UCS-2, 71 of 134 UCS-2 units, 2 segments"


def test_a_text_that_fits_is_left_alone() -> None:
    out = fit("hbdns: home.dyn.example.net OFFLINE since 14:00 CEST.", 1)
    assert not out.cut and out.text.endswith("CEST.") and out.size.segments == 1


def test_a_long_gsm_text_is_cut_after_a_word_and_fits() -> None:
    text = "Beispiel Hosting: " + " ".join(["Ausfall"] * 40)
    out = fit(text, 1)
    assert out.cut and out.text.endswith("Ausfall...") and out.size.units <= 160 and out.size.segments == 1
    assert out.text[:-3] == text[: len(out.text) - 3]


def test_a_cut_never_splits_an_extension_pair() -> None:
    out = fit("€" * 200, 1)
    assert out.cut and out.text == "€" * 78 + "..." and out.size.units == 159  # 78 x 2 + 3: no room for a 79th
    assert fit("a" * 157 + "€" * 5, 1).text == "a" * 157 + "..."


def test_a_cut_never_splits_a_surrogate_pair_or_a_combining_mark() -> None:
    out = fit("😀" * 100, 1)
    assert out.cut and out.text == "😀" * 33 + "..." and out.size.units == 69 and out.size.encoding == UCS2
    accents = "e\u0301" * 50  # e + combining acute: a cut between them would strip the accent
    out = fit(accents, 1)
    assert out.text[-4] == "\u0301" and out.size.segments == 1
    family = "👨\u200d👩\u200d👧 " * 20  # joined emoji stay whole
    cut = fit(family, 1).text[:-3].rstrip()
    assert not cut.endswith("\u200d") and cut.endswith("👧")


def test_a_ucs2_text_cut_may_become_gsm7_and_then_keeps_more() -> None:
    out = fit("a" * 100 + "“" + "b" * 100, 1)  # UCS-2 as a whole; the cut prefix is GSM-7: 160 septets
    assert out.size.encoding == GSM7 and out.text == "a" * 100 + "..."


def test_cut_to_several_segments() -> None:
    out = fit("x" * 1000, 3)
    assert out.cut and out.size.segments == 3 and out.size.units == 459 and out.text.endswith("...")
