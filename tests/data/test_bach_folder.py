"""BACH and plain-folder indexing."""

from __future__ import annotations

import pytest

from breastzoo.data.bach import index_bach
from breastzoo.data.folder import index_folder
from breastzoo.data.index import detect_dataset, index_dataset
from tests.data.trees import make_bach, write_png


def test_bach_index_classes_and_binary_mapping(tmp_path):
    make_bach(tmp_path, per_class=3)
    assert detect_dataset(tmp_path) == "bach"
    idx = index_dataset(tmp_path)
    assert idx.dataset == "bach"
    assert idx.skipped == []
    s = idx.summary()
    assert {k: v["images"] for k, v in s["by_subtype"].items()} == {
        "Benign": 3, "InSitu": 3, "Invasive": 3, "Normal": 3,
    }
    binary = {r.subtype: r.label for r in idx.records}
    assert binary == {"Normal": "benign", "Benign": "benign",
                      "InSitu": "malignant", "Invasive": "malignant"}
    assert idx.classes("subtype") == ["Normal", "Benign", "InSitu", "Invasive"]
    assert len(idx.patients()) == 12  # no patient ids in BACH: one per image


def test_bach_csv_disagreement_and_missing_files(tmp_path):
    photos = make_bach(tmp_path, per_class=2)
    csv = photos / "microscopy_ground_truth.csv"
    csv.write_text(csv.read_text().replace("b001.tif,Benign", "b001.tif,Invasive")
                   + "iv099.tif,Invasive\n")
    idx = index_bach(tmp_path)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in idx.skipped}
    assert "says Invasive but folder says Benign" in reasons["b001.tif"]
    assert "not found" in reasons["iv099.tif"]
    assert len(idx.records) == 7


def test_bach_without_csv_and_bad_label(tmp_path):
    photos = make_bach(tmp_path, per_class=1, with_csv=False)
    assert len(index_bach(photos).records) == 4  # root = Photos itself
    (photos / "microscopy_ground_truth.csv").write_text("n001.tif,Healthy\n")
    with pytest.raises(ValueError, match="label='Healthy'"):
        index_bach(tmp_path)


def test_folder_dataset_patients_and_labels(tmp_path):
    write_png(tmp_path / "benign" / "p1" / "a.png")
    write_png(tmp_path / "benign" / "p1" / "b.jpg".replace(".jpg", ".png"))
    write_png(tmp_path / "malignant" / "c.png")
    write_png(tmp_path / "stray.png")
    (tmp_path / "malignant" / "notes.txt").write_text("hi")
    idx = index_folder(tmp_path)
    assert sorted(r.patient for r in idx.records) == ["malignant/c", "p1", "p1"]
    assert {r.label for r in idx.records} == {"benign", "malignant"}
    reasons = sorted(s.reason for s in idx.skipped)
    assert reasons == ["image not inside a class folder", "not an image file (extension '.txt')"]


def test_empty_root_gives_empty_index(tmp_path):
    (tmp_path / "empty").mkdir()
    idx = index_dataset(tmp_path)
    assert idx.records == [] and idx.summary()["images"] == 0
