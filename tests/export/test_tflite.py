"""TFLite with builtin ops only, run in ai_edge_litert: fp32 parity, fp16, int8."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def fp32(selective_model):
    from breastzoo.export.tflite import convert_tflite

    return convert_tflite(selective_model)


def test_fp32_builtin_only_and_within_1e4(fp32, images, keras_outputs):
    from breastzoo.export.tflite import TFLiteRunner, flex_ops, tflite_ops

    ops = tflite_ops(fp32)
    assert "CONV_2D" in ops and "GATHER" in ops  # SaNet and the gather crops are there
    assert flex_ops(fp32) == set()
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    runner = TFLiteRunner(fp32)
    assert runner.input_name == "images"
    out = runner(images)  # batch 5: the signature runner resizes the dynamic batch
    np.testing.assert_allclose(out["probabilities"], keras_outputs["probabilities"], atol=1e-4)
    np.testing.assert_array_equal(out["boxes"], keras_outputs["boxes"])
    np.testing.assert_array_equal(out["class"], keras_outputs["probabilities"].argmax(-1))
    single = runner(images[:1])
    np.testing.assert_allclose(single["probabilities"], keras_outputs["probabilities"][:1],
                               atol=1e-4)


def test_grid_walk_is_one_while_loop(fp32, selective_model):
    from breastzoo.export.tflite import flex_ops, tflite_operators

    assert selective_model.location_policy == "grid"
    ops = tflite_operators(fp32)
    assert "WHILE" in {op["op_name"] for op in ops} and flex_ops(fp32) == set()
    # SaNet (the classifier's convolutions) and DeNet's LSTM step are in the loop's body,
    # once; the main graph keeps only DeNet's context network on the thumbnail.
    body = [op for op in ops if op["subgraph"] > 0]
    main_convs = [op for op in ops if op["subgraph"] == 0 and op["op_name"] == "CONV_2D"]
    assert any(op["op_name"] == "CONV_2D" for op in body)
    assert main_convs and all("context" in op["output_names"][0] for op in main_convs)
    # No TensorList ops (not builtins; LiteRT#41): the loop carries fixed-shape tensors.
    assert not [op for op in ops if "TENSOR_LIST" in op["op_name"]]


def test_tflite_does_not_grow_with_the_walk(fp32, selective_model):
    from breastzoo.export.tflite import convert_tflite, tflite_operators
    from breastzoo.models.factory import build_model
    from tests.export.conftest import CLASSES, small_config

    # Twice the glimpses: the same operators, and a file within 1% of the same size (the
    # unrolled walk grew by one SaNet + DeNet step per glimpse).
    longer = build_model(small_config().replace(max_steps=4), CLASSES, "100X")
    assert longer.walk_steps == 2 * selective_model.walk_steps
    blob = convert_tflite(longer)
    assert len(tflite_operators(blob)) == len(tflite_operators(fp32))
    assert abs(len(blob) - len(fp32)) < 0.01 * len(fp32), (len(blob), len(fp32))


@pytest.mark.slow  # 14 s each
def test_int8_static_quantizes_the_convolutions(selective_model, images, keras_outputs):
    from ai_edge_litert.interpreter import Interpreter

    from breastzoo.export.tflite import (
        TFLiteRunner,
        convert_tflite,
        flex_ops,
        tflite_operators,
        tflite_ops,
    )

    blob = convert_tflite(selective_model, quantize="int8_static", representative=images)
    assert flex_ops(blob) == set()
    assert "QUANTIZE" in tflite_ops(blob)  # activations really are quantized
    interp = Interpreter(model_content=blob)
    # The grid walk (SaNet, DeNet's LSTM) is a WHILE loop's body: look at every subgraph.
    tensors = {(s, t["index"]): t for s in range(interp.num_subgraphs())
               for t in interp.get_tensor_details(subgraph_index=s)}

    def dtype(op, index):
        return tensors[(op["subgraph"], index)]["dtype"]

    ops = tflite_operators(blob)
    all_convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    # DeNet's context network (grid policy) is part of DeNet, which stays float.
    context = [op for op in all_convs if "context" in op["output_names"][0]]
    convs = [op for op in all_convs if op not in context]
    assert context and all(dtype(op, op["outputs"][0]) == np.float32 for op in context)
    # Every convolution of the patch classifier runs in int8 (weights and activations) ...
    assert convs and all(dtype(op, op["inputs"][1]) == np.int8 for op in convs)
    assert all(dtype(op, op["outputs"][0]) == np.int8 for op in convs)
    # ... while the vote's arithmetic and DeNet stay float (full-integer DIV/LSTM broke it).
    for op in ops:
        if op["op_name"] in ("DIV", "TANH", "L2_NORMALIZATION", "CUMSUM"):
            assert dtype(op, op["outputs"][0]) == np.float32, op["op_name"]
    out = TFLiteRunner(blob)(images)
    assert out["probabilities"].shape == (5, 3)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=0.01)
    assert out["boxes"].shape == keras_outputs["boxes"].shape


@pytest.mark.slow  # 14 s each
def test_int8_weights(selective_model, images, keras_outputs, fp32):
    from ai_edge_litert.interpreter import Interpreter

    from breastzoo.export.tflite import TFLiteRunner, convert_tflite, flex_ops, tflite_operators

    blob = convert_tflite(selective_model, quantize="int8")
    assert flex_ops(blob) == set()
    interp = Interpreter(model_content=blob)
    details = {(s, t["index"]): t for s in range(interp.num_subgraphs())
               for t in interp.get_tensor_details(subgraph_index=s)}
    # Dynamic-range quantization stores every weight of >= 1024 elements as int8 (smaller
    # ones, most of the tiny model's convolutions, stay float), in the WHILE body too.
    weights = [details[(op["subgraph"], op["inputs"][1])] for op in tflite_operators(blob)
               if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    large = [w for w in weights if np.prod(w["shape"]) >= 1024]
    assert large and all(w["dtype"] == np.int8 for w in large)
    out = TFLiteRunner(blob)(images)
    np.testing.assert_allclose(out["probabilities"], keras_outputs["probabilities"], atol=0.05)


@pytest.mark.slow
def test_fp16_close_to_fp32(selective_model, images, keras_outputs, fp32):
    from breastzoo.export.tflite import TFLiteRunner, convert_tflite, flex_ops

    blob = convert_tflite(selective_model, quantize="fp16")
    assert flex_ops(blob) == set() and len(blob) < len(fp32)
    out = TFLiteRunner(blob)(images)
    np.testing.assert_allclose(out["probabilities"], keras_outputs["probabilities"], atol=1e-2)


def test_bad_arguments(selective_model, images):
    from breastzoo.export.tflite import TFLiteRunner, convert_tflite

    with pytest.raises(ValueError, match="quantize='int4'"):
        convert_tflite(selective_model, quantize="int4")
    with pytest.raises(ValueError, match="representative=None"):
        convert_tflite(selective_model, quantize="int8_static")
    with pytest.raises(ValueError, match=r"shape=\(92, 140\)"):
        convert_tflite(selective_model, quantize="int8_static",
                       representative=[images[0, ..., 0]])
    with pytest.raises(FileNotFoundError, match="No TFLite model"):
        TFLiteRunner("/nonexistent/model.tflite")
