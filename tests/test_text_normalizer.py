"""The one normalizer (utils/text.py) fixes what "the same text" means for generation and filtering."""

from __future__ import annotations

import pytest

from nemo_taskseed.filter.text import normalize_words as filter_words
from nemo_taskseed.generate.parsers import normalize as generate_normalize
from nemo_taskseed.utils.text import normalize_text, normalize_words


@pytest.mark.parametrize(
    "text, expected",
    [
        ("16-3-4", "1634"),  # punctuation is deleted, not a space (lm-eval's janitor)
        ("3.14 + 2,000 = x", "314 2000 x"),  # numbers keep their digits, lose their separators
        ("Well-known FACTS!", "wellknown facts"),
        ("don’t  stop", "dont stop"),  # Unicode apostrophe == ASCII one
        ("ﬁnal Ｑuestion", "final question"),  # NFKC: ligature and full-width letters
        ("snake_case", "snakecase"),  # "_" is punctuation here although \w matches it
        ("Привет, мир!", "привет мир"),  # other scripts keep their letters
        ("", ""),
    ],
)
def test_normalizer_on_punctuation_and_numbers(text, expected):
    assert normalize_text(text) == expected
    assert normalize_words(text) == expected.split()


def test_generation_and_filter_share_the_normalizer():
    for text in ("16-3-4", "Well-known FACTS!", "don’t stop", "Привет, мир!"):
        assert generate_normalize(text) == " ".join(filter_words(text)) == normalize_text(text)
