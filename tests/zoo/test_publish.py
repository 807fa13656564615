"""Publishing: version layout, model card, metadata, atomicity under failure and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breastzoo.zoo import publish, registry
from tests.zoo.conftest import NAME


def test_fit_publish_writes_a_complete_version(published):
    root, run = published
    version = root / NAME / "1"
    names = set(registry.version_files(version))
    # .keras, TF Serving SavedModel at the top of the version folder, card, metadata
    assert {"model.keras", "saved_model.pb", "card.md", "card.json", "metadata.json"} <= names
    assert any(n.startswith("variables/variables.data") for n in names)
    assert registry.verify_dir(version) == []
    assert set(registry.parse_sums((version / "SHA256SUMS").read_text())) == names
    assert (version / "model.keras").read_bytes() == (run / "model.keras").read_bytes()
    assert not list((root / NAME).glob(".staging-*"))
    index = json.loads((root / "index.json").read_text())
    assert index["models"][NAME] == {"versions": [1], "latest": 1}


def test_card_follows_model_card_sections_and_flags_synthetic_data(published):
    root, run = published
    card = json.loads((root / NAME / "1" / "card.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert card["intended_use"]["not_for_diagnosis"] is True
    assert card["training_data"]["synthetic"] is True
    assert card["training_data"]["flag"].startswith("FLAGGED")
    assert card["caveats"][0].startswith("FLAGGED")
    row = card["metrics"]["per_magnification"]["100X"]
    assert row["irr"] == pytest.approx(metrics["irr"]) and row["prr"] == pytest.approx(
        metrics["prr"])
    assert {"kappa", "ppv", "f1"} <= set(row)
    assert card["confusion_matrix"]["matrix"] == metrics["confusion_matrix"]
    assert card["input"]["image_size"] == [140, 92]
    assert card["input"]["class_names"] == metrics["class_names"]
    assert card["evaluation_data"]["split_fingerprint"]
    md = (root / NAME / "1" / "card.md").read_text()
    for heading in ("## Model details", "## Intended use", "## Training data",
                    "## Evaluation data", "## Metrics", "## Confusion matrix", "## Caveats"):
        assert heading in md
    assert "FLAGGED" in md and "Not for diagnosis" in md and "| 100X |" in md


def test_metadata_records_versions_params_commit_and_split(published):
    import keras

    root, run = published
    meta = json.loads((root / NAME / "1" / "metadata.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert meta["keras"] == keras.__version__
    assert meta["tensorflow"] and meta["breastzoo"]
    assert meta["parameters"] > 0 and meta["date"].startswith("20")
    assert meta["split_hash"] == config["split"]["fingerprint"]
    assert "git_commit" in meta


def test_publish_again_makes_a_new_immutable_version(published, zoo_copy, fast_export):
    _, run = published
    before = (zoo_copy / NAME / "1" / "SHA256SUMS").read_bytes()
    out = publish.publish_run(run, NAME, zoo_copy, log=lambda m: None)
    assert out["version"] == 2 and registry.versions(NAME, zoo_copy) == [1, 2]
    assert (zoo_copy / NAME / "1" / "SHA256SUMS").read_bytes() == before
    mode = (zoo_copy / NAME / "2" / "model.keras").stat().st_mode
    assert not mode & 0o222  # read-only


def test_failed_publish_leaves_nothing_and_a_retry_works(published, tmp_path, fast_export,
                                                        monkeypatch):
    _, run = published
    root = tmp_path / "zoo"
    from breastzoo.zoo import cards

    def boom(directory, metadata):  # fails after the model, SavedModel and card are staged
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(cards, "write_metadata", boom)
    with pytest.raises(OSError, match="simulated"):
        publish.publish_run(run, NAME, root, log=lambda m: None)
    assert registry.versions(NAME, root) == []
    assert list((root / NAME).iterdir()) == []  # staging removed
    with pytest.raises(ValueError, match=f"No published version of '{NAME}'"):
        registry.locate(NAME, root=root)

    monkeypatch.undo()
    monkeypatch.setattr(publish, "export_savedmodel", fast_export)
    assert publish.publish_run(run, NAME, root, log=lambda m: None)["version"] == 1


_KILLED_PUBLISH = """
import sys, time
from pathlib import Path
from breastzoo.zoo import publish

def slow_export(model, directory):
    (Path(directory) / "saved_model.pb").write_bytes(b"partial")
    Path(sys.argv[3]).write_text("staging")  # tell the test we are mid-publish
    time.sleep(600)

publish.export_savedmodel = slow_export
publish.publish_run(sys.argv[1], "tiny_denet", sys.argv[2])
"""


def test_sigkill_during_publish_leaves_no_version(published, tmp_path, fast_export):
    """A publish killed with SIGKILL while staging: load/list see nothing; re-publish works."""
    from breastzoo.zoo.loaded import load

    _, run = published
    root, marker = tmp_path / "zoo", tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PUBLISH, str(run), str(root), str(marker)],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "publish never reached staging"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    staged = list((root / NAME).glob(".staging-*"))
    assert staged and (staged[0] / "saved_model.pb").exists()  # the half-written version
    assert registry.versions(NAME, root) == []
    rows = {r["name"]: r for r in registry.list_models(root)["models"]}
    assert rows[NAME]["versions"] == []
    with pytest.raises(ValueError, match="No published version"):
        load(NAME, root=root)

    out = publish.publish_run(run, NAME, root, log=lambda m: None)
    assert out["version"] == 1
    assert not list((root / NAME).glob(".staging-*"))  # the dead publisher's leftovers
    assert registry.verify_dir(root / NAME / "1") == []


def test_publish_refuses_bad_input(published, tmp_path, fast_export):
    _, run = published
    with pytest.raises(ValueError, match="plain identifiers"):
        publish.publish_run(run, "../evil", tmp_path)
    with pytest.raises(ValueError, match="no model.keras"):
        publish.publish_run(tmp_path, "x", tmp_path / "zoo")
    with pytest.raises(ValueError, match="remote zoo"):
        publish.publish_run(run, "x", "http://127.0.0.1:9/")
