import math

import numpy as np
import pytest

from eval.stats import (
    annotator_agreement,
    bootstrap_ci,
    bradley_terry,
    cohen_kappa,
    fleiss_kappa,
    paired_test,
    win_rates,
)


def test_bootstrap_ci_is_deterministic_and_covers_the_mean():
    values = np.random.default_rng(1).normal(0.6, 0.2, size=400)
    first, second = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert first == second
    assert first.ci_low < first.mean < first.ci_high and first.n == 400
    # the CI half-width is close to 1.96 standard errors
    assert (first.ci_high - first.ci_low) / 2 == pytest.approx(1.96 * values.std() / math.sqrt(400), rel=0.1)
    single = bootstrap_ci([0.5])
    assert (single.mean, single.ci_low, single.ci_high) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])


def test_paired_test_exact_sign_flip_and_large_sample():
    # 5 positive differences, 3 zero: exactly 2 of 32 sign patterns are as extreme -> p = 1/16
    result = paired_test([1, 1, 1, 0, 1, 1, 1, 1], [0, 0, 1, 0, 0, 1, 0, 0])
    assert result.p_value == pytest.approx(2 / 32) and result.mean_diff == 0.625
    rng = np.random.default_rng(0)
    a = rng.random(300)
    better = paired_test(a + 0.1 + rng.normal(0, 0.05, 300), a)
    assert better.p_value < 0.001 and better.ci_low > 0.08 and better.ci_high < 0.12
    same = paired_test(a, a + rng.normal(0, 0.05, 300))
    assert same.p_value > 0.01 and same.ci_low < 0 < same.ci_high
    assert paired_test([0.3, 0.4], [0.3, 0.4]).p_value == 1.0
    with pytest.raises(ValueError, match="same queries"):
        paired_test([1, 2], [1])


def test_win_rates_canonical_pairs_and_half_ties():
    votes = [("b", "a", "A"), ("a", "b", "A"), ("a", "b", "tie"), ("a", "b", "both_bad"), ("a", "c", "B")]
    rates = {(r.system_a, r.system_b): r for r in win_rates(votes)}
    ab = rates[("a", "b")]
    assert (ab.wins_a, ab.wins_b, ab.ties, ab.both_bad, ab.n) == (1, 1, 1, 1, 4)
    assert ab.win_rate_a == 0.5
    assert rates[("a", "c")].win_rate_a == 0.0
    with pytest.raises(ValueError, match="vote 0: unknown vote"):
        win_rates([("a", "b", "C")])
    with pytest.raises(ValueError, match="both sides"):
        win_rates([("a", "a", "A")])


def test_bradley_terry_recovers_order_and_odds():
    rng = np.random.default_rng(0)
    strength = {"strong": 400.0, "mid": 200.0, "weak": 0.0}  # Elo points
    votes = []
    for _ in range(3000):
        x, y = rng.choice(list(strength), size=2, replace=False)
        p_x = 1 / (1 + 10 ** ((strength[y] - strength[x]) / 400))
        votes.append((x, y, "A" if rng.random() < p_x else "B"))
    ratings = bradley_terry(votes, n_resamples=200)
    assert [r.system for r in ratings] == ["strong", "mid", "weak"]
    by_name = {r.system: r for r in ratings}
    assert by_name["strong"].rating - by_name["weak"].rating == pytest.approx(400, abs=40)
    assert np.mean([r.rating for r in ratings]) == pytest.approx(1000)
    for r in ratings:
        assert r.ci_low < r.rating < r.ci_high
        assert 1800 < r.n_votes < 2200  # each system is in about 2 of every 3 votes
    assert bradley_terry(votes, n_resamples=50) == bradley_terry(votes, n_resamples=50)


def test_bradley_terry_ties_and_never_winning_system_stay_finite():
    votes = [("a", "b", "A")] * 5 + [("a", "b", "tie"), ("b", "c", "both_bad")]
    ratings = {r.system: r for r in bradley_terry(votes, n_resamples=100)}
    assert all(math.isfinite(r.rating) and math.isfinite(r.ci_low) for r in ratings.values())
    assert ratings["a"].rating > ratings["b"].rating
    # an even record gives equal ratings
    even = bradley_terry([("x", "y", "A"), ("x", "y", "B"), ("x", "y", "tie")], n_resamples=10)
    assert even[0].rating == pytest.approx(even[1].rating)


def test_cohen_kappa_known_value():
    # classic 2x2 table: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == 1.0
    assert math.isnan(cohen_kappa(["y", "y"], ["y", "y"]))
    with pytest.raises(ValueError, match="equally long"):
        cohen_kappa(["y"], [])


def test_fleiss_kappa_matches_wikipedia_example():
    # the worked example of the Wikipedia "Fleiss' kappa" article: 10 items, 14 raters, 5 categories
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    items = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.210, abs=1e-3)
    with pytest.raises(ValueError, match="item 1 has 1 rating"):
        fleiss_kappa([["A", "B"], ["A"]])


def test_annotator_agreement_from_vote_rows():
    rows = [
        ("p1", "ann", "A"),
        ("p1", "bob", "A"),
        ("p1", "cat", "B"),
        ("p2", "ann", "B"),
        ("p2", "bob", "B"),
        ("p3", "ann", "tie"),
    ]  # p3 has one rater: not used
    agreement = annotator_agreement(rows)
    assert agreement.n_items == 2
    assert agreement.fleiss_kappa == pytest.approx(fleiss_kappa([["A", "A", "B"], ["B", "B"]]))
    # p1: ann's and bob's others split 1:1 (no majority), cat's others say A; p2: each one's other says B
    rows = {(r.annotator, r.n_votes, r.n_compared, r.agreement) for r in agreement.annotators}
    assert rows == {("ann", 3, 1, 1.0), ("bob", 2, 1, 1.0), ("cat", 1, 1, 0.0)}
    with pytest.raises(ValueError, match="twice"):
        annotator_agreement([("p1", "ann", "A"), ("p1", "ann", "B")])


def test_annotator_agreement_has_one_row_per_annotator_and_finds_the_contrarian():
    names = [f"a{i:02d}" for i in range(76)]
    rows = [
        (item, name, "B" if name == "a13" else ("A" if item % 3 else "tie")) for item in range(12) for name in names
    ]
    agreement = annotator_agreement(rows)
    assert [r.annotator for r in agreement.annotators] == names  # 76 rows, not 2,850 pairs
    contrarian = min(agreement.annotators, key=lambda r: r.agreement)
    assert contrarian.annotator == "a13" and contrarian.agreement == 0.0 and contrarian.n_compared == 12
    assert all(r.agreement == 1.0 and r.kappa == 1.0 for r in agreement.annotators if r.annotator != "a13")
