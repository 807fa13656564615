"""bench/real.py's bagging rows: model names and the paired comparison (pure helpers, no
training)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real():
    spec = importlib.util.spec_from_file_location("bench_real", ROOT / "bench" / "real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bagging_model_names(real):
    assert real.bagging_of("hybrid_bag5_max") == (5, "max")
    assert real.bagging_of("hybrid_bag12_sum") == (12, "sum")
    assert real.bagging_of("hybrid") is None
    assert real.model_name("hybrid_bag2_sum") == "hybrid_bag2_sum"
    assert real.model_name("texture") == "texture"
    for bad in ("hybrid_bag1_sum", "hybrid_bag5_mean", "hybrid_bag5", "resnet"):
        with pytest.raises(argparse.ArgumentTypeError):
            real.model_name(bad)


def _row(seed, fold, model, bal, seconds, params):
    return {"seed": seed, "fold": fold, "model": model, "balanced_accuracy": bal,
            "seconds": seconds, "params": params}


def test_paired_comparison(real):
    rows = [
        _row(0, 0, "hybrid", 0.50, 100.0, 1000), _row(0, 0, "hybrid_bag5_sum", 0.60, 480, 5000),
        _row(0, 1, "hybrid", 0.70, 100.0, 1000), _row(0, 1, "hybrid_bag5_sum", 0.70, 520, 5000),
        _row(1, 0, "hybrid", 0.60, 100.0, 1000), _row(1, 0, "hybrid_bag5_sum", 0.80, 500, 5000),
        # No single hybrid on this fold: not paired.
        _row(1, 1, "hybrid_bag5_sum", 0.10, 500, 5000),
    ]
    c = real.paired_comparison(rows, "hybrid_bag5_sum", "hybrid")
    assert c["n"] == 3
    assert c["diffs"] == pytest.approx([0.1, 0.0, 0.2])
    assert c["mean"] == pytest.approx(0.1)
    assert c["se"] == pytest.approx(0.1 / 3 ** 0.5)  # stdev 0.1 over 3 pairs
    assert c["time_ratio"] == pytest.approx(5.0)
    assert c["params_ratio"] == pytest.approx(5.0)
    assert real.paired_comparison(rows, "hybrid_bag5_max", "hybrid") is None
    one = real.paired_comparison(rows[:2], "hybrid_bag5_sum", "hybrid")
    assert one["n"] == 1 and one["se"] is None


def test_markdown_reports_bagging(real):
    names = ["benign", "malignant"]
    counts = {"benign": 1, "malignant": 1}
    per_run = [
        {**_row(0, 0, "hybrid", 0.5, 100.0, 1000), "prediction_counts": counts,
         "label_counts": counts, "irr": 0.5, "prr": 0.5, "auc": 0.5},
        {**_row(0, 0, "hybrid_bag5_sum", 0.75, 500.0, 5000), "prediction_counts": counts,
         "label_counts": counts, "irr": 0.5, "prr": 0.5, "auc": 0.5, "run_dir": "x"},
    ]
    report = {
        "class_names": names, "magnification": "100X", "n_images": 2, "n_patient_groups": 2,
        "folds": 1, "seeds": [0], "mode": "quick", "config": "real", "set": [],
        "command": "python bench/real.py", "train_minutes_sum": 10.0, "cores": 2,
        "date": "2025-01-01", "wall_minutes": 10.0, "runs": per_run,
        "summary": {m: real.summarise([r for r in per_run if r["model"] == m], names)
                    for m in ("hybrid", "hybrid_bag5_sum")},
        "paired": {"hybrid_bag5_sum": real.paired_comparison(per_run, "hybrid_bag5_sum")},
    }
    text = real.markdown(report)
    assert "| hybrid_bag5_sum | 0.750 ± 0.000 |" in text
    assert "+0.250 ± n/a" in text
    assert "5.0x the training time, 5.0x the parameters (5,000 parameters)" in text
