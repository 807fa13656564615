"""`breastzoo zoo list|show|verify|publish` and `breastzoo predict` through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastzoo.cli import app
from tests.zoo.conftest import NAME

runner = CliRunner()


def _run(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _png(path: Path, size: tuple[int, int] = (140, 92), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_zoo_list_show_verify(zoo_copy):
    out = _run("zoo", "list", "--root", zoo_copy, "--json")
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.stdout)["models"]}
    assert rows[NAME]["versions"] == [1] and rows[NAME]["synthetic"] is True
    assert "denet_sanet_400x" in rows  # the catalogue is listed, published or not

    table = _run("zoo", "list", "--root", zoo_copy)
    assert table.exit_code == 0 and NAME in table.stdout and "synthetic" in table.stdout

    shown = _run("zoo", "show", NAME, "--root", zoo_copy, "--json")
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["version"] == 1 and info["card"]["name"] == NAME
    assert info["metadata"]["parameters"] > 0 and "model.keras" in info["files"]
    text = _run("zoo", "show", NAME, "--root", zoo_copy)
    assert text.exit_code == 0 and "FLAGGED" in text.stdout and "Intended use" in text.stdout

    ok = _run("zoo", "verify", NAME, "--root", zoo_copy)
    assert ok.exit_code == 0 and "OK" in ok.stdout
    (zoo_copy / NAME / "1" / "card.md").write_text("edited")
    bad = _run("zoo", "verify", NAME, "--root", zoo_copy, "--json")
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert not report["ok"] and "card.md: checksum mismatch" in report["versions"][0][
        "problems"][0]


def test_zoo_errors_are_one_line(zoo_copy):
    out = _run("zoo", "show", "../../etc/passwd", "--root", zoo_copy)
    assert out.exit_code == 2 and "plain identifiers" in out.output
    assert "Traceback" not in out.output
    out = _run("zoo", "verify", "tiny_denat", "--root", zoo_copy)
    assert out.exit_code == 2 and "Did you mean 'tiny_denet'" in out.output


def test_zoo_publish_command(published, tmp_path, fast_export):
    _, run = published
    out = _run("zoo", "publish", run, "--name", "other_model", "--root", tmp_path / "z",
               "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["version"] == 1 and Path(result["path"]).name == "1"
    assert (tmp_path / "z" / "other_model" / "1" / "card.md").is_file()


def test_predict_json_and_overlays(zoo_copy, tmp_path):
    a = _png(tmp_path / "imgs" / "a.png", seed=1)
    _png(tmp_path / "imgs" / "sub" / "b.png", seed=2)
    _png(tmp_path / "imgs" / "sub" / "small.png", size=(130, 90), seed=3)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    other = _png(tmp_path / "other" / "a.png", seed=4)  # same stem as imgs/a.png
    overlays = tmp_path / "overlays"
    out = _run("predict", NAME, a.parent, other, "--root", zoo_copy, "--json",
               "--overlay", overlays)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    rows = {Path(r["image"]).relative_to(tmp_path).as_posix(): r for r in result["images"]}
    assert set(rows) == {"imgs/a.png", "imgs/sub/b.png", "imgs/sub/small.png", "other/a.png"}
    for r in rows.values():
        assert r["class"] in result["class_names"]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["class"] == max(r["probabilities"], key=r["probabilities"].get)
        assert len(r["boxes"]) == r["n_rois"] >= 3
        assert all(len(b) == 4 for b in r["boxes"])
        assert Path(r["overlay"]).is_file() and Path(r["overlay"]).parent == overlays
    assert rows["imgs/sub/small.png"]["size_note"] == "padded 130x90 to 140x92"
    assert "padded 130x90 to 140x92" in out.stderr
    assert len({r["overlay"] for r in rows.values()}) == 4  # no overwritten overlay
    with Image.open(rows["imgs/a.png"]["overlay"]) as im:
        assert im.size[0] > im.size[1]  # image and attention panels side by side


def test_predict_matches_load(zoo_copy, tmp_path):
    import breastzoo

    img = _png(tmp_path / "x.png", seed=5)
    out = _run("predict", zoo_copy / NAME / "1", img, "--json")  # a version folder path
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)["images"][0]
    model = breastzoo.load(NAME, root=str(zoo_copy))
    x = np.asarray(Image.open(img).convert("RGB"))[None]
    probs = model.predict(x)[0]
    np.testing.assert_allclose(list(row["probabilities"].values()), probs, atol=1e-5)


def test_predict_table_and_errors(zoo_copy, tmp_path):
    img = _png(tmp_path / "x.png")
    out = _run("predict", NAME, img, "--root", zoo_copy)
    assert out.exit_code == 0 and "x.png" in out.stdout
    out = _run("predict", NAME, tmp_path / "missing.png", "--root", zoo_copy)
    assert out.exit_code == 2 and "not found" in out.output
    out = _run("predict", "tiny_denat", img, "--root", zoo_copy)
    assert out.exit_code == 2 and "Did you mean 'tiny_denet'" in out.output
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    out = _run("predict", NAME, broken, "--root", zoo_copy)
    assert out.exit_code == 2 and "broken.png" in out.output


def test_predict_error_policy_refuses_wrong_sizes(zoo_copy, tmp_path):
    """A card saying `on_size_mismatch: error` makes wrong-size images a one-line error."""
    from breastzoo.zoo import registry

    version = zoo_copy / NAME / "1"
    card = json.loads((version / "card.json").read_text())
    card["input"]["on_size_mismatch"] = "error"
    (version / "card.json").write_text(json.dumps(card))
    registry.write_sums(version)  # a legitimately re-signed card
    img = _png(tmp_path / "wide.png", size=(150, 92))
    out = _run("predict", NAME, img, "--root", zoo_copy)
    assert out.exit_code == 2 and "refuses other sizes" in out.output
    assert "Received: 150x92" in out.output


def test_predict_whole_image_model_from_a_keras_file(tmp_path):
    """An unpublished .keras path works too; whole-image models report no ROI boxes."""
    from breastzoo.configs import preset
    from breastzoo.models.factory import build_model

    model = build_model(preset("tiny").replace(model="sanet_resize"), ["benign", "malignant"])
    path = tmp_path / "whole.keras"
    model.save(path)
    img = _png(tmp_path / "x.png", seed=6)
    out = _run("predict", path, img, "--json", "--overlay", tmp_path / "ov")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    row = result["images"][0]
    assert result["version"] is None and result["class_names"] == ["benign", "malignant"]
    assert row["boxes"] == [] and row["n_rois"] == 0
    x = np.asarray(Image.open(img).convert("RGB"))[None]
    np.testing.assert_allclose(list(row["probabilities"].values()),
                               np.asarray(model(x))[0], atol=1e-5)
    assert Path(row["overlay"]).is_file()
