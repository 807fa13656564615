"""`breastzoo fit --model hybrid` (BreaKHis and BACH) and `--bagging N` end to end, tiny sizes.

Training runs eagerly here (``tf.config.run_functions_eagerly``): tracing the two Inception-SEP
branches' training graph costs about a minute of CPU, far more than the few tiny steps these
tests take. The traced path is covered by the slow test in tests/models/test_hybrid.py.
"""

from __future__ import annotations

import json
import warnings

import keras
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from breastzoo import training
from breastzoo.cli import app
from breastzoo.configs import preset
from breastzoo.io import read_json
from tests.data.trees import make_bach

runner = CliRunner()
RUN_FILES = ("config.json", "history.json", "metrics.json", "predictions.json", "model.keras",
             "confusion_matrix.png", "roc.png", "history.png")


@pytest.fixture
def eager():
    tf.config.run_functions_eagerly(True)
    with warnings.catch_warnings():
        # tf.data maps stay graphs; TF says so once per map function.
        warnings.filterwarnings("ignore", message="Even though the `tf.config.experimental_run")
        yield
    tf.config.run_functions_eagerly(False)


def _crash_after_first_epoch(monkeypatch, where: str = "") -> list[str]:
    """Make the first epoch-end in a run folder whose path contains ``where`` raise
    KeyboardInterrupt (as Ctrl-C would), once; return the log of finished epochs."""
    original = training.HistoryWriter.on_epoch_end
    seen: list[str] = []

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        seen.append(f"{self.path.parent.name}:{epoch}")
        if where in str(self.path) and not any(s.startswith("crashed") for s in seen):
            seen.append("crashed")
            raise KeyboardInterrupt

    monkeypatch.setattr(training.HistoryWriter, "on_epoch_end", on_epoch_end)
    return seen


@pytest.mark.slow  # 70 s on 2 cores
def test_fit_breakhis_hybrid_resumes_and_writes_a_run_folder(tiny_testbed, tmp_path,
                                                             monkeypatch, eager):
    out = tmp_path / "hybrid"
    cfg = preset("tiny", "hybrid").replace(task="binary", epochs=2)
    seen = _crash_after_first_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        training.fit("breakhis", data=str(tiny_testbed), mag="200", config=cfg, preset="tiny",
                     out=out, verbose=0, log=lambda m: None)
    assert (out / "backup").exists() and not (out / "model.keras").exists()

    # The same run from the command line picks up at epoch 1.
    result = runner.invoke(app, ["fit", "breakhis", "--model", "hybrid", "--mag", "200",
                                 "--task", "binary", "--data", str(tiny_testbed),
                                 "--config", "tiny", "--epochs", "2", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert seen == ["hybrid:0", "crashed", "hybrid:1"]
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["model"] == "hybrid" and metrics["class_names"] == ["benign", "malignant"]
    assert 0.0 <= metrics["irr"] <= 1.0 and 0.0 <= metrics["prr"] <= 1.0
    assert metrics["roi_hit_rate"] is None  # a whole-image model: its grid tiles the image
    assert metrics["mean_rois"] == 6  # the tiny preset's 3x2 patch grid
    for name in RUN_FILES:
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "overlays").glob("*.png"))) == 4
    assert not (out / "backup").exists()
    history = read_json(out / "history.json")["epochs"]
    assert [e["epoch"] for e in history] == [0, 1]
    assert {"global_loss", "local_loss", "val_accuracy", "val_global_loss"} <= set(history[0])
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert type(model).__name__ == "Hybrid" and model.magnification == "200X"
    assert model.grid == (3, 2) and model.patch_size == 32

    again = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["irr"] == pytest.approx(metrics["irr"])


@pytest.mark.slow  # 27-46 s
def test_fit_bach_hybrid_end_to_end(tmp_path, eager):
    make_bach(tmp_path / "data", per_class=4)  # 16 TIFF photos, one "patient" each
    out = tmp_path / "bach"
    result = runner.invoke(app, ["fit", "bach", "--model", "hybrid", "--task", "binary",
                                 "--data", str(tmp_path / "data"), "--config", "tiny",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["class_names"] == ["benign", "malignant"]
    assert metrics["n_images"] == metrics["n_patients"] > 0
    for name in RUN_FILES:
        assert (out / name).stat().st_size > 0, name
    manifest = read_json(out / "config.json")
    assert manifest["data"]["dataset"] == "bach" and manifest["config"]["model"] == "hybrid"
    assert manifest["config"]["image_size"] == [140, 92]  # an explicit (preset) size is kept


def test_hybrid_takes_bach_photos_at_their_native_size():
    cfg = preset("demo", "hybrid")
    assert training.for_dataset(cfg, "bach").image_size == (2048, 1536)
    assert training.for_dataset(cfg, "breakhis").image_size == (700, 460)
    assert training.for_dataset(preset("demo"), "bach").image_size == (700, 460)  # DeNet


def test_paper_preset_uses_paper_002_optimiser_for_the_hybrid():
    cfg = preset("paper", "hybrid")
    assert (cfg.optimizer, cfg.sanet_lr, cfg.momentum, cfg.weight_decay, cfg.batch_size,
            cfg.lr_decay_steps, cfg.augment, cfg.grid, cfg.branch_size) == (
        "sgd", 4e-4, 0.9, 0.009, 10, 10_000, "zhu2019", (5, 3), 224)
    assert preset("paper", "denet_sanet").optimizer == "adam"  # paper 000 untouched


# ---------------------------------------------------------------- bagging


def test_bagging_folds_are_disjoint_and_never_touch_test_patients(tiny_testbed):
    prepared = training.prepare_data("breakhis", str(tiny_testbed), "100", "subtype", seed=0)
    folds = training.bagging_folds(prepared, k=3, seed=0)
    pool = set(prepared.split.train) | set(prepared.split.val)
    assert sorted(p for f in folds for p in f) == sorted(pool)  # a partition of the pool
    assert all(f for f in folds)
    for i, fold in enumerate(folds):
        split = training.member_split(prepared.split, folds, i)
        assert set(split.val) == set(fold)
        assert set(split.train) == pool - set(fold)
        assert split.test == prepared.split.test
        assert set(split.test).isdisjoint(set(split.train) | set(split.val))
    overlapping = [folds[0], folds[1] + folds[0][:1], folds[2]]
    with pytest.raises(ValueError, match="leak"):
        training.member_split(prepared.split, overlapping, 1)


@pytest.mark.slow  # 27-46 s
def test_bagging_run_is_one_ensemble_and_resumes_inside_a_member(tiny_testbed, tmp_path,
                                                                 monkeypatch, eager):
    out = tmp_path / "bag"
    cfg = preset("tiny", "sanet_resize").replace(bagging=3, vote="max")
    seen = _crash_after_first_epoch(monkeypatch, where="member-1")
    with pytest.raises(KeyboardInterrupt):
        training.fit("breakhis", data=str(tiny_testbed), mag="100", config=cfg, preset="tiny",
                     out=out, verbose=0, log=lambda m: None)
    assert (out / "member-0" / "model.keras").exists()
    assert not (out / "member-1" / "model.keras").exists()
    finished = (out / "member-0" / "model.keras").stat().st_mtime_ns

    result = runner.invoke(app, ["fit", "breakhis", "--model", "sanet_resize", "--mag", "100",
                                 "--data", str(tiny_testbed), "--config", "tiny",
                                 "--bagging", "3", "--vote", "max", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    # member-0 was not retrained; member-1's interrupted epoch 0 had been saved already.
    assert seen == ["member-0:0", "member-1:0", "crashed", "member-2:0"]
    assert (out / "member-0" / "model.keras").stat().st_mtime_ns == finished

    manifest = read_json(out / "config.json")
    folds = manifest["bagging"]["folds"]
    assert manifest["bagging"]["vote"] == "max" and len(folds) == 3
    test = set(manifest["split"]["test"])
    for i, fold in enumerate(folds):
        member = read_json(out / f"member-{i}" / "config.json")["split"]
        assert set(member["val"]) == set(fold) and set(member["test"]) == test
        assert set(member["train"]).isdisjoint(fold) and set(member["train"]).isdisjoint(test)
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert type(model).__name__ == "Ensemble" and model.rule == "max"
    assert len(model.members) == 3
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["n_patients"] == len(test) and 0.0 <= metrics["irr"] <= 1.0
    assert (out / "confusion_matrix.png").exists()


def test_run_folders_from_before_the_hybrid_fields_still_resume(tmp_path):
    from breastzoo.io import atomic_write_json
    from breastzoo.runs import check_resumable

    config = preset("tiny").to_dict()
    old = {k: v for k, v in config.items() if k not in ("bagging", "vote", "lambda_", "grid")}
    manifest = {"config": config, "data": {}, "magnification": "100X", "split": {}}
    atomic_write_json(tmp_path / "config.json", {**manifest, "config": old})
    check_resumable(tmp_path, manifest)  # missing fields = their defaults
    changed = {**manifest, "config": {**config, "bagging": 3}}
    with pytest.raises(ValueError, match="bagging: 1 -> 3"):
        check_resumable(tmp_path, changed)
