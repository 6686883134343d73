"""Deterministic train/test splits of queries, the check that no test query feeds training, and `spread`
(a deterministic even subset).

The rule (one for every corpus): a query is in the test split when

    int(sha1(key).hexdigest(), 16) % 10 < 2            (about 20 % of the queries)

where `key` is the query's normalised text (`normalise`), except for BFCL multi-turn entries, whose key is
`bfcl-multi-turn:<scenario number>` so that the base / miss_func / miss_param / long_context variants of one
scenario (which share most of their text) fall on the same side. Keying on the text rather than on the
query id keeps duplicates together: BFCL repeats questions under several ids (simple_python vs multiple,
the three memory backends, live_*), so an id-keyed split would train on test questions. The split of a
query depends on that query alone, never on which other queries were loaded.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TEST_BUCKETS, BUCKETS = 2, 10
_MULTI_TURN_ID = re.compile(r"^multi_turn_[a-z_]+?_(\d+)$")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


class LeakError(ValueError):
    """Test queries (normalised) also appear among the training texts."""

    def __init__(self, leaked: list[str]):
        shown = "; ".join(repr(t) for t in leaked[:5])
        more = f" (and {len(leaked) - 5} more)" if len(leaked) > 5 else ""
        super().__init__(f"{len(leaked)} test queries leak into training data: {shown}{more}")
        self.leaked = leaked


def normalise(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed (Unicode NFKC first)."""
    text = _PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", text).lower())
    return " ".join(text.split())


def split_key(text: str, query_id: str = "") -> str:
    """The text hashed to place a query: `bfcl-multi-turn:N` for BFCL multi-turn ids, else `normalise(text)`."""
    match = _MULTI_TURN_ID.match(query_id)
    return f"bfcl-multi-turn:{match.group(1)}" if match else normalise(text)


def is_test(text: str, query_id: str = "") -> bool:
    """True when the query belongs to the test split (see the module docstring for the rule)."""
    digest = hashlib.sha1(split_key(text, query_id).encode("utf-8")).hexdigest()
    return int(digest, 16) % BUCKETS < TEST_BUCKETS


@dataclass(frozen=True)
class Split:
    """The two sides of a split, each in input order."""

    train: list
    test: list


def split_queries(queries: Iterable) -> Split:
    """Split `Query` records (fields `text`, `id`) by `is_test`, keeping their order."""
    train, test = [], []
    for query in queries:
        (test if is_test(query.text, query.id) else train).append(query)
    return Split(train, test)


def entry_texts(entry) -> list[str]:
    """Every user message of a BFCL entry (all turns), in order."""
    return [m["content"] for turn in entry.turns for m in turn if m.get("role") == "user"]


def split_entries(entries: Iterable) -> Split:
    """Split BFCL entries by `is_test` on their first user message (multi-turn: on the scenario number)."""
    train, test = [], []
    for entry in entries:
        texts = entry_texts(entry)
        (test if is_test(texts[0] if texts else "", entry.id) else train).append(entry)
    return Split(train, test)


def check_no_leak(train_texts: Iterable[str], test_texts: Iterable[str]) -> None:
    """Raise `LeakError` listing the test texts whose normalised form is also a training text."""
    seen = {normalise(t) for t in train_texts}
    leaked = list(dict.fromkeys(t for t in test_texts if normalise(t) in seen))
    if leaked:
        raise LeakError(leaked)


def spread(items: Sequence, n: int) -> list:
    """At most n items, evenly spaced over the sequence (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]
