"""`breastzoo fit` / `evaluate` end to end on the tiny testbed: run folder, resume, errors."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from breastzoo import training
from breastzoo.cli import app
from breastzoo.configs import preset
from breastzoo.datasource import resolve_data
from breastzoo.io import read_json

runner = CliRunner()


def test_fit_denet_sanet_writes_a_complete_run_folder(published, tmp_path):
    # The session's `fit breakhis --mag 100 --config tiny --publish` run (tests/conftest.py):
    # one DeNet+SaNet training shared with the zoo tests instead of a second one here.
    out = tmp_path / "run"
    shutil.copytree(published[1], out)
    metrics = read_json(out / "metrics.json")
    assert 0.0 <= metrics["irr"] <= 1.0 and 0.0 <= metrics["prr"] <= 1.0
    assert "synthetic" in metrics["data"]
    assert metrics["binary"]["class_names"] == ["benign", "malignant"]
    assert 0.0 <= metrics["roi_hit_rate"] <= 1.0  # the testbed has lesion masks
    for name in ("config.json", "history.json", "metrics.json", "predictions.json",
                 "model.keras", "confusion_matrix.png", "roc.png", "history.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "overlays").glob("*.png"))) == 4
    assert not (out / "backup").exists()  # finished runs drop their resume state
    config = read_json(out / "config.json")
    assert set(config["split"]["test"]).isdisjoint(config["split"]["train"])
    history = read_json(out / "history.json")["epochs"]
    assert {"reward", "baseline", "select_rate", "entropy", "val_accuracy"} <= set(history[0])

    again = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["irr"] == pytest.approx(metrics["irr"])
    predictions = read_json(out / "predictions.json")["images"]
    assert len(predictions) == metrics["n_images"]
    assert all(len(p["boxes"]) >= 3 for p in predictions)  # k = 3 ROIs voted per image


@pytest.mark.slow  # 60 s; resume is also covered by test_fit_hybrid
def test_interrupted_run_resumes_from_last_epoch(tiny_testbed, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    cfg = preset("tiny").replace(model="sanet_resize", epochs=3)
    original = training.HistoryWriter.on_epoch_end
    epochs_run = []

    def crash_after_epoch_1(self, epoch, logs=None):
        original(self, epoch, logs)
        epochs_run.append(epoch)
        if epoch == 1 and len(epochs_run) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C

    monkeypatch.setattr(training.HistoryWriter, "on_epoch_end", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        training.fit("breakhis", data=str(tiny_testbed), mag="100", config=cfg, out=out,
                     verbose=0, log=lambda m: None)
    assert not (out / "model.keras").exists()
    assert (out / "backup").exists()
    training.fit("breakhis", data=str(tiny_testbed), mag="100", config=cfg, out=out,
                 verbose=0, log=lambda m: None)
    assert epochs_run == [0, 1, 2]  # the rerun trained only the missing epoch
    assert [e["epoch"] for e in read_json(out / "history.json")["epochs"]] == [0, 1, 2]
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert model.class_names == ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]

    with pytest.raises(ValueError, match="different setup"):
        training.fit("breakhis", data=str(tiny_testbed), mag="100",
                     config=cfg.replace(patch_size=48), out=out, verbose=0, log=lambda m: None)


def test_missing_data_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BREASTZOO_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="--data demo"):
        resolve_data("breakhis", None)
    result = runner.invoke(app, ["fit", "breakhis", "--mag", "100"])
    assert result.exit_code == 2 and "--data demo" in result.stderr
    assert "Traceback" not in result.output


def test_bad_mag_and_model_are_one_line_errors(tiny_testbed):
    result = runner.invoke(app, ["fit", "breakhis", "--mag", "150", "--data", str(tiny_testbed)])
    assert result.exit_code == 2 and "mag='150'" in result.stderr
    result = runner.invoke(app, ["fit", "breakhis", "--model", "vgg"])
    assert result.exit_code == 2 and "vgg" in result.output


def test_reward_batch_is_fixed_class_balanced_and_from_validation(tiny_testbed):
    cfg = preset("tiny").replace(task="binary", rp_images=4)
    prepared = training.prepare_data("breakhis", str(tiny_testbed), "100", "binary", 0)
    images, labels = training.reward_batch(prepared, cfg)
    again, labels_again = training.reward_batch(prepared, cfg)
    assert images.shape[0] == len(labels) == 4
    assert images.shape[1:] == (cfg.image_size[1], cfg.image_size[0], 3)
    np.testing.assert_array_equal(images, again)  # fixed: the same images every call
    np.testing.assert_array_equal(labels, labels_again)
    assert sorted(labels.tolist()) == [0, 0, 1, 1]  # the classes take turns
    with pytest.raises(ValueError, match="per_glimpse"):
        cfg.replace(rp_source="batch", reward="per_glimpse").validate()
