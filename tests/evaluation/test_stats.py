"""Friedman + pairwise sign tests (paper 000, section IV-F)."""

from __future__ import annotations

import numpy as np
import pytest

from breastzoo.evaluation.stats import compare_methods, holm_correction, sign_test


def constructed_scores(n_units=20, seed=0):
    # "ours" beats "resnet" on every unit, which beats "vgg" on every unit.
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 0.7, n_units)
    return {
        "ours": (base + 0.25).tolist(),
        "resnet": (base + 0.1).tolist(),
        "vgg": base.tolist(),
    }


def test_known_winner_is_significant():
    result = compare_methods(constructed_scores())
    assert result["best"] == "ours"
    assert result["mean_ranks"] == {"ours": 1.0, "resnet": 2.0, "vgg": 3.0}
    assert result["friedman"]["significant"]
    # Friedman statistic with perfectly consistent ranks: n * (k - 1) = 20 * 2 = 40.
    assert result["friedman"]["statistic"] == pytest.approx(40.0)
    pair = next(p for p in result["pairwise"] if {p["a"], p["b"]} == {"ours", "vgg"})
    assert pair["better"] == "ours"
    assert (pair["wins"], pair["losses"], pair["ties"]) == (20, 0, 0)
    assert pair["p_value"] == pytest.approx(2 * 0.5**20)
    assert pair["significant"]


def test_sign_test_drops_ties_and_holm_adjusts():
    r = sign_test([1, 1, 1, 1, 1, 1, 0.5], [0, 0, 0, 0, 0, 0, 0.5])
    assert (r["wins"], r["losses"], r["ties"]) == (6, 0, 1)
    assert r["p_value"] == pytest.approx(2 * 0.5**6)
    assert holm_correction([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    result = compare_methods(constructed_scores(n_units=6), correction="holm")
    raw = [p["p_value"] for p in result["pairwise"]]
    adjusted = [p["p_adjusted"] for p in result["pairwise"]]
    assert all(a >= r for a, r in zip(adjusted, raw, strict=True))
    none = compare_methods(constructed_scores(n_units=6), correction=None)
    assert [p["p_adjusted"] for p in none["pairwise"]] == [p["p_value"] for p in none["pairwise"]]


def test_two_methods_skip_friedman_with_reason():
    result = compare_methods({"a": [1.0, 1.0, 0.9], "b": [0.5, 0.6, 0.9]})
    assert result["friedman"] is None
    assert "at least 3" in result["friedman_reason"]
    assert result["pairwise"][0]["wins"] == 2 and result["pairwise"][0]["ties"] == 1


def test_all_ties():
    result = compare_methods({m: [0.8, 0.9, 1.0] for m in ("a", "b", "c")})
    assert result["friedman"] == {"statistic": 0.0, "p_value": 1.0, "significant": False}
    assert "tie" in result["friedman_reason"]
    for pair in result["pairwise"]:
        assert pair["p_value"] == 1.0 and pair["better"] is None and not pair["significant"]


@pytest.mark.parametrize(
    "scores, kwargs, match",
    [
        ({"a": [1.0]}, {}, "at least 2 methods"),
        ({"a": [1.0, 2.0], "b": [1.0]}, {}, "one score per matched unit"),
        ({"a": [], "b": []}, {}, "at least one matched unit"),
        ({"a": [np.nan], "b": [1.0]}, {}, "finite"),
        ({"a": [1.0], "b": [0.0]}, {"correction": "bonferroni"}, "correction='bonferroni'"),
        ({"a": [1.0], "b": [0.0]}, {"alpha": 1.5}, "alpha=1.5"),
    ],
)
def test_bad_input(scores, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare_methods(scores, **kwargs)
