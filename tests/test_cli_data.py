"""The `breastzoo data` commands through Typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from breastzoo.cli import app
from tests.data.trees import REAL_PATIENTS, make_breakhis

runner = CliRunner()


def test_index_json_shape(tmp_path):
    make_breakhis(tmp_path, mags=(40, 100), per_mag=1)
    (tmp_path / "BreaKHis_v1" / "Thumbs.db").write_bytes(b"x")
    result = runner.invoke(app, ["data", "index", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert obj["dataset"] == "breakhis"
    assert obj["images"] == 22 and obj["patients"] == 11
    assert obj["by_magnification"]["100X"] == {"images": 11, "patients": 11}
    assert obj["by_subtype"]["DC"]["patients"] == 3
    assert obj["skipped"] == [
        {"path": str(tmp_path / "BreaKHis_v1" / "Thumbs.db"), "reason": "system file, not an image"}
    ]


def test_index_table(tmp_path):
    make_breakhis(tmp_path, mags=(40,), per_mag=1)
    result = runner.invoke(app, ["data", "index", str(tmp_path)])
    assert result.exit_code == 0
    assert "40X" in result.stdout and "total" in result.stdout


def test_split_json_has_no_leak(tmp_path):
    make_breakhis(tmp_path, mags=(100,), per_mag=2)
    result = runner.invoke(app, ["data", "split", str(tmp_path), "--mag", "100", "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    parts = [set(obj[k]) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == 11 and not (parts[0] & parts[1] or parts[0] & parts[2])
    assert obj["counts"]["test"]["images"] == 2 * len(obj["test"])
    again = runner.invoke(app, ["data", "split", str(tmp_path), "--mag", "100", "--json"])
    assert json.loads(again.stdout)["fingerprint"] == obj["fingerprint"]


def test_kfold_json(tmp_path):
    make_breakhis(tmp_path, mags=(40,), per_mag=1)
    result = runner.invoke(app, ["data", "split", str(tmp_path), "--kfold", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert sum(json.loads(result.stdout)["counts"]) == 11


def test_bad_magnification_is_one_line_error(tmp_path):
    make_breakhis(tmp_path, mags=(40,), per_mag=1)
    result = runner.invoke(app, ["data", "split", str(tmp_path), "--mag", "150"])
    assert result.exit_code == 2
    assert "mag='150'" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_dataset_and_missing_root(tmp_path):
    result = runner.invoke(app, ["data", "index", str(tmp_path), "--dataset", "cifar"])
    assert result.exit_code == 2 and "cifar" in result.output
    result = runner.invoke(app, ["data", "index", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "nope" in result.stderr


def test_root_without_images_fails_clearly(tmp_path):
    result = runner.invoke(app, ["data", "index", str(tmp_path)])
    assert result.exit_code == 2 and "No usable images" in result.stderr


def test_leaky_official_fold_refused_then_allowed(tmp_path):
    make_breakhis(tmp_path, mags=(100,), per_mag=1)
    fold = tmp_path / "dsfold1.txt"
    fold.write_text(
        "SOB_M_DC-14-2523-100-001.png|100|1|train\n"
        "SOB_B_A-14-22549AB-100-001.png|100|1|train\n"
        "SOB_B_F-14-9133-100-001.png|100|1|train\n"
        "SOB_M_DC-14-2523-100-002.png|100|1|test\n"
    )
    args = ["data", "split", str(tmp_path), "--mag", "100", "--folds", str(fold)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "14-2523" in refused.stderr
    allowed = runner.invoke(app, [*args, "--allow-leak", "--json"])
    assert allowed.exit_code == 0
    assert "WARNING" in allowed.stderr
    assert json.loads(allowed.stdout)["warnings"]


def test_split_by_binary_task_feeds_load_split(tmp_path):
    from breastzoo.data.index import index_dataset
    from breastzoo.data.splits import load_split

    make_breakhis(tmp_path, mags=(100,), per_mag=2)
    result = runner.invoke(app, ["data", "split", str(tmp_path), "--mag", "100",
                                 "--task", "binary", "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert obj["task"] == "binary" and obj["source"] == "stratified by binary label"
    label = {p: ("benign" if sub in ("A", "F") else "malignant")
             for sub, ids in REAL_PATIENTS.items() for p in ids}
    for part in ("train", "val", "test"):
        assert {label[p] for p in obj[part]} == {"benign", "malignant"}, part
    assert "warnings" not in obj
    path = tmp_path / "split.json"
    path.write_text(result.stdout)
    records = index_dataset(tmp_path).filter("100X").records
    loaded = load_split(path, records, "100X", task="binary")
    assert loaded.fingerprint() == obj["fingerprint"]


def test_split_warns_about_parts_lacking_a_class(tmp_path):
    make_breakhis(tmp_path, mags=(100,), per_mag=1)
    result = runner.invoke(app, ["data", "split", str(tmp_path), "--mag", "100", "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    # Subtypes A, F and MC have two patient groups each: one for train, one for test.
    assert "val part has no 'MC' images (the data has 2 patient groups of 'MC')" in obj["warnings"]
    assert "WARNING" in result.stderr and "'MC'" in result.stderr
