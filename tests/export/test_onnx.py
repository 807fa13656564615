"""ONNX via tf2onnx, run in onnxruntime: probabilities within 1e-4 of Keras."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow  # 21 s
def test_onnx_parity(selective_model, images, keras_outputs, tmp_path):
    from breastzoo.export.onnx import OnnxRunner, write_onnx

    path = write_onnx(selective_model, tmp_path / "m.onnx")
    runner = OnnxRunner(path)
    assert runner.input_name == "images"
    assert sorted(runner.output_names) == ["boxes", "class", "n_rois", "probabilities"]
    out = runner(images)
    np.testing.assert_allclose(out["probabilities"], keras_outputs["probabilities"], atol=1e-4)
    np.testing.assert_array_equal(out["boxes"], keras_outputs["boxes"])
    np.testing.assert_array_equal(out["class"], keras_outputs["probabilities"].argmax(-1))
    with pytest.raises(ValueError, match="dtype=float32"):
        runner(images.astype("float32"))


def test_onnx_refuses_random_roi():
    from breastzoo.export.onnx import convert_onnx
    from breastzoo.models.factory import build_model
    from tests.export.conftest import CLASSES, small_config

    with pytest.raises(ValueError, match="random_roi"):
        convert_onnx(build_model(small_config("random_roi"), CLASSES))
