"""Texture anchor: fixed-length finite features, separable synthetic textures, save/load, k-fold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastzoo.data.records import ImageRecord
from breastzoo.data.splits import PatientLeakError
from breastzoo.models import texture
from breastzoo.models.texture import (
    TextureClassifier,
    evaluate_texture_kfold,
    extract_features,
    feature_names,
    texture_features,
)

CLASSES = ["benign", "malignant"]


def _realdata() -> Path:
    env = os.environ.get("BREASTZOO_REALDATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "realdata"


def _texture_image(rng: np.random.Generator, noisy: bool, size: tuple[int, int]) -> np.ndarray:
    """Pinkish image; "smooth" is low-frequency blotches, "noisy" adds pixel-level grain."""
    h, w = size
    coarse = rng.normal(0.0, 1.0, (h // 8 + 1, w // 8 + 1))
    blotches = np.kron(coarse, np.ones((8, 8)))[:h, :w] * 15.0
    grain = rng.normal(0.0, 40.0, (h, w)) if noisy else 0.0
    base = np.array([200.0, 140.0, 180.0]) + rng.normal(0.0, 10.0, 3)  # per-image tint
    image = base + (blotches + grain)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def _synthetic_records(root: Path, n_per_class: int, seed: int = 0) -> list[ImageRecord]:
    """``n_per_class`` smooth (benign) and noisy (malignant) PNGs, one patient each."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(2 * n_per_class):
        noisy = i % 2 == 1
        path = root / f"img{i:03d}.png"
        Image.fromarray(_texture_image(rng, noisy, (48, 64))).save(path)
        label, subtype = ("malignant", "DC") if noisy else ("benign", "A")
        records.append(ImageRecord(str(path), "folder", f"p{i:03d}", label, subtype, None))
    return records


@pytest.mark.parametrize("size", [(40, 56), (460, 700)])
def test_features_finite_fixed_length(size):
    rng = np.random.default_rng(0)
    for image in (
        rng.integers(0, 256, (*size, 3), dtype=np.uint8),
        np.full((*size, 3), 255, np.uint8),  # blank background: GLCM correlation is 0/0
    ):
        feats = texture_features(image)
        assert feats.shape == (len(feature_names()),) == (58,)
        assert np.isfinite(feats).all()


def test_features_reject_bad_input():
    with pytest.raises(ValueError, match="uint8 RGB"):
        texture_features(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        texture_features(np.zeros((8, 32, 3), np.uint8))


def test_classifier_separates_textures_and_round_trips(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    train = _synthetic_records(tmp_path / "train", 12, seed=0)
    test = _synthetic_records(tmp_path / "test", 8, seed=1)
    clf = TextureClassifier().fit(train, CLASSES, "binary")
    probs = clf.predict_proba(test)
    assert probs.shape == (16, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    y = np.array([1 if r.label == "malignant" else 0 for r in test])
    assert (probs.argmax(axis=1) == y).mean() >= 0.9  # chance is 0.5

    path = clf.save(tmp_path / "models" / "texture.joblib")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["texture.joblib"]  # no temp file left
    loaded = TextureClassifier.load(path)
    assert loaded.class_names == CLASSES and loaded.task == "binary"
    np.testing.assert_array_equal(loaded.predict_proba(test), probs)


def test_feature_cache_memory_and_disk(tmp_path, monkeypatch):
    (tmp_path / "img").mkdir()
    records = _synthetic_records(tmp_path / "img", 2)
    paths = [r.path for r in records]
    calls = []
    real = texture._features_of_file
    monkeypatch.setattr(texture, "_features_of_file", lambda p: calls.append(p) or real(p))
    cache: dict = {}
    first = extract_features(paths, cache=cache, cache_dir=tmp_path / "cache")
    assert len(calls) == 4 and len(cache) == 4
    again = extract_features(paths, cache=cache)
    from_disk = extract_features(paths, cache_dir=tmp_path / "cache")
    assert len(calls) == 4  # both served from a cache
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, from_disk)
    # A rewritten file (new size/mtime) is a cache miss.
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    extract_features(paths, cache=cache)
    assert len(calls) == 5


def test_kfold(tmp_path):
    (tmp_path / "img").mkdir()
    records = _synthetic_records(tmp_path / "img", 6)  # p000 benign, p001 malignant, ...
    folds = [[f"p{i:03d}" for i in range(start, 12, 3)] for start in range(3)]
    result = evaluate_texture_kfold(records, folds, CLASSES, "binary")
    assert len(result["folds"]) == 3
    assert [f["n_images"] for f in result["folds"]] == [4, 4, 4]
    assert result["pooled"]["n_images"] == 12
    assert sum(result["pooled"]["pred_counts"].values()) == 12
    assert result["summary"]["balanced_accuracy"]["mean"] >= 0.8
    assert result["majority_rate"] == 0.5


def test_kfold_refuses_split_patient_group(tmp_path):
    (tmp_path / "img").mkdir()
    records = _synthetic_records(tmp_path / "img", 2)
    # Two ids sharing the numeric core 14-100 are one patient: they must not straddle folds.
    records = [
        ImageRecord(r.path, "breakhis", pid, r.label, r.subtype, "100X")
        for r, pid in zip(records, ["14-100AB", "14-100CD", "14-200", "14-300"], strict=True)
    ]
    with pytest.raises(PatientLeakError, match="14-100"):
        evaluate_texture_kfold(records, [["14-100AB", "14-200"], ["14-300"]], CLASSES)


def test_real_images_features_finite():
    root = _realdata()
    if not root.is_dir():
        pytest.skip(f"../shared/realdata not found: {root} (set BREASTZOO_REALDATA to override)")
    from breastzoo.data.index import index_dataset

    records = index_dataset(root, "breakhis").filter("100X").records
    benign = [r for r in records if r.label == "benign"][:3]
    malignant = [r for r in records if r.label == "malignant"][:3]
    feats = extract_features([r.path for r in benign + malignant])
    assert feats.shape == (6, 58)
    assert np.isfinite(feats).all()
