"""bench/prune.py: merging reports of separate data seeds, and the texture anchor row."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from breastzoo.data.records import ImageRecord

_SPEC = importlib.util.spec_from_file_location(
    "bench_prune", Path(__file__).resolve().parents[1] / "bench" / "prune.py")
prune = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(prune)

SETTINGS = {"data": "testbed", "size": 160, "epochs": 8}


def _row(variant, ba, counts=(5, 5)):
    return {"variant": variant, "balanced_accuracy": ba, "accuracy": ba,
            "prediction_counts": list(counts), "label_counts": [5, 5]}


def _write(path: Path, replicates: dict, settings=SETTINGS) -> Path:
    path.write_text(json.dumps({"command": "python bench/prune.py x", "settings": settings,
                                "replicates": replicates, "latency": [{"ratio": "0"}]}))
    return path


def test_merge_pairs_each_variant_with_the_reference_of_its_own_seed(tmp_path):
    a = _write(tmp_path / "a.json", {"seed0": [
        _row("majority", 0.5, (10, 0)), _row("unpruned+retrain", 0.8),
        _row("sep/restart+kd", 0.7)]})
    b = _write(tmp_path / "b.json", {"seed1": [
        _row("majority", 0.5, (0, 10)), _row("unpruned+retrain", 0.6),
        _row("sep/restart+kd", 0.7)]})
    out = tmp_path / "all.json"
    report = prune.main(["--merge", str(a), str(b), "--json", str(out)])
    assert json.loads(out.read_text())["summary"] == report["summary"]
    assert sorted(report["replicates"]) == ["seed0", "seed1"]
    kd = report["summary"]["sep/restart+kd"]
    assert kd["balanced_accuracy"]["mean"] == pytest.approx(0.7)
    # paired: -10 on seed 0, +10 on seed 1 -> mean 0, SE 10
    assert kd["delta_vs_reference_points"]["mean"] == pytest.approx(0.0)
    assert kd["delta_vs_reference_points"]["se"] == pytest.approx(10.0)
    assert report["summary"]["majority"]["prediction_counts"] == [10, 10]
    assert report["latency"] == [{"ratio": "0"}]


def test_merge_refuses_other_settings_and_a_replicate_twice(tmp_path):
    a = _write(tmp_path / "a.json", {"seed0": [_row("unpruned+retrain", 0.8)]})
    other = _write(tmp_path / "o.json", {"seed1": [_row("unpruned+retrain", 0.8)]},
                   settings={**SETTINGS, "epochs": 4})
    with pytest.raises(SystemExit, match="other settings"):
        prune.merge([a, other])
    again = _write(tmp_path / "b.json", {"seed0": [_row("unpruned+retrain", 0.8)]})
    with pytest.raises(SystemExit, match="seed0"):
        prune.merge([a, again])


def test_merge_needs_an_output(tmp_path):
    a = _write(tmp_path / "a.json", {"seed0": [_row("unpruned+retrain", 0.8)]})
    with pytest.raises(SystemExit):
        prune.main(["--merge", str(a)])


def test_texture_anchor_is_added_once_after_the_majority_row(monkeypatch, tmp_path):
    calls = []

    def fake(train, test, names, cache):
        calls.append((train, test))
        return _row("texture", 0.6)

    monkeypatch.setattr(prune, "texture_row", fake)
    rows = [_row("majority", 0.5), _row("unpruned", 0.7)]
    out = prune.with_texture(rows, (["tr"], ["te"]), ["benign", "malignant"], tmp_path)
    assert [r["variant"] for r in out] == ["majority", "texture", "unpruned"]
    assert calls == [(["tr"], ["te"])]
    assert prune.with_texture(out, (["tr"], ["te"]), ["b", "m"], tmp_path) is out
    assert len(calls) == 1


def test_texture_row_scores_the_test_records(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    records = []
    for i in range(16):
        label = "malignant" if i % 2 else "benign"
        # malignant: dark purple and busy; benign: pale pink and smooth
        base = (np.array([90, 40, 120]) if i % 2 else np.array([230, 180, 200]))
        noise = rng.normal(0, 40 if i % 2 else 5, (48, 64, 3))
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path)
        records.append(ImageRecord(path=str(path), patient=f"p{i}", label=label,
                                   subtype=label, magnification="100X", dataset="folder"))
    row = prune.texture_row(records[:12], records[12:], ["benign", "malignant"],
                            tmp_path / "cache")
    assert row["variant"] == "texture"
    assert row["label_counts"] == [2, 2]
    assert sum(row["prediction_counts"]) == 4
    assert row["balanced_accuracy"] == pytest.approx(1.0)


def test_no_latency_keeps_the_previous_rows_through_a_rerun(monkeypatch, tmp_path):
    """A rerun that adds the texture anchor to an old replicate rewrites the report; with
    --no-latency it keeps the timed rows it was given instead of re-timing."""
    out = tmp_path / "r.json"
    settings = {"data": "testbed", "size": 224, "epochs": 10, "retrain_epochs": 6,
                "steps": None, "batch": 16, "lr": 1e-3, "retrain_lr": 3e-4, "ratio": 0.5,
                "sparsity": 0.5, "alpha": 0.5, "temperature": 2.0}
    rows = [_row("majority", 0.5), _row("unpruned+retrain", 0.8)]
    timed = [{"ratio": "0", "latency_x": 1.0}, {"ratio": "0.5", "latency_x": 0.8}]
    out.write_text(json.dumps({"settings": settings, "replicates": {"seed0": rows},
                               "summary": prune.summarise({"seed0": rows}),
                               "latency": timed}))
    monkeypatch.setattr(prune, "replicates", lambda args: iter(
        [("seed0", "split seed 0", None, ["benign", "malignant"], [], ([], []))]))
    monkeypatch.setattr(prune, "texture_row", lambda *a: _row("texture", 0.7))

    def no_timing(*args, **kwargs):
        raise AssertionError("--no-latency timed the models")

    monkeypatch.setattr(prune, "latency", no_timing)
    report = prune.main(["--data", "testbed", "--seeds", "0", "--json", str(out),
                         "--no-latency"])
    assert report["latency"] == timed
    assert json.loads(out.read_text())["latency"] == timed
    assert [r["variant"] for r in report["replicates"]["seed0"]] == [
        "majority", "texture", "unpruned+retrain"]
    assert report["summary"]["texture"]["balanced_accuracy"]["mean"] == pytest.approx(0.7)
