"""The prompt-text counters agree with the character classes they stand for."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from switchgear.proxy import text

# The classes as regexes: the reference the lookup tables must match.
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")

EDGES = "\u303f\u3040\u30ff\u3100\u33ff\u3400\u4dbf\u4dc0\u4dff\u4e00\u9fff\ua000\uabff\uac00\ud7af\ud7b0\uf8ff\uf900\ufaff\ufb00"
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),  # any code point, surrogates and astral planes included
        st.sampled_from(EDGES),
        st.characters(min_codepoint=0x3000, max_codepoint=0xFB00),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, database=None)
@given(s=TEXT)
def test_counts_match_the_character_classes(s: str) -> None:
    assert text.count_chars(s, text._CJK) == len(CJK.findall(s))
    assert text.count_chars(s, text._HAN) == len(HAN.findall(s))
    assert text.count_chars(s, text._LATIN) == len(LATIN.findall(s))
    cjk = len(CJK.findall(s))
    assert text.estimate_tokens(s) == cjk + -(-(len(s) - cjk) * 2 // 7)


def test_astral_characters_count_once_in_the_length() -> None:
    s = "\U00020000\U0001f600ab"  # CJK extension B and an emoji: not in the classes
    assert text.count_chars(s, text._CJK) == 0
    assert text.estimate_tokens(s) == 2  # ceil(4 / 3.5)
