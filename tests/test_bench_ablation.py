"""bench/ablation.py: merging data seeds run separately, and issue 12's target checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "bench_ablation", Path(__file__).resolve().parents[1] / "bench" / "ablation.py")
ablation = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ablation)


def _report(seeds, values, command="run"):
    """A report with models -> per-seed balanced accuracy / ROI hit rate."""
    models = {m: {str(s): {"balanced_accuracy": b[i], "roi_hit_rate": h[i], "irr": b[i],
                           "prr": b[i]} for i, s in enumerate(seeds)}
              for m, (b, h) in values.items()}
    return {"size": "demo", "config": "demo", "budget": {"epochs": 6}, "reward": "per_glimpse",
            "overrides": [], "seeds": list(seeds), "models": models, "command": command,
            "seed_wall_seconds": {str(s): 60.0 for s in seeds}}


def test_merge_combines_seeds_and_checks_targets():
    a = _report([0], {"oracle_roi": ([0.6], [1.0]), "sanet_resize": ([0.2], [None]),
                      "denet_sanet": ([0.1], [0.1]), "random_roi": ([0.1], [0.1])})
    b = _report([1, 2], {"oracle_roi": ([0.5, 0.7], [1.0, 1.0]),
                         "sanet_resize": ([0.4, 0.2], [None, None]),
                         "denet_sanet": ([0.2, 0.3], [0.3, 0.2]),
                         "random_roi": ([0.1, 0.1], [0.1, 0.1])})
    merged = ablation.merge_reports([a, b])
    assert merged["seeds"] == [0, 1, 2]
    assert merged["summary"]["oracle_roi"]["balanced_accuracy"]["median"] == pytest.approx(0.6)
    checks = {c["target"]: c for c in ablation.target_checks(merged)}
    gap = checks["oracle_roi - sanet_resize >= 0.20"]
    assert gap["values"] == pytest.approx([0.4, 0.1, 0.5]) and gap["met"]
    ratio = checks["ROI hit denet_sanet / random_roi >= 2"]
    assert ratio["median"] == pytest.approx(2.0) and ratio["met"]
    assert not checks["denet_sanet - sanet_resize >= 0.10"]["met"]
    assert "issue 12 targets" in ablation.format_report(
        {**merged, "models": {m: {s: {**r, "prediction_counts": {}, "train_seconds": 1.0}
                                  for s, r in rows.items()}
                              for m, rows in merged["models"].items()}})


def test_merge_refuses_different_budgets_and_missing_seeds():
    a = _report([0], {"oracle_roi": ([0.6], [1.0])})
    with pytest.raises(ValueError, match="budget"):
        ablation.merge_reports([a, {**_report([1], {"oracle_roi": ([0.5], [1.0])}),
                                    "budget": {"epochs": 15}}])
    with pytest.raises(ValueError, match="Missing"):
        ablation.merge_reports([a, _report([1], {"sanet_resize": ([0.5], [None])})])
