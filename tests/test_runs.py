"""breastzoo.runs, the one owner of the run folder: manifest, resume check, data, model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from breastzoo import runs
from breastzoo.configs import preset
from breastzoo.data.splits import PatientSplit
from breastzoo.datasource import DataSource
from breastzoo.io import atomic_write_json, read_json


def _prepared(root: Path, test: tuple[str, ...] = ("p5",)) -> runs.PreparedData:
    """Data of a run without images: the manifest only needs the source and the split."""
    split = PatientSplit(["p1", "p2", "p3"], ["p4"], list(test), seed=0)
    return runs.PreparedData(DataSource(root, "breakhis", True), "100X", ["benign", "malignant"],
                             [], split)


def test_manifest_records_the_preset_and_the_setup(tmp_path):
    config = preset("tiny")
    manifest = runs.make_manifest(_prepared(tmp_path), config, "tiny")
    assert manifest["preset"] == "tiny"
    assert manifest["config"] == config.to_dict()
    assert manifest["data"]["root"] == str(tmp_path.resolve())
    assert manifest["split"]["test"] == ["p5"]

    run = runs.open_run(tmp_path / "run", manifest)
    assert read_json(run.manifest_path)["preset"] == "tiny"
    assert runs.preset_of(run.read_manifest(), run.path) == "tiny"


def test_preset_of_old_runs_comes_from_the_folder_name():
    assert runs.preset_of({}, "runs/breakhis-100x-hybrid-binary-demo-seed0") == "demo"
    assert runs.preset_of({"preset": None}, "runs/my-own-name") is None


def test_resume_check_refuses_a_changed_config_and_names_the_field(tmp_path):
    config = preset("tiny")
    prepared = _prepared(tmp_path)
    runs.open_run(tmp_path, runs.make_manifest(prepared, config, "tiny"))
    runs.check_resumable(tmp_path, runs.make_manifest(prepared, config, "tiny"))  # same: fine
    with pytest.raises(ValueError, match="different setup .*patch_size: 32 -> 48"):
        runs.check_resumable(tmp_path, runs.make_manifest(prepared, config.replace(
            patch_size=48), "tiny"))
    with pytest.raises(ValueError, match="split differs"):
        runs.check_resumable(tmp_path, runs.make_manifest(_prepared(tmp_path, ("p6",)), config,
                                                          "tiny"))
    with pytest.raises(ValueError, match="preset differs"):
        runs.check_resumable(tmp_path, runs.make_manifest(prepared, config, "demo"))


def test_an_old_manifest_without_preset_or_newer_fields_still_resumes(tmp_path):
    config = preset("tiny")
    manifest = runs.make_manifest(_prepared(tmp_path), config, "tiny")
    # As written before the preset was recorded, and before later TrainConfig fields existed.
    old = {k: v for k, v in manifest.items() if k != "preset"}
    old["config"] = {k: v for k, v in old["config"].items() if k not in ("bagging", "vote")}
    atomic_write_json(tmp_path / "config.json", old)
    runs.check_resumable(tmp_path, manifest)
    runs.check_resumable(tmp_path, {**manifest, "preset": None})  # caller without a preset
    with pytest.raises(ValueError, match="bagging: 1 -> 3"):
        runs.check_resumable(tmp_path, {**manifest, "config": {**manifest["config"],
                                                               "bagging": 3}})


def test_study_folders_use_the_same_check(tmp_path):
    manifest = {"study": {"name": "s"}, "preset": "tiny", "base_config": preset("tiny").to_dict(),
                "split": {}}
    atomic_write_json(tmp_path / "study.json", manifest)
    keys = ("study", "preset", "base_config", "split")
    runs.check_resumable(tmp_path, manifest, file="study.json", keys=keys, kind="study")
    changed = {**manifest, "base_config": preset("tiny").replace(epochs=2).to_dict()}
    with pytest.raises(ValueError, match=r"Study folder .*\(epochs: 1 -> 2\).*new study"):
        runs.check_resumable(tmp_path, changed, file="study.json", keys=keys, kind="study")


@pytest.mark.slow  # 10-18 s; every model class has its own .keras round-trip test
def test_save_and_load_round_trip_a_breastzoo_model(tmp_path):
    import keras

    from breastzoo.models.factory import build_model

    config = preset("tiny").replace(model="sanet_resize")
    keras.utils.set_random_seed(0)
    model = build_model(config, ["benign", "malignant"], "100X")
    width, height = config.image_size
    x = np.random.default_rng(0).integers(0, 256, (2, height, width, 3)).astype("uint8")
    expected = np.asarray(model.predict(x, verbose=0))

    run = runs.RunFolder(tmp_path)
    assert runs.save_model(model, run.model_path) == run.model_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no staging left
    loaded = runs.load_model(run.model_path)
    assert type(loaded) is type(model) and loaded.class_names == ["benign", "malignant"]
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), expected, atol=1e-6)
    assert run.is_finished and run.require_finished() is run


def test_load_prepared_reads_the_recorded_split(tiny_testbed, tmp_path):
    from breastzoo.training import prepare_data

    prepared = prepare_data("breakhis", str(tiny_testbed), "100", "binary", seed=0)
    run = runs.open_run(tmp_path / "run", runs.make_manifest(prepared, preset("tiny"), "tiny"))
    again = runs.load_prepared(run.path)
    assert again.class_names == prepared.class_names
    assert ({k: [r.path for r in v] for k, v in again.parts().items()}
            == {k: [r.path for r in v] for k, v in prepared.parts().items()})
    with pytest.raises(ValueError, match="pass --data PATH"):
        runs.load_prepared(run.path, data=tmp_path / "moved")


def test_a_folder_without_model_or_manifest_is_named_in_the_error(tmp_path):
    run = runs.RunFolder(tmp_path)
    with pytest.raises(ValueError, match="no model.keras"):
        run.require_finished()
    with pytest.raises(ValueError, match="no config.json or run_config.json"):
        run.read_manifest()
    assert run.read_metrics() is None and run.finished_trials() == []
