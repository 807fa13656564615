"""`breastzoo models info` and `breastzoo prune` through the CLI, on tiny configurations."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from breastzoo.cli import app
from breastzoo.io import atomic_write_json, read_json

runner = CliRunner()


def test_models_info_json_inception_sep_matches_paper():
    result = runner.invoke(app, ["models", "info", "inception_sep", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert abs(info["params"] - 3.77e6) <= 0.01 * 3.77e6
    assert abs(info["macs"] - 1.46e9) <= 0.03 * 1.46e9


def test_models_info_counts_follow_size_and_classes():
    small = json.loads(runner.invoke(app, ["models", "info", "sanet", "--input-size", "32",
                                           "--json"]).stdout)
    big = json.loads(runner.invoke(app, ["models", "info", "sanet", "--input-size", "64",
                                         "--classes", "8", "--json"]).stdout)
    assert big["macs"] > 3 * small["macs"]  # MACs scale with the area
    assert big["params"] > small["params"]  # a wider classifier
    text = runner.invoke(app, ["models", "info", "sanet", "--input-size", "32"])
    assert text.exit_code == 0 and "parameters" in text.stdout


def test_models_info_unknown_arch_is_one_line_error():
    result = runner.invoke(app, ["models", "info", "vgg16"])
    assert result.exit_code == 2
    assert "Unknown architecture" in result.output and "inception_sep" in result.output


@pytest.fixture
def hybrid_run(tiny_testbed, tmp_path):
    """A run folder of a tiny (untrained) hybrid, as `fit` would leave it."""
    from breastzoo.configs import preset
    from breastzoo.models.factory import build_model
    from breastzoo.runs import RunFolder, make_manifest, save_model
    from breastzoo.training import prepare_data

    config = preset("tiny", "hybrid").replace(task="binary", grid=(2, 1))
    prepared = prepare_data("breakhis", str(tiny_testbed), "100", "binary", config.seed)
    keras.utils.set_random_seed(0)
    model = build_model(config, prepared.class_names, prepared.magnification)
    run = RunFolder(tmp_path / "hybrid-run")
    run.path.mkdir()
    atomic_write_json(run.manifest_path, make_manifest(prepared, config, "tiny"))
    atomic_write_json(run.metrics_path, {"irr": 0.5})  # as evaluate_run would
    save_model(model, run.model_path)
    return run.path


@pytest.mark.slow  # about 3 minutes on 2 busy cores: two model loads, eager retraining
def test_prune_hybrid_run_writes_new_run(hybrid_run, tmp_path):
    out = tmp_path / "pruned"
    result = runner.invoke(app, ["prune", str(hybrid_run), "--ratio", "0.5", "--magnitude",
                                 "0.5", "--epochs", "1", "--steps-per-epoch", "2", "--out",
                                 str(out), "--eager", "--distill", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    for key in ("params_before", "params_after", "macs_before", "macs_after", "irr_before",
                "irr_after"):
        assert key in res
    assert res["irr_before"] == 0.5  # read from the source run's metrics.json
    assert res["params_after"] < 0.6 * res["params_before"]
    assert res["macs_after"] < res["macs_before"]
    assert 0.0 <= res["irr_after"] <= 1.0
    assert res["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert res["gzip_bytes_after"] < res["gzip_bytes_before"]
    for name in ("model.keras", "config.json", "history.json", "metrics.json", "pruning.json"):
        assert (out / name).stat().st_size > 0, name
    record = read_json(out / "config.json")["pruning"]
    assert record["ratio"] == 0.5 and record["distill"] == 0.5
    assert record["schedule"] == "restart" and record["retrain_lr"] > 0
    # The history is the distillation's: both loss terms, per epoch.
    epochs = read_json(out / "history.json")["epochs"]
    assert {"label_loss", "distill_loss"} <= set(epochs[0])
    # The new run is an ordinary run: it reloads and evaluates again.
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert model.count_params() == res["params_after"]
    x = np.zeros((1, 92, 140, 3), "uint8")
    assert model(x).shape == (1, 2)
    again = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert again.exit_code == 0, again.output
    # Occupied output folders are refused.
    clash = runner.invoke(app, ["prune", str(hybrid_run), "--ratio", "0.5", "--out", str(out)])
    assert clash.exit_code == 2 and "already holds" in clash.output


def test_prune_errors_are_one_line(tmp_path):
    # The ratio is checked before anything is loaded.
    bad = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "1.5"])
    assert bad.exit_code == 2 and "ratio" in bad.output
    missing = runner.invoke(app, ["prune", str(tmp_path / "nope"), "--ratio", "0.5"])
    assert missing.exit_code == 2 and "run folder" in missing.output
    empty = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "0.5"])
    assert empty.exit_code == 2 and "Not a finished run folder" in empty.output
    # Retraining options are checked before anything is loaded too.
    schedule = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "0.5", "--schedule",
                                   "sgdr"])
    assert schedule.exit_code == 2 and "schedule='sgdr'" in schedule.output
    distill = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "0.5", "--distill", "2"])
    assert distill.exit_code == 2 and "distill must be in [0, 1]" in distill.output
    lr = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "0.5", "--retrain-lr", "0"])
    assert lr.exit_code == 2 and "retrain_lr" in lr.output


def test_prune_source_resolves_run_folders_and_zoo_names(tmp_path):
    from breastzoo.pruning.run import resolve_source
    from breastzoo.zoo.registry import write_sums

    # A zoo version folder, found by name through the registry (latest version).
    version = tmp_path / "zoo" / "hybrid_200x" / "3"
    version.mkdir(parents=True)
    (version / "model.keras").write_bytes(b"stub")
    atomic_write_json(version / "run_config.json", {"config": {"model": "hybrid"}})
    atomic_write_json(version / "metrics.json", {"irr": 0.75})
    write_sums(version)
    model_path, manifest, metrics, label = resolve_source("hybrid_200x", tmp_path / "zoo")
    assert model_path == version / "model.keras"
    assert manifest["config"]["model"] == "hybrid" and metrics["irr"] == 0.75
    assert label == "hybrid_200x-v3"
    (version / "model.keras").write_bytes(b"stuB")  # one flipped byte
    with pytest.raises(ValueError, match="corrupted.*model.keras"):
        resolve_source("hybrid_200x", tmp_path / "zoo")
    with pytest.raises(ValueError, match="hybrid_2000x|Unknown|unknown"):
        resolve_source("hybrid_2000x", tmp_path / "zoo")


def test_prune_retrains_without_a_teacher_unless_asked(monkeypatch, tmp_path):
    """The measured default (docs/benchmarks.md: a teacher cost 4.7 points on the real subset
    and 9.7 on the testbed) is labels alone, in the CLI and in prune_run itself."""
    import inspect

    import breastzoo.pruning.run

    signature = inspect.signature(breastzoo.pruning.run.prune_run)
    assert signature.parameters["distill"].default == 0.0
    seen: dict[str, object] = {}

    def fake_prune(source, ratio, **kwargs):
        seen.update(kwargs)
        return {"metrics": {}, **{k: 0 for k in (
            "params_before", "params_after", "macs_before", "macs_after", "irr_before",
            "irr_after", "gzip_bytes_before", "gzip_bytes_after")}, "run_dir": str(tmp_path)}

    monkeypatch.setattr(breastzoo.pruning.run, "prune_run", fake_prune)
    result = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "0.5"])
    assert result.exit_code == 0, result.output
    assert seen["distill"] == 0.0
    result = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "0.5", "--distill", "0.3"])
    assert result.exit_code == 0, result.output
    assert seen["distill"] == 0.3
