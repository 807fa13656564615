"""The serving contract and its builtin-op variant equal the models' own inference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.export.conftest import CLASSES, small_config


def test_builtin_selective_equals_infer(selective_model, images, keras_outputs):
    from breastzoo.export.serving import serving_outputs

    out = serving_outputs(selective_model, images, builtin_ops=True)
    assert sorted(out) == ["boxes", "class", "n_rois", "probabilities"]
    np.testing.assert_allclose(out["probabilities"], keras_outputs["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(out["boxes"], keras_outputs["boxes"])
    np.testing.assert_array_equal(out["n_rois"], keras_outputs["n_rois"])
    np.testing.assert_array_equal(out["class"], keras_outputs["probabilities"].argmax(-1))
    assert out["class"].dtype == np.int32


@pytest.fixture(scope="module")
def gaussian_model():
    """The paper's Gaussian location policy (the default is the grid), whose inference draws
    fixed-seed location noise: what the builtin-op variant's noise table replaces."""
    from breastzoo.models.factory import build_model

    return build_model(small_config().replace(location_policy="gaussian"), CLASSES, "100X")


def test_builtin_graph_has_no_random_or_bitwise_ops(selective_model, gaussian_model):
    from breastzoo.export.serving import serving_function

    def ops_of(builtin: bool, model=gaussian_model) -> set[str]:
        graph = serving_function(model, builtin_ops=builtin).get_concrete_function()
        gdef = graph.graph.as_graph_def()
        names = {n.op for n in gdef.node}
        for fn in gdef.library.function:
            names |= {n.op for n in fn.node_def}
        return names

    builtin = ops_of(True)
    assert not {op for op in builtin if "Random" in op or "Bitwise" in op}
    # The reason the variant exists: the model's own inference emits both.
    plain = ops_of(False)
    assert any("StatelessRandomNormal" in op for op in plain)
    assert "BitwiseAnd" in plain
    # The grid policy walks to the most probable unvisited tile: no random op at all.
    assert not {op for op in ops_of(False, selective_model) if "Random" in op}


def test_noise_table_matches_keras_for_every_image_of_a_batch(gaussian_model, images):
    from breastzoo.export.serving import serving_outputs

    out = serving_outputs(gaussian_model, images, builtin_ops=True)
    # One draw per step for the whole batch, in Keras and in the table: every image matches,
    # and an image alone lands where it lands inside the batch.
    np.testing.assert_array_equal(out["boxes"], np.asarray(gaussian_model.infer(images)["boxes"]))
    alone = gaussian_model.infer(images[2:3])
    np.testing.assert_array_equal(out["boxes"][2], np.asarray(alone["boxes"])[0])


def test_probability_roi_order(images):
    from breastzoo.export.serving import serving_outputs
    from breastzoo.models.factory import build_model

    config = small_config()
    if "roi_order" not in {f for f in config.__dataclass_fields__}:
        pytest.skip("this checkout's models have no roi_order option")
    model = build_model(config.replace(roi_order="probability"), CLASSES)
    ref = model.infer(images)
    out = serving_outputs(model, images, builtin_ops=True)
    np.testing.assert_allclose(out["probabilities"], np.asarray(ref["probs"]), atol=1e-6)
    np.testing.assert_array_equal(out["boxes"], np.asarray(ref["boxes"]))


def test_whole_image_resize_as_taps_equals_keras(images):
    from breastzoo.export.serving import has_rois, serving_outputs
    from breastzoo.models.factory import build_model

    model = build_model(small_config("sanet_resize"), CLASSES)
    ref = np.asarray(model(images, training=False))
    out = serving_outputs(model, images, builtin_ops=True)
    assert sorted(out) == ["class", "probabilities"] and not has_rois(model)
    np.testing.assert_allclose(out["probabilities"], ref, atol=1e-5)
    plain = serving_outputs(model, images)
    np.testing.assert_allclose(plain["probabilities"], ref, atol=1e-6)


def test_unservable_models_are_refused(images):
    from breastzoo.export.serving import serving_function, serving_outputs
    from breastzoo.models.factory import build_model

    oracle = build_model(small_config("oracle_roi"), CLASSES)
    with pytest.raises(ValueError, match="oracle"):
        serving_function(oracle)
    random_roi = build_model(small_config("random_roi"), CLASSES)
    with pytest.raises(ValueError, match="random_roi"):
        serving_outputs(random_roi, images, builtin_ops=True)
    assert sorted(serving_outputs(random_roi, images)) == [
        "boxes", "class", "n_rois", "probabilities"]
    with pytest.raises(ValueError, match="Received: model=str"):
        serving_function("not a model")


def test_bad_noise_rows(selective_model, images):
    from breastzoo.export.serving import serving_outputs

    with pytest.raises(ValueError, match="noise_rows=0"):
        serving_outputs(selective_model, images, builtin_ops=True, noise_rows=0)
