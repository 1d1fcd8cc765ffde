"""Significance of the difference between two models: across seeds and on test predictions.

Three tests, each from the field's libraries:

- ``paired_t_test``: a paired t-test of a test metric across seeds (``scipy.stats.ttest_rel``);
  Yao & Mihalcea (2022) report one for Dynamic against the global rate on MuSE.
- ``mcnemar_test``: McNemar's test on the two models' per-item correctness on the test split
  (statsmodels; exact binomial form when fewer than 25 items are discordant).
- ``bootstrap_difference``: a percentile bootstrap confidence interval of the metric
  difference, resampling test items with replacement (``scipy.stats.bootstrap``). The
  metric is averaged over seeds inside each resample, so one interval uses every seed.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

Metric = Callable[[np.ndarray, np.ndarray], float]
# Below this many discordant items the chi-square approximation is poor, so the exact test is used.
EXACT_MCNEMAR_BELOW = 25


def paired_t_test(scores_a: Sequence[float], scores_b: Sequence[float]) -> dict[str, float]:
    """Return the mean difference (a - b), t statistic and two-sided p-value over paired seeds.

    With fewer than two seeds, or identical differences, the statistic and p-value are NaN.
    """
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two 1-D arrays of equal length, got shapes {a.shape} and {b.shape}")
    result = {"n": int(len(a)), "mean_difference": float(np.mean(a - b)) if len(a) else float("nan"),
              "t_statistic": float("nan"), "p_value": float("nan")}
    difference = a - b
    if len(a) >= 2 and np.ptp(difference) > 0:
        test = stats.ttest_rel(a, b)
        result["t_statistic"] = float(test.statistic)
        result["p_value"] = float(test.pvalue)
    return result


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Return the discordant counts and McNemar's p-value for two boolean correctness arrays.

    ``a_only`` counts items only model a gets right, ``b_only`` items only b gets right.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"correctness arrays differ in length: {a.shape} and {b.shape}")
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    table = [[int(np.sum(a & b)), a_only], [b_only, int(np.sum(~a & ~b))]]
    exact = a_only + b_only < EXACT_MCNEMAR_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    return {"a_only": a_only, "b_only": b_only, "exact": exact,
            "statistic": float(result.statistic), "p_value": float(result.pvalue)}


def bootstrap_difference(
    y_true: np.ndarray,
    predictions_a: Sequence[np.ndarray],
    predictions_b: Sequence[np.ndarray],
    metric: Metric,
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Return the observed metric difference (a - b) and its percentile bootstrap interval.

    ``predictions_a`` and ``predictions_b`` hold one prediction array per seed, aligned with
    ``y_true`` (rows may be label vectors for a multi-label task). Each resample draws test
    items with replacement and averages ``metric(y_true, predictions)`` over seeds.
    """
    y_true = np.asarray(y_true)
    predictions_a = [np.asarray(p) for p in predictions_a]
    predictions_b = [np.asarray(p) for p in predictions_b]
    if not predictions_a or len(predictions_a) != len(predictions_b):
        raise ValueError("give the same positive number of seeds for both models")
    if any(len(p) != len(y_true) for p in predictions_a + predictions_b):
        raise ValueError(f"every prediction array needs {len(y_true)} rows, one per test item")

    def difference(index: np.ndarray) -> float:
        truth = y_true[index]
        score_a = np.mean([metric(truth, p[index]) for p in predictions_a])
        score_b = np.mean([metric(truth, p[index]) for p in predictions_b])
        return float(score_a - score_b)

    items = np.arange(len(y_true))
    observed = difference(items)
    result = stats.bootstrap(
        (items,), difference, n_resamples=n_resamples, confidence_level=confidence_level,
        method="percentile", vectorized=False, rng=np.random.default_rng(seed),
    )
    return {"difference": observed, "low": float(result.confidence_interval.low),
            "high": float(result.confidence_interval.high), "confidence_level": confidence_level,
            "n_resamples": n_resamples}
