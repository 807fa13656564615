"""On the demo preset's trained model: int8 TFLite top-1 agreement with Keras >= 98% on the
demo test split; fp32 TFLite and ONNX within 1e-4 on demo images (slow: trains the demo model
unless `make demo` already left its run folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

DEMO_RUN = Path("runs/breakhis-100x-denet_sanet-subtype-demo-seed0")


@pytest.fixture(scope="module")
def demo_run():
    if not (DEMO_RUN / "model.keras").is_file():
        from breastzoo.configs import preset
        from breastzoo.paths import ensure_demo_data
        from breastzoo.training import fit

        root = ensure_demo_data()
        fit("breakhis", data=str(root), mag="100", config=preset("demo"), preset="demo",
            out=DEMO_RUN)
    return DEMO_RUN


def test_demo_parity_and_int8_agreement(demo_run):
    from breastzoo.export.onnx import OnnxRunner, convert_onnx
    from breastzoo.export.parity import (
        FP32_ATOL,
        INT8_MIN_AGREEMENT,
        compare_outputs,
        keras_runner,
        predict_batched,
        run_images,
    )
    from breastzoo.export.tflite import TFLiteRunner, convert_tflite, flex_ops
    from breastzoo.runs import load_model

    model = load_model(demo_run / "model.keras")
    calibration, _ = run_images(demo_run, "train", limit=64)
    test, _ = run_images(demo_run, "test")
    assert len(test) >= 50 and test.dtype == np.uint8 and test.shape[1:] == (460, 700, 3)
    reference = predict_batched(keras_runner(model), test, 16)

    fp32 = convert_tflite(model)
    fp32_cmp = compare_outputs(reference, predict_batched(TFLiteRunner(fp32), test, 16))
    assert fp32_cmp["max_abs_diff"] <= FP32_ATOL and fp32_cmp["top1_agreement"] == 1.0

    onnx_cmp = compare_outputs(reference, predict_batched(OnnxRunner(convert_onnx(model)),
                                                          test, 16))
    assert onnx_cmp["max_abs_diff"] <= FP32_ATOL and onnx_cmp["top1_agreement"] == 1.0

    int8 = convert_tflite(model, quantize="int8")
    int8_cmp = compare_outputs(reference, predict_batched(TFLiteRunner(int8), test, 16))
    assert int8_cmp["top1_agreement"] >= INT8_MIN_AGREEMENT, int8_cmp
    assert len(int8) < len(fp32)

    # int8_static (calibrated on the training split) runs and stays builtin-only; its
    # agreement (82-85% measured, docs/export.md) is below the target, so it is not asserted.
    # Nor are its ROIs: DeNet reads SaNet's int8 features, so its walk moves (retrained demo
    # model: 41 of 96 test images had an ROI more than 1 px away, up to 118 px).
    static = convert_tflite(model, quantize="int8_static", representative=calibration)
    static_out = predict_batched(TFLiteRunner(static), test, 16)
    static_cmp = compare_outputs(reference, static_out)
    assert static_cmp["n"] == len(test) and flex_ops(static) == set()
    np.testing.assert_allclose(static_out["probabilities"].sum(-1), 1.0, atol=1e-3)
