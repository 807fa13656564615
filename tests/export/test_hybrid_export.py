"""Paper 002's hybrid and the bagging ensemble serve and export like every other model.

Cheap tests build untrained tiny models (export does not depend on the weights); the slow ones
run `breastzoo fit --model hybrid --publish` (and `--bagging 2 --publish`) on the tiny testbed
and `breastzoo export` the published model to SavedModel, TFLite and ONNX, each checked against
Keras on the run's test images (fp32: probabilities within 1e-4, same classes).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.export.conftest import CLASSES

FP32_ATOL = 1e-4


def _hybrid(rule: str = "mean", seed: int = 0):
    import keras

    from breastzoo.configs import preset
    from breastzoo.models.factory import build_model

    keras.utils.set_random_seed(seed)
    return build_model(preset("tiny", "hybrid").replace(local_rule=rule, seed=seed), CLASSES)


@pytest.fixture(scope="module")
def hybrid_model():
    return _hybrid()


@pytest.mark.parametrize("rule", [pytest.param("mean", marks=pytest.mark.slow), "max"])
def test_builtin_hybrid_equals_keras(rule, images):
    from breastzoo.export.serving import has_rois, serving_outputs

    images = images[:2]  # eager Inception-SEP branches: a few seconds per image
    model = _hybrid(rule)
    ref = np.asarray(model(images, training=False))
    plain = serving_outputs(model, images)
    builtin = serving_outputs(model, images, builtin_ops=True)
    assert sorted(builtin) == ["boxes", "class", "n_rois", "probabilities"] and has_rois(model)
    np.testing.assert_allclose(plain["probabilities"], ref, atol=1e-6)
    np.testing.assert_allclose(builtin["probabilities"], ref, atol=1e-5)
    # The boxes are the 3x2 grid cells of the 140x92 image; every cell votes.
    grid = np.asarray(model.grid_boxes(), "float32")
    np.testing.assert_array_equal(builtin["boxes"], np.broadcast_to(grid, (len(images), 6, 4)))
    np.testing.assert_array_equal(builtin["n_rois"], [6] * len(images))


@pytest.mark.slow  # 5-20 s each: two eager hybrids, three passes
@pytest.mark.parametrize("rule", ["sum", "max"])
def test_builtin_ensemble_of_hybrids_equals_keras(rule, images):
    from breastzoo.export.serving import serving_outputs
    from breastzoo.models.ensemble import Ensemble

    images = images[:2]
    ensemble = Ensemble([_hybrid("max", seed=1), _hybrid("mean", seed=2)], rule=rule)
    ref = np.asarray(ensemble(images, training=False))
    out = serving_outputs(ensemble, images, builtin_ops=True)
    np.testing.assert_allclose(out["probabilities"], ref, atol=1e-5)
    np.testing.assert_array_equal(out["class"], ref.argmax(-1))
    # Regions are the first member's (what Ensemble.infer reports).
    np.testing.assert_array_equal(out["boxes"], np.asarray(ensemble.infer(images)["boxes"]))


@pytest.mark.parametrize("rule", ["sum", "max"])
def test_ensemble_of_whole_image_models_reports_no_regions(rule, images):
    from breastzoo.export.serving import has_rois, serving_outputs
    from breastzoo.models.baselines import WholeImageClassifier
    from breastzoo.models.ensemble import Ensemble

    members = [WholeImageClassifier(3, image_size=(140, 92), input_size=32, width=2)
               for _ in range(3)]
    ensemble = Ensemble(members, rule=rule)
    out = serving_outputs(ensemble, images, builtin_ops=True)
    assert sorted(out) == ["class", "probabilities"] and not has_rois(ensemble)
    np.testing.assert_allclose(out["probabilities"], np.asarray(ensemble(images)), atol=1e-5)


@pytest.mark.slow  # 22 s on 2 cores
def test_untrained_hybrid_savedmodel_parity(hybrid_model, images, tmp_path):
    from breastzoo.export.parity import compare_outputs
    from breastzoo.export.savedmodel import load_signature, write_savedmodel

    write_savedmodel(hybrid_model, tmp_path / "1")
    fn = load_signature(tmp_path / "1")
    out = {k: v.numpy() for k, v in fn(images=images).items()}
    assert sorted(out) == ["boxes", "class", "n_rois", "probabilities"]
    ref = hybrid_model.infer(images)  # Keras, eagerly
    cmp = compare_outputs({"probabilities": ref["probs"], "boxes": ref["boxes"]}, out)
    assert cmp["max_abs_diff"] <= FP32_ATOL and cmp["top1_agreement"] == 1.0, cmp
    assert cmp["boxes_max_abs_diff"] == 0.0
    np.testing.assert_array_equal(out["n_rois"], [6] * len(images))


@pytest.mark.slow  # 7-15 s each: a TFLite conversion
@pytest.mark.parametrize("name", ["centre_roi", "sanet_resize"])
def test_tflite_of_the_other_baselines(name, images):
    from breastzoo.export.serving import serving_outputs
    from breastzoo.export.tflite import TFLiteRunner, convert_tflite, flex_ops
    from breastzoo.models.factory import build_model
    from tests.export.conftest import small_config

    # centre_roi: fixed crops, no random op; sanet_resize: the resize as gathered filter taps
    # (an einsum there once gave a flatbuffer the interpreter refused).
    model = build_model(small_config(name), CLASSES)
    blob = convert_tflite(model)
    assert flex_ops(blob) == set()
    out = TFLiteRunner(blob)(images)
    ref = {k: np.asarray(v) for k, v in serving_outputs(model, images).items()}
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=FP32_ATOL)
    assert sorted(out) == sorted(ref)
    if "boxes" in ref:
        np.testing.assert_array_equal(out["boxes"], ref["boxes"])


# ---------------------------------------------------------------- fit --publish, export


def _fit_and_publish(testbed, base, *extra: str) -> tuple:
    """`breastzoo fit breakhis --model hybrid --mag 200 --task binary --publish` (tiny).

    Trains eagerly (tracing the two Inception-SEP branches' training graph costs about a
    minute of CPU, far more than the tiny run; see tests/test_fit_hybrid.py); the SavedModel
    that publish writes is traced as always."""
    import tensorflow as tf

    from breastzoo.cli import app

    root, run = base / "zoo", base / "run"
    tf.config.run_functions_eagerly(True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Even though the `tf.config.experimental")
            result = CliRunner().invoke(app, [
                "fit", "breakhis", "--model", "hybrid", "--mag", "200", "--task", "binary",
                "--data", str(testbed), "--config", "tiny", "--out", str(run), "--publish",
                "--json", *extra,
            ], env={"BREASTZOO_ZOO": str(root)})
    finally:
        tf.config.run_functions_eagerly(False)
    assert result.exit_code == 0, result.output
    published = json.loads(result.stdout)["published"]
    # The default zoo name comes from the model table: paper 002's hybrid is hybrid_sep.
    assert published["name"] == "hybrid_sep_200x" and published["version"] == 1
    return root, published["name"]


@pytest.fixture(scope="module")
def published_hybrid(tiny_testbed, tmp_path_factory):
    return _fit_and_publish(tiny_testbed, tmp_path_factory.mktemp("hybrid"))


@pytest.fixture(scope="module")
def published_ensemble(tiny_testbed, tmp_path_factory):
    return _fit_and_publish(tiny_testbed, tmp_path_factory.mktemp("bagging"), "--bagging", "2")


def _export(root, name: str, fmt: str, out, *extra: str) -> dict:
    from breastzoo.cli import app

    result = CliRunner().invoke(app, [
        "export", name, "--root", str(root), "--format", fmt, "--out", str(out),
        "--check-images", "4", "--json", *extra,
    ])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _check_published(root, name: str, kind: str, tmp_path) -> None:
    from breastzoo.zoo.loaded import load

    loaded = load(name, root=root)
    assert type(loaded.keras_model).__name__ == kind and loaded.has_rois
    version = root / name / "1"
    assert (version / "saved_model.pb").is_file()  # the version folder is a SavedModel
    for fmt, out in (("savedmodel", tmp_path / "sm" / "1"), ("tflite", tmp_path / "m.tflite"),
                     ("onnx", tmp_path / "m.onnx")):
        report = _export(root, name, fmt, out)
        check = report["check"]
        print(f"{name} {fmt}: {check}")  # the parity numbers (pytest -s / -rP)
        assert check["images"].endswith("test-split images"), check
        assert check["max_abs_diff"] <= FP32_ATOL and check["top1_agreement"] == 1.0, (fmt,
                                                                                        check)
        assert check["boxes_max_abs_diff"] == 0.0, (fmt, check)
    # int8 weights (dynamic range) convert with builtin ops only; on an untrained-quality tiny
    # model the agreement means little, so it is reported, not asserted.
    from breastzoo.export.tflite import flex_ops

    report = _export(root, name, "tflite", tmp_path / "m_int8.tflite", "--quantize", "int8")
    assert flex_ops(tmp_path / "m_int8.tflite") == set() and report["check"]["n"] > 0


@pytest.mark.slow  # 2-4 min: trains, publishes, exports four times
def test_fit_hybrid_publish_then_export(published_hybrid, tmp_path):
    root, name = published_hybrid
    _check_published(root, name, "Hybrid", tmp_path)


@pytest.mark.slow  # 4-5 min: two members
def test_fit_bagging_publish_then_export(published_ensemble, tmp_path):
    root, name = published_ensemble
    _check_published(root, name, "Ensemble", tmp_path)
