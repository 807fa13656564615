"""Baselines: they train, vote, report the boxes they used, and round-trip through .keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from breastzoo.configs import preset
from breastzoo.data.pipeline import crop_at
from breastzoo.models.baselines import PatchVoteClassifier, WholeImageClassifier
from breastzoo.models.factory import build_model, compile_model
from tests.helpers import assert_keras_roundtrip

W, H = 64, 48


def images(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, H, W, 3), dtype=np.uint8)


@pytest.mark.slow  # 22 s on 2 cores
def test_sanet_resize_trains_and_roundtrips(tmp_path):
    m = WholeImageClassifier(3, image_size=(W, H), input_size=32, width=2, feature_dim=4)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = images(), np.array([0, 1, 2, 0])
    m(x)
    before = [v.numpy().copy() for v in m.trainable_variables]
    m.fit(x, y, epochs=1, verbose=0)
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, m.trainable_variables,
                                                             strict=True))
    out = m.infer(x)
    np.testing.assert_array_equal(np.asarray(out["boxes"])[0], [[0, 0, H, W]])
    assert_keras_roundtrip(m, x, tmp_path)


def test_random_roi_boxes_are_the_patches_it_classified():
    m = PatchVoteClassifier(3, image_size=(W, H), patch_size=16, k=3, width=2, feature_dim=4)
    x = images(2)
    patches, centres = m.patches(x)
    c = np.asarray(centres)
    assert c.shape == (2, 3, 2)
    assert (c[..., 0] >= 8).all() and (c[..., 0] <= H - 8).all()
    again = np.asarray(crop_at(x.astype("float32") / 255.0, centres, 16, normalized=False,
                               border="clamp"))
    np.testing.assert_allclose(np.asarray(patches), again)
    out = m.infer(x)
    boxes = np.asarray(out["boxes"])
    np.testing.assert_array_equal(boxes[..., 2] - boxes[..., 0], 16)


@pytest.mark.slow  # 19 s
def test_oracle_roi_uses_given_centres_and_trains(tmp_path):
    m = PatchVoteClassifier(2, image_size=(W, H), patch_size=16, k=2, mode="oracle", width=2,
                            feature_dim=4)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = images(4)
    centres = np.tile(np.array([[[10.0, 12.0], [30.0, 40.0]]], "float32"), (4, 1, 1))
    inputs = {"images": x, "centres": centres}
    logs = m.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    boxes = np.asarray(m.infer(inputs)["boxes"])
    np.testing.assert_array_equal(boxes[0], [[2, 4, 18, 20], [22, 32, 38, 48]])
    with pytest.raises(ValueError, match="centres"):
        m(x)
    assert_keras_roundtrip(m, inputs, tmp_path)


@pytest.mark.parametrize("name", ["denet_sanet", "sanet_resize", "random_roi", "oracle_roi",
                                  "grid_confident"])
def test_factory_builds_every_fast_model(name):
    cfg = preset("tiny").replace(model=name)
    model = build_model(cfg, ["a", "b"], "100X")
    compile_model(model, cfg, steps_per_epoch=3)
    assert model.built and model.class_names == ["a", "b"]


@pytest.mark.slow  # 8 + 5 s on 2 cores (ResNet-50 builds)
@pytest.mark.parametrize("name", ["resnet50_roi", "resnet50_full"])
def test_factory_builds_resnet_models(name, tmp_path):
    cfg = preset("tiny").replace(model=name)
    model = build_model(cfg, ["a", "b"])
    w, h = cfg.image_size
    assert_keras_roundtrip(model, np.zeros((1, h, w, 3), "uint8"), tmp_path)
    assert keras.ops.shape(model(np.zeros((1, h, w, 3), "uint8")))[-1] == 2


def test_centre_roi_crops_around_the_centre_deterministically(tmp_path):
    from breastzoo.models.baselines import CENTRE_OFFSETS

    m = PatchVoteClassifier(2, image_size=(W, H), patch_size=16, k=5, mode="centre", width=2,
                            feature_dim=4)
    x = images(3)
    _, centres = m.patches(x)
    c = np.asarray(centres)
    expected = [(H / 2 + dy * 8, W / 2 + dx * 8) for dy, dx in CENTRE_OFFSETS[:5]]
    for row in c:  # the same crops for every image, first one at the centre
        np.testing.assert_allclose(row, expected)
    np.testing.assert_allclose(np.asarray(m(x)), np.asarray(m(x)))  # no random draw
    assert_keras_roundtrip(m, x, tmp_path)
    with pytest.raises(ValueError, match="at most 9"):
        PatchVoteClassifier(2, image_size=(W, H), patch_size=16, k=10, mode="centre")


def test_patch_scale_pools_a_wider_window_and_reports_it():
    from breastzoo.models.preprocessing import crop_scaled

    x = np.random.default_rng(0).random((1, H, W, 3)).astype("float32")
    centres = np.array([[[20.0, 30.0]]], "float32")
    pooled = np.asarray(crop_scaled(x, centres, 8, scale=2))[0, 0]
    window = x[0, 20 - 8:20 + 8, 30 - 8:30 + 8]  # 16x16 around the centre
    expected = window.reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    m = PatchVoteClassifier(2, image_size=(W, H), patch_size=8, k=3, mode="centre",
                            patch_scale=2, width=2, feature_dim=4)
    boxes = np.asarray(m.infer(images(1))["boxes"])[0]
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], 16)  # the window, not the input
    np.testing.assert_allclose(boxes[0], [H / 2 - 8, W / 2 - 8, H / 2 + 8, W / 2 + 8])
    with pytest.raises(ValueError, match="patch_scale"):
        build_model(preset("tiny").replace(patch_scale=5), ["a", "b"])  # 160 > 92 pixels


def test_random_dihedral_gives_all_eight_symmetries_and_nothing_else():
    from breastzoo.models.shared_ops import random_dihedral

    patch = np.arange(3 * 3, dtype="float32").reshape(1, 3, 3, 1)
    batch = np.repeat(patch, 400, axis=0)
    out = np.asarray(random_dihedral(batch, keras.random.SeedGenerator(0)))[..., 0]
    group = set()
    for t in (patch[0, ..., 0], patch[0, ..., 0].T):
        for k in range(4):
            group.add(np.rot90(t, k).tobytes())
    seen = {o.tobytes() for o in out}
    assert seen == group  # each of the 8 shows up in 400 draws, and only those 8


def test_patch_dihedral_turns_training_patches_only(tmp_path):
    x = images()
    m = PatchVoteClassifier(2, image_size=(W, H), patch_size=16, k=3, mode="centre",
                            width=2, feature_dim=4, patch_dihedral=True)
    plain = PatchVoteClassifier(2, image_size=(W, H), patch_size=16, k=3, mode="centre",
                                width=2, feature_dim=4)
    m(x)
    plain(x)
    plain.set_weights(m.get_weights())
    # Inference is untouched: same weights, same probabilities.
    np.testing.assert_allclose(np.asarray(m.infer(x)["probs"]),
                               np.asarray(plain.infer(x)["probs"]), atol=1e-6)
    # Training sees turned patches: the training-mode outputs differ from the plain model's.
    assert not np.allclose(np.asarray(m(x, training=True)), np.asarray(plain(x, training=True)))
    assert build_model(preset("tiny").replace(model="random_roi", patch_dihedral=True),
                       ["a", "b"]).patch_dihedral
    assert_keras_roundtrip(m, x, tmp_path)


# ---------------------------------------------------------------- grid_confident


def _grid_model(k=3, **kwargs):
    keras.utils.set_random_seed(1)
    return PatchVoteClassifier(3, image_size=(W, H), patch_size=16, k=k,
                               mode="grid_confident", width=2, feature_dim=4, **kwargs)


def test_grid_centres_tile_the_whole_image_inside_it():
    from breastzoo.models.baselines import grid_centres

    assert grid_centres((700, 460), 112).shape == (12 * 8, 2)  # stride 56, last tile moved back
    for size, window in [((W, H), 16), ((70, 46), 16), ((700, 460), 224), ((16, 16), 16)]:
        c = grid_centres(size, window)
        top = c - window // 2
        assert (top >= 0).all() and (top[:, 0] + window <= size[1]).all()
        assert (top[:, 1] + window <= size[0]).all()
        covered = np.zeros(size[::-1], bool)
        for y, x in top.astype(int):
            covered[y:y + window, x:x + window] = True
        assert covered.all()
        assert len({tuple(r) for r in c.tolist()}) == len(c)  # no tile twice
    np.testing.assert_array_equal(grid_centres((W, H), 16), grid_centres((W, H), 16))


def test_grid_confident_votes_its_k_most_confident_tiles():
    from breastzoo.models.shared_ops import vote

    m = _grid_model()
    x = images(2)
    probs, grid = (np.asarray(v) for v in m.tile_probs(x))
    assert probs.shape == (2, m.num_tiles, 3) and m.num_tiles == 7 * 5
    # The tile probabilities are the classifier on each grid window, computed directly.
    top = grid.astype(int) - 8
    crops = np.stack([[img[y:y + 16, x:x + 16] for y, x in top] for img in x]) / 255.0
    direct = np.asarray(m.classifier(crops.reshape(-1, 16, 16, 3).astype("float32")))
    np.testing.assert_allclose(probs, direct.reshape(probs.shape), atol=1e-6)
    out = {k: np.asarray(v) for k, v in m.infer(x).items()}
    for i in range(len(x)):
        best = np.argsort(-probs[i].max(-1), kind="stable")[: m.k]
        np.testing.assert_allclose(out["patch_probs"][i], probs[i, best], atol=1e-6)
        np.testing.assert_array_equal(out["boxes"][i],
                                      np.concatenate([top[best], top[best] + 16], axis=1))
    expected, n = vote(out["patch_probs"], m.k)
    np.testing.assert_allclose(out["probs"], np.asarray(expected), atol=1e-6)
    np.testing.assert_array_equal(out["n_rois"], np.asarray(n))
    np.testing.assert_allclose(np.asarray(m(x)), out["probs"], atol=1e-6)


def test_grid_confident_is_deterministic_and_independent_of_the_batch():
    m = _grid_model(k=4, patch_scale=2)
    x = images(3, seed=5)
    batch = {k: np.asarray(v) for k, v in m.infer(x).items()}
    again = {k: np.asarray(v) for k, v in m.infer(x).items()}
    for key in batch:
        np.testing.assert_array_equal(batch[key], again[key])
    for i in range(len(x)):
        alone = {k: np.asarray(v) for k, v in m.infer(x[i:i + 1]).items()}
        np.testing.assert_allclose(alone["probs"][0], batch["probs"][i], atol=1e-6)
        np.testing.assert_array_equal(alone["boxes"][0], batch["boxes"][i])
    boxes = batch["boxes"]  # 32-pixel windows (patch 16 x scale 2), inside the image
    assert (boxes[..., :2] >= 0).all() and (boxes[..., 2] <= H).all()
    assert (boxes[..., 3] <= W).all()
    np.testing.assert_array_equal(boxes[..., 2:] - boxes[..., :2], 32)
    # Training draws k random crops per image (as random_roi), not the grid.
    patches, centres = m.patches(x)
    assert np.asarray(patches).shape == (3, 4, 16, 16, 3)
    assert np.asarray(m(x, training=True)).shape == (3, 3)


def test_grid_confident_builtin_outputs_equal_keras_and_roundtrip(tmp_path):
    m = _grid_model()
    x = images(2)
    keras_out = m.serving_outputs(x)
    builtin = m.serving_outputs(x, builtin_ops=True)
    assert sorted(builtin) == ["boxes", "n_rois", "probabilities"]
    for key in builtin:
        np.testing.assert_allclose(np.asarray(builtin[key]), np.asarray(keras_out[key]),
                                   atol=1e-6)
    assert m.spec_name == "grid_confident"
    assert_keras_roundtrip(m, x, tmp_path)
    with pytest.raises(ValueError, match="35 tiles"):
        _grid_model(k=36)
    with pytest.raises(ValueError, match="Only grid_confident"):
        PatchVoteClassifier(2, image_size=(W, H), patch_size=16, k=2, width=2).tile_probs(x)


@pytest.mark.slow  # a TFLite conversion
def test_grid_confident_converts_to_builtin_tflite():
    from breastzoo.export.tflite import TFLiteRunner, convert_tflite, flex_ops
    from breastzoo.models.factory import build_model

    model = build_model(preset("tiny").replace(model="grid_confident", k=3), ["a", "b"])
    w, h = model.image_size
    x = np.random.default_rng(0).integers(0, 255, (2, h, w, 3), dtype=np.uint8)
    blob = convert_tflite(model)
    assert flex_ops(blob) == set()
    out = TFLiteRunner(blob)(x)
    ref = {k: np.asarray(v) for k, v in model.serving_outputs(x).items()}
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=1e-4)
    np.testing.assert_array_equal(out["boxes"], ref["boxes"])
