"""The fast comparison forms agree with the long way on any text (hypothesis; derandomized, no database).

``canonical`` takes a byte table for ASCII text; dedup, filters and the sampler's read-wide counts rely on it
giving exactly the NFKC + casefold + punctuation form, and on the word count and the sampler's spaceless form
being that form's.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from medi.stages.normalize import canonical, canonical_word_count, unicode_canonical
from medi.stages.sample import text_form

BOUNDED = settings(max_examples=400, derandomize=True, database=None, deadline=None)
ascii_text = st.text(alphabet=st.characters(max_codepoint=127), max_size=80)
any_text = st.text(max_size=60)


@BOUNDED
@given(ascii_text)
def test_the_ascii_byte_table_gives_the_unicode_form(text):
    assert canonical(text) == unicode_canonical(text)


@BOUNDED
@given(st.one_of(ascii_text, any_text))
def test_word_count_and_spaceless_form_are_the_canonical_forms(text):
    form = canonical(text)
    assert canonical_word_count(text) == len(form.split())
    assert text_form(text) == form.replace(" ", "").encode()


def test_real_punctuation_and_case():
    assert canonical("  Who wrote 'Hamlet'?\tIn 1600-1601!  ") == "who wrote hamlet in 1600 1601"
    assert canonical_word_count("snake_case, C++ & A.I.") == len(unicode_canonical("snake_case, C++ & A.I.").split())
