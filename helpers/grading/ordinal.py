"""Ordinal decoding, kappa-optimised thresholds and the balanced sampler's weights (numpy only).

Every head's raw output is turned into the same two things: a grade per image (int [N], 0..K-1)
and per-grade scores (float [N, K], each row sums to 1; the QC's referable ROC uses
``sum(scores[:, threshold:])``):

* ``softmax``: scores = the probabilities, grade = argmax.
* ``cumulative`` (CORAL, Cao et al. 2020): outputs P(grade > k) for k = 0..K-2; grade = the
  number of them above 0.5; scores = differences of consecutive cumulative probabilities.
* ``regression``: one number per image; grade = the number of decision thresholds t_0 < ... <
  t_{K-2} below it (default thresholds 0.5, 1.5, ...); scores from soft thresholds
  P(grade > k) = sigmoid((value - t_k) / REGRESSION_SOFTNESS), so the referable score ranks images
  exactly as the regression value does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Width (in grades) of the soft step that turns a regression value into per-grade scores.
REGRESSION_SOFTNESS = 0.25
# Coordinate search: candidate offsets around each threshold (grades) and passes over all thresholds.
SEARCH_OFFSETS = np.linspace(-0.5, 0.5, 41)
SEARCH_PASSES = 3


def quadratic_kappa(truth: Sequence[int], predicted: Sequence[int], num_grades: int) -> float:
    """scikit-learn's quadratic weighted kappa over grades 0..K-1 (NaN when undefined)."""
    from sklearn import metrics

    truth, predicted = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    if len(truth) == 0:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = metrics.cohen_kappa_score(truth, predicted, labels=list(range(num_grades)), weights="quadratic")
    return float(value)


def search_kappa(truth: np.ndarray, predicted: np.ndarray, num_grades: int) -> float:
    """Quadratic weighted kappa from its definition with numpy (NaN when undefined).

    Used only inside the threshold search, which evaluates it hundreds of times (scikit-learn's
    ``cohen_kappa_score`` is about 20× slower per call); reported figures come from scikit-learn,
    and a test checks that the two agree.
    """
    observed = np.bincount(truth * num_grades + predicted, minlength=num_grades * num_grades).reshape(
        num_grades, num_grades).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1.0)
    weights = np.subtract.outer(np.arange(num_grades), np.arange(num_grades)) ** 2
    disagreement_expected = float((weights * expected).sum())
    return 1.0 - float((weights * observed).sum()) / disagreement_expected if disagreement_expected else float("nan")


def default_thresholds(num_grades: int) -> np.ndarray:
    """float [K-1]: 0.5, 1.5, ..., K-1.5 (rounding the regression value to the nearest grade)."""
    return np.arange(num_grades - 1, dtype=np.float64) + 0.5


def regression_grades(values: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """int [N]: how many (sorted) thresholds each value exceeds."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return np.searchsorted(np.sort(np.asarray(thresholds, dtype=np.float64)), values, side="right").astype(int)


def cumulative_to_scores(cumulative: np.ndarray) -> np.ndarray:
    """float [N, K] per-grade scores from P(grade > k), float [N, K-1].

    P(grade = k) = P(grade > k-1) - P(grade > k) with P(grade > -1) = 1 and P(grade > K-1) = 0;
    negative differences (cumulative probabilities that rise again) are clipped to 0 and each row
    renormalised.
    """
    cumulative = np.asarray(cumulative, dtype=np.float64)
    count = cumulative.shape[0]
    bounded = np.concatenate([np.ones((count, 1)), cumulative, np.zeros((count, 1))], axis=1)
    scores = np.clip(bounded[:, :-1] - bounded[:, 1:], 0.0, None)
    return scores / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)


def cumulative_grades(cumulative: np.ndarray) -> np.ndarray:
    """int [N]: CORAL decoding, the number of P(grade > k) above 0.5."""
    return (np.asarray(cumulative) > 0.5).sum(axis=1).astype(int)


def regression_scores(values: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """float [N, K] per-grade scores of regression values through soft thresholds (module docstring)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    thresholds = np.sort(np.asarray(thresholds, dtype=np.float64)).reshape(1, -1)
    cumulative = 1.0 / (1.0 + np.exp(-(values - thresholds) / REGRESSION_SOFTNESS))
    return cumulative_to_scores(cumulative)


def decode(head: str, outputs: np.ndarray, num_grades: int,
           thresholds: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(grades int [N], scores float [N, K]) from a head's raw outputs.

    Args:
        head: "softmax" (outputs [N, K]), "cumulative" (outputs [N, K-1]) or "regression" (outputs [N, 1]).
        thresholds: regression only; the default thresholds when None.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if head == "softmax":
        return outputs.argmax(axis=1).astype(int), outputs / np.maximum(outputs.sum(axis=1, keepdims=True), 1e-12)
    if head == "cumulative":
        return cumulative_grades(outputs), cumulative_to_scores(outputs)
    thresholds = default_thresholds(num_grades) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return regression_grades(outputs, thresholds), regression_scores(outputs, thresholds)


def optimise_thresholds(values: np.ndarray, truth: Sequence[int], num_grades: int,
                        initial: Sequence[float] | None = None) -> np.ndarray:
    """Decision thresholds float [K-1] that maximise the quadratic kappa of ``values`` against ``truth``.

    Coordinate search (as the Kaggle diabetic-retinopathy solutions did): for each threshold in
    turn, try ``SEARCH_OFFSETS`` around it, keep the best position that stays between its
    neighbours, and repeat ``SEARCH_PASSES`` times. Starts from ``initial`` (default 0.5, 1.5, ...);
    the result never scores below the start on these values.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=int)
    thresholds = default_thresholds(num_grades) if initial is None else np.sort(np.asarray(initial, dtype=np.float64))
    best = search_kappa(truth, regression_grades(values, thresholds), num_grades)
    if not np.isfinite(best):
        return thresholds
    for _ in range(SEARCH_PASSES):
        for index in range(num_grades - 1):
            low = thresholds[index - 1] if index > 0 else -np.inf
            high = thresholds[index + 1] if index < num_grades - 2 else np.inf
            for offset in SEARCH_OFFSETS:
                candidate = thresholds[index] + offset
                if not low < candidate < high:
                    continue
                trial = thresholds.copy()
                trial[index] = candidate
                score = search_kappa(truth, regression_grades(values, trial), num_grades)
                if score > best + 1e-12:
                    best, thresholds = score, trial
    return thresholds


def sampling_shares(multipliers: Sequence[float], present: Sequence[bool] | None = None) -> np.ndarray:
    """float [K]: probability that the balanced sampler draws each grade (multipliers normalised).

    Grades without training images (``present`` False) get 0 and the others share their mass.
    """
    shares = np.asarray(multipliers, dtype=np.float64).copy()
    if present is not None:
        shares[~np.asarray(present, dtype=bool)] = 0.0
    return shares / shares.sum()


def image_sampling_probabilities(grades: Sequence[int], multipliers: Sequence[float]) -> np.ndarray:
    """float [N]: per image, the chance of being drawn: share of its grade / images of that grade.

    This is the balanced sampler with per-grade multipliers: every grade is drawn in proportion to
    its multiplier whatever its size (equally when all multipliers are 1), uniformly within it.
    """
    grades = np.asarray(grades, dtype=int)
    counts = np.bincount(grades, minlength=len(multipliers))
    shares = sampling_shares(multipliers, counts > 0)
    return shares[grades] / counts[grades]
