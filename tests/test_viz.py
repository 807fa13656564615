"""Plots: non-empty PNGs, atomic writes, input validation."""

from __future__ import annotations

import numpy as np
import pytest

from breastzoo.evaluation import evaluate_predictions
from breastzoo.viz import plot_confusion_matrix, plot_history, plot_roc, plot_roi_overlay

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000
    # Atomic write: no temporary files left beside the plot.
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix(tmp_path, normalize):
    cm = [[5, 1, 0], [0, 0, 0], [2, 0, 7]]  # the empty row must not divide by zero
    out = plot_confusion_matrix(cm, ["A", "F", "DC"], tmp_path / "sub" / "cm.png", normalize)
    assert out == tmp_path / "sub" / "cm.png"
    assert_png(out)


def test_confusion_matrix_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match="len\\(class_names\\)=3"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "x.png")


def test_roc_from_metrics_with_missing_class(tmp_path):
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    probs = rng.dirichlet(np.ones(3), size=8)
    metrics = evaluate_predictions(y, probs, list("aabbccdd"), ["u", "v", "w"])
    out = plot_roc(metrics, tmp_path / "roc.png")
    assert_png(out)
    # Overwriting an existing plot works (os.replace).
    assert_png(plot_roc(metrics, out))
    with pytest.raises(ValueError, match="'roc'"):
        plot_roc({"irr": 1.0}, tmp_path / "bad.png")


def test_roi_overlay_with_attention(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (46, 70, 3), dtype=np.uint8)
    boxes = [(0, 0, 20, 20), (10, 30, 40, 60)]
    attention = rng.uniform(0, 1, (12, 12))
    out = plot_roi_overlay(
        image, boxes, tmp_path / "roi.png", attention=attention, title="x", labels=["DC", "LC"]
    )
    assert_png(out)
    assert_png(plot_roi_overlay(image[..., 0], [], tmp_path / "gray.png"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"boxes": [(1, 2, 3)]}, "boxes must be"),
        ({"attention": np.full((4, 4), 2.0)}, "max=2.000"),
        ({"labels": ["a", "b"]}, "2 labels"),
        ({"image_uint8": np.zeros((4, 4, 3), np.float32)}, "dtype=float32"),
    ],
)
def test_roi_overlay_rejects_bad_input(tmp_path, kwargs, match):
    args = {"image_uint8": np.zeros((8, 8, 3), np.uint8), "boxes": [(0, 0, 4, 4)]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plot_roi_overlay(path=tmp_path / "r.png", **args)


def test_history(tmp_path):
    history = {
        "loss": [1.0, 0.7, 0.5],
        "val_loss": [1.2, 0.9, None],
        "accuracy": [0.5, 0.6, 0.8],
        "reward": [0.1, 0.2, 0.3],
    }
    assert_png(plot_history(history, tmp_path / "history.png"))
    with pytest.raises(ValueError, match="no values"):
        plot_history({}, tmp_path / "empty.png")
