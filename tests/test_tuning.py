"""`breastzoo tune`: study files, HyperModels, the three studies at the tiny preset, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastzoo.cli import app
from breastzoo.configs import apply_overrides, preset
from breastzoo.io import read_json
from breastzoo.tuning import load_study, parse_study
from breastzoo.tuning.runner import fit_command
from breastzoo.tuning.studies import grid_values

runner = CliRunner()
STUDIES = Path(__file__).resolve().parent.parent / "tuning"


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "executions.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ study files


@pytest.mark.parametrize("config", ["tiny", "demo", "paper"])
def test_the_three_study_files_parse_at_every_preset(config):
    roi = load_study(STUDIES / "roi_patch.yaml", config)
    assert roi.tuner == "grid" and roi.model == "denet_sanet"
    assert roi.grid_size() == roi.planned_trials() == 12  # Tables VI/VII: 4 x 3
    assert grid_values(roi.space["k"]) == [3, 5, 7, 9]
    patches = [16, 32, 64] if config == "tiny" else [56, 112, 224]
    assert grid_values(roi.space["patch_size"]) == patches
    assert roi.grid_points()[:2] == [{"k": 3, "patch_size": patches[0]},
                                     {"k": 3, "patch_size": patches[1]}]
    gamma = load_study(STUDIES / "gamma.yaml", config)
    assert 0.25 in grid_values(gamma.space["gamma"]) and gamma.planned_trials() == 6
    lam = load_study(STUDIES / "lambda.yaml", config)
    assert (lam.model, lam.tuner, lam.task) == ("hybrid", "bayesian", "binary")
    assert 0.6 in grid_values(lam.space["lambda_"]) and lam.planned_trials() == 10


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"model": "denet_sanet", "tuner": "grid", "space": {"kk": [1]}}, "unknown TrainConfig"),
        ({"model": "denet_sanet", "tuner": "annealing", "space": {"k": [3]}}, "annealing"),
        ({"model": "resnet", "tuner": "grid", "space": {"k": [3]}}, "resnet"),
        ({"model": "denet_sanet", "tuner": "random", "space": {"k": [3]}}, "max_trials"),
        ({"model": "denet_sanet", "tuner": "hyperband", "space": {"k": [3]}}, "max_epochs"),
        ({"model": "denet_sanet", "tuner": "grid", "space": {}}, "non-empty"),
        ({"model": "denet_sanet", "tuner": "grid", "space": {"gamma": {"min": 1, "max": 0}}},
         "min < max"),
        ({"model": "denet_sanet", "tuner": "grid", "space": {"k": [3]}, "budget": {"x": 1}},
         "budget"),
        ({"model": "denet_sanet", "tuner": "grid", "space": {"k": [3]}, "colour": 1}, "colour"),
    ],
)
def test_bad_studies_are_refused_naming_the_value(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_study(raw)


def test_missing_study_file_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["tune", str(tmp_path / "nope.yaml"), "--config", "tiny"])
    assert result.exit_code == 2
    assert "No study file" in result.output and "Traceback" not in result.output


def test_denet_hypermodel_scales_the_glimpse_budget_with_k():
    from breastzoo.tuning.hypermodels import DeNetSaNetHyperModel

    hm = DeNetSaNetHyperModel(preset("demo"), prepared=None, space={"k": {"values": [3, 9]}})
    assert hm.config_for({"k": 3}).max_steps == 8  # never below the preset's 8
    big = hm.config_for({"k": 9})
    assert (big.k, big.max_steps, big.k_max) == (9, 15, 9)  # 8/5 glimpses per ROI
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        DeNetSaNetHyperModel(preset("demo"), prepared=None, space={"lambda": {"value": 1}})


def test_best_trial_prints_as_a_fit_command_that_round_trips():
    study = load_study(STUDIES / "gamma.yaml", "demo")
    config = preset("demo").replace(gamma=0.5, k=7, max_steps=12)
    command = fit_command(study, "demo", "demo", config)
    assert command == ("breastzoo fit breakhis --mag 100 --data demo --config demo --k 7 "
                       "--set max_steps=12 --set gamma=0.5")
    sets = [part for part in command.split() if "=" in part]
    assert apply_overrides(preset("demo").replace(k=7), sets) == config
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        apply_overrides(preset("demo"), ["gamma"])


def _counting_grid(calls: list, interrupt_at: int | None):
    """A 3 x 2 grid HyperModel that trains nothing and records which cells ran."""
    import keras
    import keras_tuner

    class HyperModel(keras_tuner.HyperModel):
        def build(self, hp):
            hp.Choice("a", [1, 2, 3])
            hp.Choice("b", [10, 20])
            return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

        def fit(self, hp, model, *args, **kwargs):
            calls.append((hp.get("a"), hp.get("b")))
            if len(calls) == interrupt_at:
                raise KeyboardInterrupt
            return {"score": float(hp.get("a") * 100 + hp.get("b"))}

    return HyperModel()


@pytest.mark.slow  # 35-120 s each: KerasTuner studies
def test_grid_search_resumes_an_interrupted_study_and_walks_the_rest_of_the_grid(tmp_path):
    # keras_tuner.GridSearch dies here with KeyError (keras-team/keras-tuner#1055).
    import keras_tuner

    from breastzoo.tuning.grid import grid_search

    calls: list = []
    kwargs = dict(objective=keras_tuner.Objective("score", "max"), directory=str(tmp_path),
                  project_name="kt")
    with pytest.raises(KeyboardInterrupt):
        grid_search(_counting_grid(calls, interrupt_at=3), **kwargs).search(verbose=0)
    tuner = grid_search(_counting_grid(calls, interrupt_at=None), **kwargs)
    tuner.search(verbose=0)
    cells = [(a, b) for a in (1, 2, 3) for b in (10, 20)]
    # Two finished cells kept, the interrupted one re-run, then the rest once each.
    assert calls == cells[:3] + cells[2:]
    assert sorted((t.hyperparameters.get("a"), t.hyperparameters.get("b"))
                  for t in tuner.oracle.trials.values()) == cells
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    assert tuner.oracle.get_best_trials(1)[0].score == 320.0


# ------------------------------------------------------------------ studies at --config tiny


@pytest.mark.slow  # 35-120 s each: KerasTuner studies
def test_roi_patch_study_runs_tiny_resumes_and_never_reads_test_patients(
        tiny_testbed, tmp_path, monkeypatch):
    from breastzoo.data import pipeline
    from breastzoo.tuning.hypermodels import BreastzooHyperModel

    seen: set[str] = set()
    make_dataset = pipeline.make_dataset

    def recording(records, *args, **kwargs):
        seen.update(r.patient for r in records)
        return make_dataset(records, *args, **kwargs)

    monkeypatch.setattr(pipeline, "make_dataset", recording)
    original_fit = BreastzooHyperModel.fit
    calls = []

    def interrupt_second_trial(self, hp, model, *args, **kwargs):
        calls.append(dict(hp.values))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during trial 2
        return original_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(BreastzooHyperModel, "fit", interrupt_second_trial)
    out = tmp_path / "roi"
    args = ["tune", str(STUDIES / "roi_patch.yaml"), "--data", str(tiny_testbed), "--config",
            "tiny", "--max-trials", "2", "--out", str(out), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 130 and len(calls) == 2, first.output  # Ctrl-C: 128 + SIGINT
    again = runner.invoke(app, args)  # the same command resumes
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    # Trial 1 kept, trial 2 re-run from the start; nothing else ran.
    assert [c["patch_size"] for c in calls] == [16, 32, 32]
    rows = result["trials"]
    assert [(r["k"], r["patch_size"], r["status"]) for r in rows] == [
        (3, 16, "COMPLETED"), (3, 32, "COMPLETED")]
    assert all(0.0 <= r["score"] <= 1.0 and r["seconds"] > 0 for r in rows)
    assert [e["values"]["patch_size"] for e in _events(out) if e["event"] == "end"] == [16, 32]
    for name in ("results.csv", "results.json", "heatmap.png", "study.json", "best.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "results.csv").read_text().splitlines()[0].startswith("trial,status,k,")
    assert result["fit_command"].startswith(
        f"breastzoo fit breakhis --mag 100 --data {tiny_testbed} --config tiny")
    best_patch = result["best"]["values"]["patch_size"]
    # tiny's own patch size is 32: only a different one needs the option.
    assert (f"--patch-size {best_patch}" in result["fit_command"]) == (best_patch != 32)
    split = read_json(out / "study.json")["split"]
    assert seen and seen.isdisjoint(split["test"])  # test patients never reached tf.data
    assert seen <= set(split["train"]) | set(split["val"])

    changed = runner.invoke(app, [*args[:-1], "--epochs", "2", "--json"])
    assert changed.exit_code == 2 and "different" in changed.output


@pytest.mark.slow  # 35-120 s each: KerasTuner studies
def test_gamma_study_runs_tiny_and_plots_the_sweep(tiny_testbed, tmp_path):
    out = tmp_path / "gamma"
    result = runner.invoke(app, ["tune", str(STUDIES / "gamma.yaml"), "--data",
                                 str(tiny_testbed), "--config", "tiny", "--max-trials", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "breastzoo fit breakhis --mag 100" in result.output and "gamma=0.05" in result.output
    rows = read_json(out / "results.json")["trials"]
    assert [(r["gamma"], r["status"]) for r in rows] == [(0.05, "COMPLETED")]
    assert (out / "sweep.png").stat().st_size > 0


@pytest.mark.slow  # 35-120 s each: KerasTuner studies
def test_lambda_study_runs_tiny_and_trials_share_one_training(tiny_testbed, tmp_path):
    out = tmp_path / "lambda"
    result = runner.invoke(app, ["tune", str(STUDIES / "lambda.yaml"), "--data",
                                 str(tiny_testbed), "--config", "tiny", "--max-trials", "2",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["trials"]
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    assert rows[0]["lambda_"] != rows[1]["lambda_"]
    assert sorted(r["epochs"] for r in rows) == [0.0, 1.0]  # one trained, one reused weights
    assert len(list((out / "shared_weights").glob("*.weights.h5"))) == 1
    assert "--model hybrid" in json.loads(result.stdout)["fit_command"]
