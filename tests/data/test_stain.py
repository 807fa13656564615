"""Stain normalisation: colour spaces against scikit-image, Reinhard statistics, Macenko, layer."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage.color import lab2rgb, rgb2lab

from breastzoo.data import stain
from breastzoo.data.stain import (
    DEFAULT_MACENKO,
    DEFAULT_REINHARD,
    DEFAULT_REINHARD_LAB,
    MacenkoStats,
    ReinhardStats,
    StainNormalization,
    fit_reference,
    macenko,
    reinhard,
    reinhard_coefficients,
)
from tests.helpers import assert_keras_roundtrip


def he_image(seed: int, shape=(48, 64), stains=DEFAULT_MACENKO.stain_matrix, io=240.0):
    """Beer-Lambert H&E-like image: smooth stain concentrations through a 3x2 OD matrix."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / 8.0
    phase = rng.uniform(0, 6.3, 4)
    conc_h = 0.9 * (1 + np.sin(xx + phase[0]) * np.cos(yy + phase[1])) + rng.uniform(0, 0.2, shape)
    conc_e = 0.6 * (1 + np.cos(xx * 0.7 + phase[2]) * np.sin(yy * 1.3 + phase[3]))
    od = np.stack([conc_h, conc_e], -1) @ np.asarray(stains).T
    return np.clip(io * np.exp(-od), 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def source():
    return he_image(0)


@pytest.fixture(scope="module")
def target():
    # A differently stained image: bluer haematoxylin, weaker eosin.
    stains = ((0.65, 0.07), (0.70, 0.99), (0.29, 0.11))
    return he_image(1, stains=stains)


def test_rgb_to_lab_matches_skimage():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    np.testing.assert_allclose(stain.rgb_to_lab(image).numpy(), rgb2lab(image), atol=2e-3)


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(1)
    lab = rgb2lab(rng.integers(0, 256, (20, 30, 3)).astype(np.uint8))
    lab = lab + rng.normal(0, 25, lab.shape)  # pushes some colours out of the sRGB gamut
    with pytest.warns(UserWarning):  # skimage warns about clipped negative Z
        expected = lab2rgb(lab) * 255
    actual = stain.lab_to_rgb(lab.astype(np.float32)).numpy()
    np.testing.assert_allclose(actual, expected, atol=0.02)


def test_lalphabeta_round_trip_and_histomicstk_convention():
    image = np.random.default_rng(2).integers(1, 256, (10, 10, 3)).astype(np.uint8)
    lab = stain.rgb_to_lalphabeta(image).numpy()
    np.testing.assert_allclose(stain.lalphabeta_to_rgb(lab).numpy(), image, atol=0.01)
    # HistomicsTK: lαβ = diag(1/√3, 1/√6, 1/√2) [[1,1,1],[1,1,-2],[1,-1,0]] log(M rgb).
    lms = np.log(image.reshape(-1, 3).astype(np.float64) @ stain._RGB2LMS.T)
    expected = lms @ stain._LMS2LAB.T
    np.testing.assert_allclose(lab.reshape(-1, 3), expected, atol=1e-4)


@pytest.mark.parametrize("color_space", ["lab", "lalphabeta"])
def test_reinhard_output_matches_reference_statistics(source, target, color_space):
    reference = fit_reference(target, color_space=color_space)
    out = np.round(reinhard(source, reference, subsample=1).numpy()).astype(np.uint8)
    if color_space == "lab":
        values = rgb2lab(out).reshape(-1, 3)  # independent check of our Lab conversion
    else:
        values = stain.rgb_to_lalphabeta(out).numpy().reshape(-1, 3)
    mean_error = np.abs(values.mean(0) - reference.mean) / np.array(reference.std)
    assert mean_error.max() < 0.05, mean_error
    np.testing.assert_allclose(values.std(0), reference.std, rtol=0.08)
    # ... while the source itself was far from the reference.
    before = stain.rgb_to_lab(source) if color_space == "lab" else stain.rgb_to_lalphabeta(source)
    gap = np.abs(before.numpy().reshape(-1, 3).mean(0) - reference.mean) / np.array(reference.std)
    assert gap.max() > 0.5


@pytest.mark.parametrize("color_space", ["lab", "lalphabeta"])
def test_reinhard_of_the_reference_is_identity(source, color_space):
    reference = fit_reference(source, color_space=color_space)
    exact = reinhard(source, reference, subsample=1).numpy()
    assert np.abs(exact - source).max() < 0.6  # float round-off only: rounds back to source
    strided = reinhard(source, reference).numpy()  # statistics from 1/16 of the pixels
    assert np.abs(strided - source).mean() < 1.5


def test_reinhard_batch_equals_per_image(source, target):
    batch = np.stack([source, target])
    out = reinhard(batch).numpy()
    np.testing.assert_allclose(out[1], reinhard(target).numpy(), atol=1e-3)


def test_weights_exclude_padding(source):
    padded = np.full((60, 64, 3), 255, np.uint8)
    padded[6:54] = source
    weights = np.zeros((60, 64), bool)
    weights[6:54] = True
    mix_w, bias_w = reinhard_coefficients(padded, subsample=1, weights=weights)
    mix, bias = reinhard_coefficients(source, subsample=1)
    np.testing.assert_allclose(mix_w.numpy(), mix.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bias_w.numpy(), bias.numpy(), rtol=1e-4, atol=1e-4)


def test_default_lab_reference_is_derived_from_the_lalphabeta_default():
    derived = stain._derive_default_lab_reference()
    np.testing.assert_allclose(derived.mean, DEFAULT_REINHARD_LAB.mean, atol=1e-3)
    np.testing.assert_allclose(derived.std, DEFAULT_REINHARD_LAB.std, atol=1e-3)


def test_fit_reference_pools_several_images(source, target):
    pooled = fit_reference([source, target])
    both = fit_reference(np.concatenate([source, target], axis=0))
    np.testing.assert_allclose(pooled.mean, both.mean, rtol=1e-6)
    assert isinstance(pooled, ReinhardStats) and all(isinstance(v, float) for v in pooled.std)


def test_macenko_recovers_the_stain_matrix_and_normalises(target):
    fitted = fit_reference(he_image(3), method="macenko")
    assert isinstance(fitted, MacenkoStats)
    cosines = np.sum(
        np.asarray(fitted.stain_matrix) * np.asarray(DEFAULT_MACENKO.stain_matrix), axis=0
    ) / np.linalg.norm(DEFAULT_MACENKO.stain_matrix, axis=0)
    assert cosines.min() > 0.99
    out = macenko(np.stack([target, target])).numpy()
    assert out.shape == (2, *target.shape) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    # The re-stained image's own stain vectors are the reference ones.
    restained = fit_reference(np.round(out[0]).astype(np.uint8), method="macenko")
    cosines = np.sum(
        np.asarray(restained.stain_matrix) * np.asarray(DEFAULT_MACENKO.stain_matrix), axis=0
    ) / np.linalg.norm(DEFAULT_MACENKO.stain_matrix, axis=0)
    assert cosines.min() > 0.98


def test_macenko_leaves_background_only_images_alone():
    blank = np.full((16, 16, 3), 250, np.uint8)
    np.testing.assert_array_equal(macenko(blank).numpy(), blank.astype(np.float32))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "reinhard"},
        {"method": "reinhard", "color_space": "lab"},
        {"method": "macenko", "subsample": 2},
        {"method": "none"},
    ],
    ids=["reinhard", "reinhard-lab", "macenko", "none"],
)
def test_layer_keras_round_trip_safe_mode(kwargs, source, tmp_path):
    model = keras.Sequential(
        [keras.Input((48, 64, 3), dtype="uint8"), StainNormalization(**kwargs)], name="stain"
    )
    batch = np.stack([source, source[::-1]])
    loaded = assert_keras_roundtrip(model, batch, tmp_path, atol=0, rtol=0)
    config = loaded.layers[0].get_config()
    json.dumps(config)  # plain JSON: floats and strings only
    if kwargs["method"] == "reinhard":
        assert all(type(v) is float for v in config["reference"]["mean"])


def test_layer_accepts_float_and_single_images(source):
    layer = StainNormalization("reinhard", reference=DEFAULT_REINHARD)
    out_u8 = layer(source).numpy()
    out_f = layer(source.astype(np.float32)).numpy()
    np.testing.assert_allclose(out_u8, out_f, atol=1e-4)
    assert out_u8.shape == source.shape


def test_layer_inside_a_tf_function(source):
    layer = StainNormalization("reinhard")
    run = tf.function(
        lambda x: layer(x), input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)]
    )
    np.testing.assert_allclose(run(source).numpy(), layer(source).numpy(), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "vahadane"}, "Received: method='vahadane'"),
        ({"color_space": "hsv"}, "Received: color_space='hsv'"),
        ({"reference": DEFAULT_REINHARD, "color_space": "lab"}, "color_space='lab'"),
        ({"reference": {"mean": [1, 2, 3], "std": [1, 0, 1]}}, "std"),
        ({"subsample": 0}, "Received: subsample=0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        StainNormalization(**kwargs)


def test_fit_reference_rejects_non_rgb_and_blank_macenko():
    with pytest.raises(ValueError, match="RGB"):
        fit_reference(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="Too little tissue"):
        fit_reference(np.full((8, 8, 3), 255, np.uint8), method="macenko")
