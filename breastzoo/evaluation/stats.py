"""Significance tests of paper 000 section F: Friedman test, then pairwise paired sign tests.

The paper compares methods over matched units (the same test patients or images scored by
every method): Friedman's test detects whether any method differs, and a post-hoc two-sided
paired sign test on each pair locates the differences. Here the sign test is an exact binomial
test on wins vs losses with ties dropped; p-values can be Holm-corrected for the number of
pairs (the paper does not say whether it corrected, so ``correction`` is a parameter).

Example:
    >>> scores = {"ours": [1.0, 0.9, 0.95, 1.0, 0.9, 0.97],
    ...           "resnet": [0.8, 0.7, 0.9, 0.85, 0.7, 0.8],
    ...           "vgg": [0.6, 0.65, 0.7, 0.6, 0.5, 0.7]}
    >>> compare_methods(scores)["best"]
    'ours'
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CORRECTIONS: tuple[str | None, ...] = ("holm", None)

__all__ = ["CORRECTIONS", "compare_methods", "holm_correction", "sign_test"]


def sign_test(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided paired sign test of ``a`` vs ``b`` (exact binomial, ties dropped).

    Args:
        a: scores of method A per unit.
        b: scores of method B on the same units.

    Returns:
        ``{"wins": A > B count, "losses": A < B count, "ties", "p_value"}``; ``p_value`` is 1.0
        when every pair ties (no evidence of a difference).

    Raises:
        ValueError: different lengths.

    Example:
        >>> sign_test([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0])["p_value"]
        0.03125
    """
    from scipy.stats import binomtest

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"Paired scores must have equal length. Received: {x.shape} vs {y.shape}")
    wins, losses = int(np.sum(x > y)), int(np.sum(x < y))
    ties = int(x.size - wins - losses)
    p = 1.0 if wins + losses == 0 else float(binomtest(wins, wins + losses, 0.5).pvalue)
    return {"wins": wins, "losses": losses, "ties": ties, "p_value": p}


def holm_correction(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (controls the family-wise error rate).

    Args:
        p_values: raw p-values.

    Returns:
        Adjusted p-values in the input order, each in ``[0, 1]``.

    Example:
        >>> holm_correction([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, (m - rank) * p[idx])
        adjusted[idx] = min(1.0, running)
    return [round(float(v), 12) for v in adjusted]


def compare_methods(
    per_unit_scores: Mapping[str, Sequence[float]],
    *,
    alpha: float = 0.05,
    correction: str | None = "holm",
) -> dict[str, Any]:
    """Friedman test across methods, then pairwise two-sided sign tests (paper 000, sec. IV-F).

    Higher scores are better (e.g. per-patient accuracy, or 1/0 per image for correct/wrong).

    Args:
        per_unit_scores: method name -> scores on the same matched units, in the same order.
        alpha: significance level used for the ``significant`` flags.
        correction: ``"holm"`` (default) or ``None`` for the pairwise p-values.

    Returns:
        Dict with ``methods``, ``n_units``, ``mean_scores``, ``mean_ranks`` (1 = best),
        ``best`` (lowest mean rank), ``friedman`` (``{"statistic", "p_value", "significant"}``
        or ``None``), ``friedman_reason`` (why it is ``None`` or degenerate, else ``None``) and
        ``pairwise`` (list of ``{"a", "b", "wins", "losses", "ties", "p_value", "p_adjusted",
        "significant", "better"}``).

    Raises:
        ValueError: fewer than 2 methods, unequal or empty score lists, non-finite scores, bad
            ``alpha`` or ``correction``.

    Example:
        >>> r = compare_methods({"a": [1, 1, 1], "b": [0, 0, 0]})
        >>> r["friedman"] is None, r["pairwise"][0]["wins"]
        (True, 3)
    """
    from scipy.stats import friedmanchisquare, rankdata

    if correction not in CORRECTIONS:
        raise ValueError(f"Unknown correction. Received: correction={correction!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1). Received: alpha={alpha}")
    methods = [str(m) for m in per_unit_scores]
    if len(methods) < 2:
        raise ValueError(f"Need at least 2 methods to compare. Received: methods={methods}")
    lengths = {m: len(v) for m, v in zip(methods, per_unit_scores.values(), strict=True)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Every method needs one score per matched unit. Received: {lengths}")
    scores = np.asarray([list(v) for v in per_unit_scores.values()], dtype=np.float64)
    if scores.shape[1] == 0:
        raise ValueError("Need at least one matched unit. Received: 0 scores per method")
    if not np.all(np.isfinite(scores)):
        raise ValueError("Scores must be finite. Received: NaN or inf in per_unit_scores")

    # Rank within each unit, best (highest score) = 1, ties share the average rank.
    ranks = np.vstack([rankdata(-scores[:, j]) for j in range(scores.shape[1])]).T
    mean_ranks = ranks.mean(axis=1)

    friedman: dict[str, Any] | None = None
    reason: str | None = None
    if len(methods) < 3:
        reason = f"Friedman's test needs at least 3 methods; got {len(methods)}."
    elif np.all(scores == scores[:, :1]):
        # Every unit gives all methods the same score: no evidence of any difference (scipy
        # would divide by zero here).
        friedman = {"statistic": 0.0, "p_value": 1.0, "significant": False}
        reason = "All scores tie within every unit."
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stat, p = friedmanchisquare(*scores)
        stat, p = float(stat), float(p)
        if not math.isfinite(p):
            friedman = {"statistic": 0.0, "p_value": 1.0, "significant": False}
            reason = "Friedman statistic undefined (ties); treated as no difference."
        else:
            friedman = {"statistic": stat, "p_value": p, "significant": p < alpha}

    pairs = list(itertools.combinations(range(len(methods)), 2))
    tests = [sign_test(scores[i], scores[j]) for i, j in pairs]
    raw = [t["p_value"] for t in tests]
    adjusted = holm_correction(raw) if correction == "holm" else raw
    pairwise = []
    for (i, j), t, p_adj in zip(pairs, tests, adjusted, strict=True):
        better = None
        if t["wins"] != t["losses"]:
            better = methods[i] if t["wins"] > t["losses"] else methods[j]
        pairwise.append(
            {
                "a": methods[i],
                "b": methods[j],
                **t,
                "p_adjusted": float(p_adj),
                "significant": bool(p_adj < alpha),
                "better": better,
            }
        )

    return {
        "methods": methods,
        "n_units": int(scores.shape[1]),
        "alpha": alpha,
        "correction": correction,
        "mean_scores": {m: float(s) for m, s in zip(methods, scores.mean(axis=1), strict=True)},
        "mean_ranks": {m: float(r) for m, r in zip(methods, mean_ranks, strict=True)},
        "best": methods[int(np.argmin(mean_ranks))],
        "friedman": friedman,
        "friedman_reason": reason,
        "pairwise": pairwise,
    }
