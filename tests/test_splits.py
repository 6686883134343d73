"""Train/test splits: the documented hash rule, determinism, grouping of duplicates, and the leak check."""

import hashlib

import pytest

from core.splits import LeakError, check_no_leak, is_test, normalise, split_entries, split_key, split_queries
from core.tools import Query

# Spellings of one request that differ only in what `normalise` removes. Normalised, the request falls in the
# test split; each spelling hashed as written falls in the train split. So a normaliser that skips any one step
# (NFKC, lower-casing, punctuation, underscores, whitespace) puts that spelling on the wrong side, every time.
TEST_SIDE_KEY = "find a file named notes"
SPELLINGS = {
    "nfkc": "\ufb01nd a file named notes",  # the "fi" ligature
    "case": "Find A File NAMED Notes",
    "punctuation": "find, a file named notes?!",
    "underscore": "find_a file named notes",
    "whitespace": "  find   a   file   named   notes\n",
}


def bucket(text: str) -> int:
    """The documented rule's bucket of a key: int(sha1(key).hexdigest(), 16) % 10 (test when < 2)."""
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % 10


def queries(n=200):
    return [
        Query(id=str(i), text=f"Find the weather in city number {i}, please!", gold=("W&&w",), source="t")
        for i in range(n)
    ]


def test_normalise_lowercases_strips_punctuation_and_collapses_space():
    assert normalise("  Hello,   WORLD!\n What's  up?? ") == "hello world what s up"
    assert normalise("snake_case-name") == "snake case name"
    assert all(normalise(text) == TEST_SIDE_KEY for text in SPELLINGS.values())


def test_split_follows_the_documented_hash_rule():
    for i, query in enumerate(queries(50)):
        key = f"find the weather in city number {i} please"  # the normalised text, written out
        assert is_test(query.text, query.id) == (bucket(key) < 2)


def test_spellings_are_placed_by_their_normalised_text():
    assert bucket(TEST_SIDE_KEY) < 2
    for step, text in SPELLINGS.items():
        assert bucket(text) >= 2, f"the {step} spelling no longer tests its normalisation step"
        assert is_test(text, f"id-{step}"), f"{step}: placed by the text as written, not normalised"


def test_split_is_deterministic_order_preserving_and_about_twenty_percent():
    first, second = split_queries(queries()), split_queries(reversed(queries()))
    assert [q.id for q in first.test] == [q.id for q in reversed(second.test)]
    assert [q.id for q in first.train] == sorted((q.id for q in first.train), key=int)
    assert 0.1 < len(first.test) / 200 < 0.3
    assert {q.id for q in first.train}.isdisjoint(q.id for q in first.test)


def test_duplicate_texts_under_different_ids_fall_on_the_same_side():
    duplicates = [
        Query(id=f"{category}_{n}", text=text, source=f"bfcl:{category}")
        for n, (category, text) in enumerate(
            zip(["simple_python", "multiple", "live_simple"] * 2, [TEST_SIDE_KEY, *SPELLINGS.values()])
        )
    ]
    assert split_queries(duplicates).test == duplicates


class Entry:
    def __init__(self, entry_id, *turn_texts):
        self.id = entry_id
        self.turns = [[{"role": "user", "content": text}] for text in turn_texts]


def test_bfcl_multi_turn_variants_share_their_scenario_side():
    assert split_key("anything", "multi_turn_miss_param_12") == split_key("else", "multi_turn_base_12")
    for n in range(40):
        variants = [Entry(f"multi_turn_{v}_{n}", f"text {v} {n}") for v in ("base", "miss_func", "long_context")]
        split = split_entries(variants)
        assert len(split.test) in (0, 3)


def test_leak_check_passes_clean_data_and_names_a_planted_leak():
    split = split_queries(queries())
    check_no_leak([q.text for q in split.train], [q.text for q in split.test])
    planted = split.test[0].text.upper() + "  "
    with pytest.raises(LeakError, match="1 test queries leak") as error:
        check_no_leak([q.text for q in split.train] + [planted], [q.text for q in split.test])
    assert error.value.leaked == [split.test[0].text]
