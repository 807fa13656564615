"""Augmentation policies: geometry, determinism, expansion factors, dataset-level expansion."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from breastzoo.data import augment as aug
from breastzoo.data.augment import augment, expand_and_augment, expansion_factor


def image(shape=(6, 10, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def sorted_pixels(x) -> np.ndarray:
    x = np.asarray(x).reshape(-1, np.shape(x)[-1])
    return x[np.lexsort(x.T[::-1])]


def test_expansion_factors():
    assert [expansion_factor(p) for p in ("xu2020", "zhu2019", "none")] == [3, 8, 1]


@pytest.mark.parametrize(
    "call", [lambda: expansion_factor("foo"), lambda: augment(image(), "foo", 0)]
)
def test_unknown_policy_names_it(call):
    with pytest.raises(ValueError, match="Received: policy='foo'"):
        call()


@pytest.mark.parametrize("shape, group", [((6, 10, 3), 4), ((8, 8, 3), 8)])
@pytest.mark.parametrize("jit", [False, True])
def test_xu2020_moves_pixels_only_and_covers_the_symmetry_group(shape, group, jit):
    x = image(shape)
    seen = set()
    for seed in range(40):
        out = augment(x, "xu2020", [seed, 7], jit_compile=jit).numpy()
        assert out.shape == x.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(sorted_pixels(out), sorted_pixels(x))
        seen.add(out.tobytes())
    assert len(seen) == group  # non-square: id, 2 flips, 180°; square: all 8 of D4


def test_xu2020_elements_are_rotations_and_flips():
    x = image((8, 8, 3))
    allowed = {np.rot90(t, k).tobytes() for t in (x, x[:, ::-1]) for k in range(4)}
    for seed in range(16):
        assert augment(x, "xu2020", seed).numpy().tobytes() in allowed


def test_xu2020_dynamic_shape_fallback():
    fn = tf.function(
        lambda x, s: augment(x, "xu2020", s),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int64)],
    )
    for shape in [(6, 10, 3), (8, 8, 3)]:
        x = image(shape)
        out = fn(x, tf.constant([3, 4], tf.int64)).numpy()
        assert out.shape in (shape, shape[1::-1] + (3,))
        np.testing.assert_array_equal(sorted_pixels(out), sorted_pixels(x))


def test_same_seed_same_result_and_jit_agrees():
    x = image((12, 16, 3))
    for policy in ("xu2020", "zhu2019"):
        a = augment(x, policy, [5, 6]).numpy()
        np.testing.assert_array_equal(a, augment(x, policy, [5, 6]).numpy())
        b = augment(x, policy, [5, 6], jit_compile=True).numpy()
        assert np.abs(a.astype(int) - b).max() <= 1
    draws = {augment(x, "zhu2019", s).numpy().tobytes() for s in range(5)}
    assert len(draws) == 5


def test_zhu2019_shape_dtype_and_matches_image_projective_transform():
    x = image((12, 16, 3))
    out = augment(x, "zhu2019", 1)
    assert out.shape == x.shape and out.dtype == tf.uint8
    seeds = tf.random.experimental.stateless_split(tf.constant([1, 0], tf.int64), 5)
    transform = aug._zhu2019_transform(tf.shape(x), seeds)
    reference = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(x, tf.float32)[None],
        transforms=transform[None],
        output_shape=[12, 16],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[0]
    np.testing.assert_allclose(out.numpy(), np.round(reference.numpy()), atol=1)


def test_zhu2019_identity_transform_is_exact():
    x = image((5, 7, 3))
    identity = tf.constant([1.0, 0, 0, 0, 1.0, 0, 0, 0])
    np.testing.assert_array_equal(aug._warp(x, identity).numpy(), x)
    flip = tf.constant([-1.0, 0, 6.0, 0, 1.0, 0, 0, 0])  # x -> W-1-x
    np.testing.assert_array_equal(aug._warp(x, flip).numpy(), x[:, ::-1])


def test_none_is_identity():
    x = image()
    np.testing.assert_array_equal(augment(x, "none", 0).numpy(), x)


def test_expand_and_augment_repeats_with_fresh_draws():
    images = np.stack([image((8, 8, 3), seed=i) for i in range(8)])
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(8)))
    out = list(expand_and_augment(ds, "xu2020", seed=1, cycle_length=4))
    assert len(out) == 8 * 3
    labels = [int(y) for _, y in out]
    assert sorted(labels) == sorted(list(range(8)) * 3)
    for start in range(0, len(labels), 4):  # any 4 consecutive views: 4 different images
        assert len(set(labels[start : start + 4])) == 4
    for i in range(8):
        views = [x.numpy() for x, y in out if int(y) == i]
        for v in views:
            np.testing.assert_array_equal(sorted_pixels(v), sorted_pixels(images[i]))


def test_expand_and_augment_reproducible_and_new_each_epoch():
    images = np.stack([image((8, 8, 3), seed=i) for i in range(4)])
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(4)))

    def epoch(d):
        return b"".join(x.numpy().tobytes() for x, _ in d)

    a = expand_and_augment(ds, "zhu2019", seed=3, copies=2)
    b = expand_and_augment(ds, "zhu2019", seed=3, copies=2)
    first = epoch(a)
    assert first == epoch(b)  # same seed, same stream
    assert epoch(a) != first  # second epoch draws again


def test_expand_and_augment_rejects_bad_input():
    with pytest.raises(ValueError, match="tuples"):
        expand_and_augment(tf.data.Dataset.from_tensors(image()), "xu2020")
    ds = tf.data.Dataset.from_tensors((image(), 0))
    with pytest.raises(ValueError, match="Received: copies=0"):
        expand_and_augment(ds, "xu2020", copies=0)


def test_hed_jitter_changes_stain_not_structure_and_is_seeded():
    from skimage.color import rgb2hed

    rng = np.random.default_rng(0)
    # An H&E-like image: purple nuclei on pink stroma on white.
    img = np.full((32, 32, 3), (230, 150, 200), np.uint8)
    img[8:16, 8:16] = (90, 40, 140)
    img[24:, 24:] = 255
    img = np.clip(img.astype(int) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)
    a = aug.hed_jitter(img, seed=1, strength=0.1).numpy()
    assert a.dtype == np.uint8 and a.shape == img.shape
    np.testing.assert_array_equal(a, aug.hed_jitter(img, seed=1, strength=0.1).numpy())
    assert not np.array_equal(a, aug.hed_jitter(img, seed=2, strength=0.1).numpy())
    np.testing.assert_array_equal(aug.hed_jitter(img, seed=1, strength=0.0).numpy(), img)
    # Structure kept: the jittered image's haematoxylin map still ranks pixels as before.
    h0, h1 = rgb2hed(img)[..., 0].ravel(), rgb2hed(a)[..., 0].ravel()
    assert np.corrcoef(h0, h1)[0, 1] > 0.95
    # The change is a stain change of bounded size, not noise.
    assert 0 < np.abs(a.astype(int) - img).mean() < 40


def test_expand_and_augment_applies_color_jitter():
    ds = tf.data.Dataset.from_tensor_slices((np.full((2, 8, 8, 3), 180, np.uint8), [0, 1]))
    plain = [x.numpy() for x, _ in expand_and_augment(ds, "xu2020", seed=0, copies=1)]
    jittered = [x.numpy() for x, _ in expand_and_augment(ds, "xu2020", seed=0, copies=1,
                                                          color_jitter=0.1)]
    assert all((p == 180).all() for p in plain)
    assert any(not (j == 180).all() for j in jittered)
