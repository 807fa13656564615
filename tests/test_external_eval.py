"""`fit --split FILE` and `evaluate RUN --data OTHER_TREE --external` on tiny trees.

One tiny binary run (trained once for the module, on the session's tiny testbed with a split
file from `breastzoo data split --task binary --json`) serves every test here.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from breastzoo import training
from breastzoo.cli import app
from breastzoo.configs import preset
from breastzoo.data.index import index_dataset
from breastzoo.data.splits import PatientLeakError, PatientSplit
from breastzoo.io import read_json
from tests.data.trees import make_breakhis, write_png

runner = CliRunner()


@pytest.fixture(scope="module")
def split_file(tiny_testbed, tmp_path_factory):
    result = runner.invoke(app, ["data", "split", str(tiny_testbed), "--mag", "100",
                                 "--task", "binary", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    path = tmp_path_factory.mktemp("split") / "split.json"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def binary_run(tiny_testbed, split_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "binary"
    result = runner.invoke(app, ["fit", "breakhis", "--mag", "100", "--data", str(tiny_testbed),
                                 "--model", "sanet_resize", "--task", "binary", "--config",
                                 "tiny", "--split", str(split_file), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out


def test_fit_split_is_honoured(binary_run, split_file):
    given = json.loads(split_file.read_text())
    recorded = read_json(binary_run / "config.json")["split"]
    for part in ("train", "val", "test"):
        assert recorded[part] == given[part]
    assert recorded["fingerprint"] == given["fingerprint"]
    assert recorded["source"] == "file:split.json"
    metrics = read_json(binary_run / "metrics.json")
    assert metrics["n_patients"] == len(given["test"])
    assert sum(metrics["prediction_counts"].values()) == metrics["n_images"]
    assert metrics["label_counts"]["benign"] > 0 and metrics["label_counts"]["malignant"] > 0
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0

    again = runner.invoke(app, ["evaluate", str(binary_run)])  # re-evaluates its own test part
    assert again.exit_code == 0, again.output
    assert "predicted per class: benign" in again.stdout
    assert read_json(binary_run / "metrics.json")["irr"] == pytest.approx(metrics["irr"])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_fit_split_refuses_leaks_unknown_patients_and_trials(tiny_testbed, split_file, tmp_path):
    given = json.loads(split_file.read_text())
    args = ["fit", "breakhis", "--mag", "100", "--data", str(tiny_testbed), "--config", "tiny",
            "--task", "binary", "--out", str(tmp_path / "never")]
    leaky = tmp_path / "leaky.json"
    patient = given["test"][0]
    leaky.write_text(json.dumps({**given, "train": given["train"] + [patient]}))
    _one_line_error(runner.invoke(app, [*args, "--split", str(leaky)]),
                    f"patient {patient} is in train and test")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({**given, "val": given["val"] + ["14-99999"]}))
    _one_line_error(runner.invoke(app, [*args, "--split", str(unknown)]),
                    "absent from the data: 14-99999")
    _one_line_error(runner.invoke(app, [*args, "--split", str(split_file), "--trials", "2"]),
                    "trials=2")
    _one_line_error(runner.invoke(app, [*args, "--split", str(tmp_path / "missing.json")]),
                    "missing.json")
    assert not (tmp_path / "never").exists()  # refused before any training

    # The library form bench scripts use: fit(..., split=PatientSplit(...)).
    bad = PatientSplit(given["train"], given["val"] + [patient], given["test"])
    with pytest.raises(PatientLeakError, match=f"patient {patient} is in val and test"):
        training.fit("breakhis", data=str(tiny_testbed), mag="100",
                     config=preset("tiny").replace(task="binary"), preset="tiny",
                     out=tmp_path / "never", split=bad, verbose=0, log=lambda m: None)


def test_external_scores_every_image_of_the_other_tree(binary_run, tmp_path):
    other = tmp_path / "other"
    make_breakhis(other, mags=(40, 100), per_mag=2)
    # The interface: a tree without the run's test patients is scored whole.
    result = runner.invoke(app, ["evaluate", str(binary_run), "--data", str(other), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    folder = binary_run / "external" / "other"
    expected = sorted(r.path for r in index_dataset(other).filter("100X").records)
    predictions = read_json(folder / "predictions.json")
    assert sorted(p["path"] for p in predictions["images"]) == expected
    assert metrics["n_images"] == len(expected) == 22
    assert predictions["class_names"] == ["benign", "malignant"]
    assert read_json(folder / "metrics.json")["n_images"] == 22
    assert metrics["data"].startswith("external: breakhis at ")
    assert not any("not external" in w for w in metrics["warnings"])
    rows = (folder / "patients.csv").read_text().splitlines()
    assert rows[0] == "patient,label,n_images,n_correct,patient_accuracy,predicted_majority"
    assert len(rows) == 1 + 11
    for name in ("confusion_matrix.png", "roc.png"):
        assert (folder / name).stat().st_size > 0

    at_40 = runner.invoke(app, ["evaluate", str(binary_run), "--data", str(other),
                                "--mag", "40", "--out", str(tmp_path / "ext40"), "--json"])
    assert at_40.exit_code == 0, at_40.output
    paths = [p["path"] for p in read_json(tmp_path / "ext40" / "predictions.json")["images"]]
    assert sorted(paths) == sorted(r.path for r in index_dataset(other).filter("40X").records)


def test_external_on_the_runs_own_data_says_it_is_not_external(binary_run, tiny_testbed):
    from breastzoo.evaluation.reports import evaluate_external

    metrics = evaluate_external(binary_run, tiny_testbed, log=lambda m: None)
    assert metrics["n_images"] == 52  # every 100X image, whatever the split
    assert any(w.startswith("not external") for w in metrics["warnings"])


def test_external_refuses_unknown_classes_and_misused_options(binary_run, tmp_path):
    tree = tmp_path / "pets"
    for i in range(2):
        write_png(tree / "cat" / f"{i}.png", size=(64, 48), seed=i)
    result = runner.invoke(app, ["evaluate", str(binary_run), "--data", str(tree), "--external"])
    _one_line_error(result, "'cat'", "benign, malignant")
    _one_line_error(runner.invoke(app, ["evaluate", str(binary_run), "--mag", "40"]),
                    "--external")
    _one_line_error(runner.invoke(app, ["evaluate", str(binary_run), "--external"]),
                    "--data")
