"""Statistics for comparing systems: bootstrap CIs, a paired test, pairwise-vote win rates,
Bradley–Terry ratings and inter-annotator agreement (Cohen's and Fleiss' kappa).

Every resampling function takes a `seed`, so the same input always gives the same numbers.

Pairwise votes are `(system_a, system_b, vote)` with vote in `VOTES`: "A" (system_a better), "B"
(system_b better), "tie", or "both_bad". For win rates and ratings a tie and a both_bad vote both count
as half a win for each side; `WinRate` still reports both_bad separately.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

import numpy as np

VOTES = ("A", "B", "tie", "both_bad")
_MAX_CELLS_PER_CHUNK = 2_000_000  # resample matrices are built in chunks of about this many cells


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap percentile confidence interval over `n` values."""

    mean: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class PairedTest:
    """System a minus system b on the same queries: mean difference, its CI, and a two-sided p-value."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


@dataclass(frozen=True)
class WinRate:
    """Vote counts of one system pair; `win_rate_a` counts ties and both_bad as half a win."""

    system_a: str
    system_b: str
    wins_a: int
    wins_b: int
    ties: int
    both_bad: int

    @property
    def n(self) -> int:
        return self.wins_a + self.wins_b + self.ties + self.both_bad

    @property
    def win_rate_a(self) -> float:
        return (self.wins_a + 0.5 * (self.ties + self.both_bad)) / self.n


@dataclass(frozen=True)
class Rating:
    """A Bradley–Terry rating on the Elo scale (mean 1000, 400 points = 10:1 odds) with its bootstrap CI."""

    system: str
    rating: float
    ci_low: float
    ci_high: float
    n_votes: int


@dataclass(frozen=True)
class Agreement:
    """Fleiss' kappa over items with 2+ ratings, and Cohen's kappa per annotator pair on their shared items."""

    fleiss_kappa: float
    n_items: int
    cohen_kappa: dict[tuple[str, str], float]


def _as_values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what}: expected a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return array


def _resampled_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = values.size
    chunk = max(1, _MAX_CELLS_PER_CHUNK // n)
    means = [values[rng.integers(0, n, size=(min(chunk, n_resamples - start), n))].mean(axis=1)
             for start in range(0, n_resamples, chunk)]
    return np.concatenate(means)


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(values: Sequence[float], n_resamples: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> Estimate:
    """Mean of `values` with a percentile bootstrap CI (resampling values with replacement)."""
    array = _as_values(values, "bootstrap_ci")
    means = _resampled_means(array, n_resamples, np.random.default_rng(seed))
    return Estimate(float(array.mean()), *_percentile_ci(means, confidence), n=array.size)


def _sign_flip_p_value(diff: np.ndarray, n_resamples: int, rng: np.random.Generator) -> float:
    """Two-sided randomisation test of mean(diff) == 0: flip the sign of each difference at random.

    Exact (all 2^n sign patterns) when that is no more than `n_resamples` patterns, Monte Carlo otherwise.
    """
    observed = abs(diff.mean())
    n = diff.size
    exact = 2 ** n <= n_resamples
    chunk = max(1, _MAX_CELLS_PER_CHUNK // n)
    total = 2 ** n if exact else n_resamples
    extreme = 0
    for start in range(0, total, chunk):
        rows = min(chunk, total - start)
        if exact:
            bits = (np.arange(start, start + rows)[:, None] >> np.arange(n)) & 1
        else:
            bits = rng.integers(0, 2, size=(rows, n))
        flipped = np.abs(((1 - 2 * bits) * diff).mean(axis=1))
        extreme += int((flipped >= observed - 1e-12).sum())
    return extreme / total if exact else (extreme + 1) / (total + 1)


def paired_test(scores_a: Sequence[float], scores_b: Sequence[float], n_resamples: int = 10_000,
                confidence: float = 0.95, seed: int = 0) -> PairedTest:
    """Compare two systems scored on the same queries (same order).

    The mean difference a - b gets a paired bootstrap CI; the p-value comes from a sign-flip
    randomisation test (H0: the per-query differences are symmetric around 0).
    """
    a = _as_values(scores_a, "paired_test scores_a")
    b = _as_values(scores_b, "paired_test scores_b")
    if a.size != b.size:
        raise ValueError(f"paired_test: scores_a has {a.size} values but scores_b has {b.size}; "
                         "both must score the same queries")
    diff = a - b
    rng = np.random.default_rng(seed)
    ci_low, ci_high = _percentile_ci(_resampled_means(diff, n_resamples, rng), confidence)
    p_value = _sign_flip_p_value(diff, n_resamples, rng)
    return PairedTest(float(diff.mean()), ci_low, ci_high, p_value, n=diff.size)


def _checked_votes(votes: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    checked = []
    for index, (system_a, system_b, vote) in enumerate(votes):
        if vote not in VOTES:
            raise ValueError(f"vote {index}: unknown vote {vote!r}, expected one of {VOTES}")
        if system_a == system_b:
            raise ValueError(f"vote {index}: both sides are system {system_a!r}")
        checked.append((system_a, system_b, vote))
    return checked


def win_rates(votes: Iterable[tuple[str, str, str]]) -> list[WinRate]:
    """Win/tie counts per unordered system pair (pair sorted by name; votes flipped to match)."""
    flip = {"A": "B", "B": "A", "tie": "tie", "both_bad": "both_bad"}
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(VOTES, 0))
    for system_a, system_b, vote in _checked_votes(votes):
        if system_a > system_b:
            system_a, system_b, vote = system_b, system_a, flip[vote]
        counts[(system_a, system_b)][vote] += 1
    return [WinRate(a, b, c["A"], c["B"], c["tie"], c["both_bad"]) for (a, b), c in sorted(counts.items())]


def _win_matrix(side_a: np.ndarray, side_b: np.ndarray, share_a: np.ndarray, n_systems: int) -> np.ndarray:
    """wins[i, j] = (fractional) wins of system i over system j, from per-vote system indices."""
    cells = n_systems * n_systems
    wins = np.bincount(side_a * n_systems + side_b, weights=share_a, minlength=cells)
    wins += np.bincount(side_b * n_systems + side_a, weights=1.0 - share_a, minlength=cells)
    return wins.reshape(n_systems, n_systems)


def _log_likelihood(theta: np.ndarray, wins: np.ndarray) -> float:
    diff = theta[:, None] - theta[None, :]
    return float(-(wins * np.logaddexp(0.0, -diff)).sum())


def _fit_bradley_terry(wins: np.ndarray, prior_ties: float, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Maximum-likelihood log-strengths (mean 0) by Newton's method with step halving.

    `wins[i, j]` is the (possibly fractional) number of wins of i over j; P(i beats j) = sigmoid(θi - θj).
    """
    wins = wins + prior_ties / 2 * (1 - np.eye(len(wins)))
    games = wins + wins.T
    theta = np.zeros(len(wins))
    likelihood = _log_likelihood(theta, wins)
    for _ in range(max_iter):
        p_win = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))
        gradient = wins.sum(axis=1) - (games * p_win).sum(axis=1)
        curvature = games * p_win * p_win.T
        hessian = curvature - np.diag(curvature.sum(axis=1))
        step = np.linalg.lstsq(-hessian, gradient, rcond=None)[0]
        while True:
            candidate = theta + step
            candidate_likelihood = _log_likelihood(candidate, wins)
            if candidate_likelihood >= likelihood or np.abs(step).max() < tol:
                break
            step /= 2
        theta, likelihood = candidate - candidate.mean(), candidate_likelihood
        if np.abs(step).max() < tol:
            break
    return theta


def _elo(log_strength: np.ndarray) -> np.ndarray:
    return 1000.0 + 400.0 * log_strength / math.log(10)


def bradley_terry(votes: Iterable[tuple[str, str, str]], n_resamples: int = 1000, confidence: float = 0.95,
                  prior_ties: float = 1.0, seed: int = 0) -> list[Rating]:
    """Bradley–Terry ratings (Elo scale), best first, with CIs from resampling votes with replacement.

    Ties and both_bad count as half a win each. `prior_ties` adds that many virtual tie votes to every
    system pair, which keeps ratings finite when a system never wins and the comparison graph connected.
    """
    checked = _checked_votes(votes)
    if not checked:
        raise ValueError("bradley_terry: no votes")
    systems = sorted({s for a, b, _ in checked for s in (a, b)})
    index = {s: i for i, s in enumerate(systems)}
    side_a = np.array([index[a] for a, _, _ in checked])
    side_b = np.array([index[b] for _, b, _ in checked])
    share_a = np.array([{"A": 1.0, "B": 0.0}.get(vote, 0.5) for _, _, vote in checked])
    ratings = _elo(_fit_bradley_terry(_win_matrix(side_a, side_b, share_a, len(systems)), prior_ties))
    rng = np.random.default_rng(seed)
    samples = np.empty((n_resamples, len(systems)))
    for row in range(n_resamples):
        pick = rng.integers(0, len(checked), len(checked))
        samples[row] = _elo(_fit_bradley_terry(_win_matrix(side_a[pick], side_b[pick], share_a[pick], len(systems)),
                                               prior_ties))
    n_votes = {s: sum(s in (a, b) for a, b, _ in checked) for s in systems}
    results = [Rating(s, float(ratings[i]), *_percentile_ci(samples[:, i], confidence), n_votes=n_votes[s])
               for i, s in enumerate(systems)]
    return sorted(results, key=lambda r: -r.rating)


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators' labels on the same items (same order).

    NaN when chance agreement is 1 (both annotators used one and the same label throughout).
    """
    if len(labels_a) != len(labels_b) or not labels_a:
        raise ValueError(f"cohen_kappa: need two equally long, non-empty label lists, "
                         f"got {len(labels_a)} and {len(labels_b)}")
    n = len(labels_a)
    observed = sum(x == y for x, y in zip(labels_a, labels_b)) / n
    categories = set(labels_a) | set(labels_b)
    expected = sum((list(labels_a).count(c) / n) * (list(labels_b).count(c) / n) for c in categories)
    return float("nan") if expected == 1.0 else (observed - expected) / (1.0 - expected)


def fleiss_kappa(item_labels: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa; `item_labels[i]` are the labels item i received, one per rater (2+ per item).

    Items may have different numbers of raters (per-item agreement uses each item's own count).
    NaN when chance agreement is 1 (every rating is the same label).
    """
    if not item_labels:
        raise ValueError("fleiss_kappa: no items")
    categories = sorted({label for labels in item_labels for label in labels}, key=repr)
    counts = np.zeros((len(item_labels), len(categories)))
    column = {c: j for j, c in enumerate(categories)}
    for i, labels in enumerate(item_labels):
        if len(labels) < 2:
            raise ValueError(f"fleiss_kappa: item {i} has {len(labels)} rating(s); every item needs 2 or more")
        for label in labels:
            counts[i, column[label]] += 1
    raters = counts.sum(axis=1)
    per_item = ((counts * (counts - 1)).sum(axis=1) / (raters * (raters - 1))).mean()
    shares = counts.sum(axis=0) / raters.sum()
    expected = float((shares ** 2).sum())
    return float("nan") if expected == 1.0 else float((per_item - expected) / (1.0 - expected))


def annotator_agreement(ratings: Iterable[tuple[Hashable, str, Hashable]]) -> Agreement:
    """Agreement from `(item, annotator, label)` rows; labels must be oriented the same way for everyone.

    Fleiss' kappa uses the items with two or more annotators; Cohen's kappa is given for every pair of
    annotators sharing at least one item. A repeated (item, annotator) row is an error.
    """
    by_item: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    for item, annotator, label in ratings:
        if annotator in by_item[item]:
            raise ValueError(f"annotator_agreement: annotator {annotator!r} rated item {item!r} twice")
        by_item[item][annotator] = label
    shared = [labels for labels in by_item.values() if len(labels) >= 2]
    fleiss = fleiss_kappa([list(labels.values()) for labels in shared]) if shared else float("nan")
    annotators = sorted({a for labels in by_item.values() for a in labels})
    cohen = {}
    for first, second in itertools.combinations(annotators, 2):
        common = [labels for labels in by_item.values() if first in labels and second in labels]
        if common:
            cohen[(first, second)] = cohen_kappa([c[first] for c in common], [c[second] for c in common])
    return Agreement(fleiss, len(shared), cohen)
