"""Statistics for comparing systems: bootstrap CIs, a paired test, pairwise-vote win rates,
Bradley–Terry ratings and inter-annotator agreement (Cohen's and Fleiss' kappa).

Every resampling function takes a `seed`, so the same input always gives the same numbers.

Pairwise votes are `(system_a, system_b, vote)` with vote in `VOTES`: "A" (system_a better), "B"
(system_b better), "tie", or "both_bad". For win rates and ratings a tie and a both_bad vote both count
as half a win for each side; `WinRate` still reports both_bad separately.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, permutation_test
from sklearn.metrics import cohen_kappa_score

VOTES = ("A", "B", "tie", "both_bad")
FLIPPED_VOTE = {"A": "B", "B": "A", "tie": "tie", "both_bad": "both_bad"}  # the vote with the sides swapped
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
class AnnotatorAgreement:
    """One annotator against the others: on the items where the other annotators' most frequent label is unique
    (`n_compared`), the share where this annotator picked it and Cohen's kappa of the two label lists."""

    annotator: str
    n_votes: int
    n_compared: int
    agreement: float  # NaN when n_compared is 0
    kappa: float  # NaN when n_compared is 0 or chance agreement is 1


@dataclass(frozen=True)
class Agreement:
    """Fleiss' kappa over items with 2+ ratings, and each annotator's agreement with the others' majority
    (one row per annotator, by name: readable with many annotators, unlike every annotator pair)."""

    fleiss_kappa: float
    n_items: int
    annotators: list[AnnotatorAgreement]


def _as_values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what}: expected a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return array


def _batch(n: int) -> int:
    """Resamples per batch, so that a batch holds about `_MAX_CELLS_PER_CHUNK` values."""
    return max(1, _MAX_CELLS_PER_CHUNK // n)


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _mean_ci(values: np.ndarray, n_resamples: int, confidence: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy's `bootstrap`); one value gives the CI (value, value)."""
    if values.size == 1:  # every resample is the value itself; scipy asks for two or more
        return float(values[0]), float(values[0])
    result = bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        batch=_batch(values.size),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean of `values` with a percentile bootstrap CI (resampling values with replacement)."""
    array = _as_values(values, "bootstrap_ci")
    return Estimate(
        float(array.mean()), *_mean_ci(array, n_resamples, confidence, np.random.default_rng(seed)), n=array.size
    )


def summarise(rows: Iterable[Mapping[str, float]], n_resamples: int = 2000, seed: int = 0) -> dict[str, Estimate]:
    """Mean and bootstrap 95% CI of every metric named in `rows` (one mapping per query or trajectory), in order
    of first appearance; a metric missing from some rows is averaged over the rows that have it."""
    rows = list(rows)
    names = dict.fromkeys(name for row in rows for name in row)
    return {
        name: bootstrap_ci([row[name] for row in rows if name in row], n_resamples=n_resamples, seed=seed)
        for name in names
    }


def _absolute_mean(diff: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.abs(diff.mean(axis=axis))


def paired_test(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedTest:
    """Compare two systems scored on the same queries (same order).

    The mean difference a - b gets a paired bootstrap CI; the p-value comes from a sign-flip
    randomisation test (H0: the per-query differences are symmetric around 0; scipy's `permutation_test`
    of |mean|, exact over all 2^n sign patterns when there are no more than `n_resamples` of them).
    """
    a = _as_values(scores_a, "paired_test scores_a")
    b = _as_values(scores_b, "paired_test scores_b")
    if a.size != b.size:
        raise ValueError(
            f"paired_test: scores_a has {a.size} values but scores_b has {b.size}; both must score the same queries"
        )
    diff = a - b
    rng = np.random.default_rng(seed)
    ci_low, ci_high = _mean_ci(diff, n_resamples, confidence, rng)
    if diff.size == 1:  # both sign patterns give the same |mean|; scipy asks for two or more values
        p_value = 1.0
    else:
        p_value = permutation_test(
            (diff,),
            _absolute_mean,
            permutation_type="samples",
            vectorized=True,
            n_resamples=n_resamples,
            batch=_batch(diff.size),
            alternative="greater",
            rng=rng,
        ).pvalue
    return PairedTest(float(diff.mean()), ci_low, ci_high, float(p_value), n=diff.size)


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
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(VOTES, 0))
    for system_a, system_b, vote in _checked_votes(votes):
        if system_a > system_b:
            system_a, system_b, vote = system_b, system_a, FLIPPED_VOTE[vote]
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


def bradley_terry(
    votes: Iterable[tuple[str, str, str]],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    prior_ties: float = 1.0,
    seed: int = 0,
) -> list[Rating]:
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
        samples[row] = _elo(
            _fit_bradley_terry(_win_matrix(side_a[pick], side_b[pick], share_a[pick], len(systems)), prior_ties)
        )
    n_votes = {s: sum(s in (a, b) for a, b, _ in checked) for s in systems}
    results = [
        Rating(s, float(ratings[i]), *_percentile_ci(samples[:, i], confidence), n_votes=n_votes[s])
        for i, s in enumerate(systems)
    ]
    return sorted(results, key=lambda r: -r.rating)


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators' labels on the same items (same order; scikit-learn's).

    NaN when chance agreement is 1 (both annotators used one and the same label throughout).
    """
    if len(labels_a) != len(labels_b) or not labels_a:
        raise ValueError(
            f"cohen_kappa: need two equally long, non-empty label lists, got {len(labels_a)} and {len(labels_b)}"
        )
    if len(set(labels_a) | set(labels_b)) == 1:  # chance agreement is 1
        return float("nan")
    return float(cohen_kappa_score(list(labels_a), list(labels_b)))


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
    expected = float((shares**2).sum())
    return float("nan") if expected == 1.0 else float((per_item - expected) / (1.0 - expected))


def annotator_agreement(ratings: Iterable[tuple[Hashable, str, Hashable]]) -> Agreement:
    """Agreement from `(item, annotator, label)` rows; labels must be oriented the same way for everyone.

    Fleiss' kappa uses the items with two or more annotators; each annotator is compared with the majority
    label of the others on every item where that majority is unique. A repeated (item, annotator) row is an error.
    """
    by_item: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    for item, annotator, label in ratings:
        if annotator in by_item[item]:
            raise ValueError(f"annotator_agreement: annotator {annotator!r} rated item {item!r} twice")
        by_item[item][annotator] = label
    shared = [labels for labels in by_item.values() if len(labels) >= 2]
    fleiss = fleiss_kappa([list(labels.values()) for labels in shared]) if shared else float("nan")
    votes: Counter = Counter()
    compared: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))  # annotator -> (own, majority)
    for labels in by_item.values():
        counts = Counter(labels.values())
        for annotator, label in labels.items():
            votes[annotator] += 1
            top = (counts - Counter([label])).most_common(2)
            if top and (len(top) == 1 or top[0][1] > top[1][1]):
                compared[annotator][0].append(label)
                compared[annotator][1].append(top[0][0])
    rows = []
    for annotator in sorted(votes):
        own, majority = compared.get(annotator, ([], []))
        agreement = sum(a == b for a, b in zip(own, majority)) / len(own) if own else float("nan")
        kappa = cohen_kappa(own, majority) if own else float("nan")
        rows.append(AnnotatorAgreement(annotator, votes[annotator], len(own), agreement, kappa))
    return Agreement(fleiss, len(shared), rows)
