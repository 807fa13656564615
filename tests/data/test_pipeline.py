"""tf.data pipeline: decoding odd files, full-resolution crops, labels, errors, sizes, caching."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from breastzoo.data.pipeline import crop_at, decode_image, fit_to_size, make_dataset
from breastzoo.data.records import ImageRecord
from breastzoo.data.stain import StainNormalization, reinhard

W, H = 24, 16


def rgb(seed: int, shape=(H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (*shape, 3)).astype(np.uint8)


def write(path, array, **kwargs) -> str:
    Image.fromarray(array).save(path, **kwargs)
    return str(path)


def record(path, subtype="A", label="benign", patient="p1", dataset="breakhis") -> ImageRecord:
    return ImageRecord(str(path), dataset, patient, label, subtype, "40X")


# --------------------------------------------------------------------------- decoding


def test_decode_png_jpeg_bmp_gif(tmp_path):
    x = rgb(0)
    for name in ("a.png", "a.bmp"):
        np.testing.assert_array_equal(decode_image(write(tmp_path / name, x)).numpy(), x)
    jpeg = decode_image(write(tmp_path / "a.jpg", x, quality=95)).numpy()
    assert jpeg.shape == x.shape and jpeg.dtype == np.uint8
    gif = decode_image(write(tmp_path / "a.gif", x[..., 0])).numpy()
    assert gif.shape == x.shape


def test_decode_grayscale_rgba_and_16_bit_png(tmp_path):
    x = rgb(1)
    gray = x[..., 0]
    out = decode_image(write(tmp_path / "g.png", gray)).numpy()
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, -1))
    rgba = np.concatenate([x, np.full((H, W, 1), 7, np.uint8)], -1)
    np.testing.assert_array_equal(decode_image(write(tmp_path / "rgba.png", rgba)).numpy(), x)
    deep = (gray.astype(np.uint16) * 257 + 100).astype(np.uint16)  # uses both bytes
    path = tmp_path / "g16.png"
    Image.fromarray(deep).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out16 = decode_image(str(path)).numpy()
    assert out16.dtype == np.uint8 and out16.shape == (H, W, 3)
    assert np.abs(out16[..., 0].astype(int) - np.round(deep / 257.0)).max() <= 1


def test_decode_tiff_variants_by_magic_bytes(tmp_path):
    x = rgb(2)
    np.testing.assert_array_equal(decode_image(write(tmp_path / "a.tif", x)).numpy(), x)
    lzw = write(tmp_path / "lzw.tiff", x, compression="tiff_lzw")
    np.testing.assert_array_equal(decode_image(lzw).numpy(), x)
    gray16 = (x[..., 1].astype(np.uint16) * 257).astype(np.uint16)
    path = tmp_path / "g16.tif"
    Image.fromarray(gray16).save(path)
    np.testing.assert_array_equal(decode_image(str(path)).numpy()[..., 2], x[..., 1])
    rgba = np.concatenate([x, np.zeros((H, W, 1), np.uint8)], -1)
    np.testing.assert_array_equal(decode_image(write(tmp_path / "rgba.tif", rgba)).numpy(), x)
    # A TIFF named .png is still a TIFF.
    renamed = tmp_path / "actually_tiff.png"
    renamed.write_bytes((tmp_path / "a.tif").read_bytes())
    np.testing.assert_array_equal(decode_image(str(renamed)).numpy(), x)


def test_decode_inside_tf_function(tmp_path):
    x = rgb(3)
    paths = [write(tmp_path / "a.png", x), write(tmp_path / "b.tif", x)]
    fn = tf.function(decode_image, input_signature=[tf.TensorSpec([], tf.string)])
    for p in paths:
        np.testing.assert_array_equal(fn(p).numpy(), x)


# --------------------------------------------------------------------------- geometry


def test_crop_at_returns_exactly_the_pixels_at_the_centre():
    image = np.arange(40 * 50 * 3).reshape(40, 50, 3)
    size = 8
    centers = [(0.5, 0.5), (0.25, 0.8), (1.0, 1.0), (0.0, 0.0)]
    patches = crop_at(image, centers, size).numpy()
    assert patches.shape == (4, size, size, 3)
    for (y, x), patch in zip(centers, patches, strict=True):
        cy, cx = int(np.floor(y * 39 + 0.5)), int(np.floor(x * 49 + 0.5))
        padded = np.pad(image, ((size, size), (size, size), (0, 0)))
        top, left = cy - size // 2 + size, cx - size // 2 + size
        np.testing.assert_array_equal(patch, padded[top : top + size, left : left + size])
    # Interior patch: plain slicing, no padding involved.
    np.testing.assert_array_equal(patches[0], image[16:24, 21:29])
    assert (patches[2][size // 2 + 1 :, size // 2 + 1 :] == 0).all()  # beyond the corner: padding
    assert patches[2][size // 2, size // 2].tolist() == image[39, 49].tolist()


def test_crop_at_batched_pixels_and_clamp():
    images = np.stack([np.arange(20 * 30).reshape(20, 30, 1) + 1000 * b for b in range(3)])
    centers = np.array([[[5, 5], [19, 29]], [[10, 15], [0, 0]], [[2, 28], [12, 3]]])
    out = crop_at(images, centers, 6, normalized=False, pad_value=-1).numpy()
    assert out.shape == (3, 2, 6, 6, 1)
    np.testing.assert_array_equal(out[1, 0], images[1, 7:13, 12:18])
    assert (out[0, 1][4:, :] == -1).all() and (out[0, 1][:, 4:] == -1).all()
    np.testing.assert_array_equal(out[0, 1][:4, :4], images[0, 16:20, 26:30])
    clamped = crop_at(images, centers, 6, normalized=False, border="clamp").numpy()
    np.testing.assert_array_equal(clamped[0, 1], images[0, 14:20, 24:30])
    np.testing.assert_array_equal(clamped[2, 0], images[2, 0:6, 24:30])
    # Unknown static size (padded path) and float centres (rounded) give the same windows.
    dynamic = tf.function(
        lambda x, c: crop_at(x, c, 6, normalized=False, border="clamp"),
        input_signature=[tf.TensorSpec([None, None, None, 1]), tf.TensorSpec([None, None, 2])],
    )
    floats = centers.astype(np.float32) + 0.3
    np.testing.assert_array_equal(dynamic(images.astype(np.float32), floats).numpy(), clamped)


def test_crop_at_larger_than_image_pads_and_rejects_bad_border():
    out = crop_at(np.ones((4, 4, 3), np.uint8), [[0.5, 0.5]], 8, border="clamp").numpy()
    assert out.shape == (1, 8, 8, 3) and out.sum() == 4 * 4 * 3
    with pytest.raises(ValueError, match="Received: border='wrap'"):
        crop_at(np.ones((4, 4, 3)), [[0.5, 0.5]], 2, border="wrap")


def test_fit_to_size_pads_white_and_crops_centre():
    x = rgb(4, (14, 20))
    out = fit_to_size(x, (24, 16)).numpy()
    assert out.shape == (16, 24, 3)
    np.testing.assert_array_equal(out[1:15, 2:22], x)
    assert (out[0] == 255).all() and (out[:, :2] == 255).all()
    np.testing.assert_array_equal(fit_to_size(x, (10, 8)).numpy(), x[3:11, 5:15])


# --------------------------------------------------------------------------- datasets


@pytest.fixture
def files(tmp_path):
    subtypes = ["A", "F", "DC", "LC"]
    labels = ["benign", "benign", "malignant", "malignant"]
    records = []
    for i, (sub, lab) in enumerate(zip(subtypes, labels, strict=True)):
        path = write(tmp_path / f"img{i}.png", rgb(10 + i))
        records.append(record(path, sub, lab, patient=f"p{i}"))
    return records


def collect(ds):
    images, labels, meta = [], [], []
    for element in ds:
        images.append(element[0].numpy())
        labels.append(element[1].numpy())
        if len(element) == 3:
            meta.append({k: v.numpy() for k, v in element[2].items()})
    return np.concatenate(images), np.concatenate(labels), meta


def test_labels_map_through_class_names(files):
    ds = make_dataset(files, ["A", "F", "PT", "TA", "DC", "LC"], batch_size=3, image_size=(W, H))
    images, labels, _ = collect(ds)
    assert images.dtype == np.uint8 and images.shape == (4, H, W, 3)
    assert labels.dtype == np.int32 and labels.tolist() == [0, 1, 4, 5]
    np.testing.assert_array_equal(images[2], rgb(12))
    _, binary, _ = collect(make_dataset(files, ["benign", "malignant"], task="binary"))
    assert binary.tolist() == [0, 0, 1, 1]


def test_with_path_yields_paths_and_patients(files):
    ds = make_dataset(files, ["A", "F", "DC", "LC"], batch_size=2, with_path=True)
    _, _, meta = collect(ds)
    paths = [p.decode() for m in meta for p in m["path"]]
    patients = [p.decode() for m in meta for p in m["patient"]]
    assert paths == [r.path for r in files] and patients == ["p0", "p1", "p2", "p3"]


def test_unknown_class_and_bad_arguments_raise(files):
    with pytest.raises(ValueError, match="class='LC'"):
        make_dataset(files, ["A", "F", "DC"])
    with pytest.raises(ValueError, match="Received: task='fine'"):
        make_dataset(files, ["A"], task="fine")
    with pytest.raises(ValueError, match="Received: policy='mixup'"):
        make_dataset(files, ["A", "F", "DC", "LC"], augment="mixup")
    with pytest.raises(ValueError, match="records=\\[\\]"):
        make_dataset([], ["A"])
    with pytest.raises(ValueError, match="image_size"):
        make_dataset(files, ["A", "F", "DC", "LC"], image_size=(0, 3))


def test_truncated_and_missing_files_are_skipped_not_fatal(files, tmp_path):
    good = (tmp_path / "img0.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    extra = [
        record(tmp_path / "broken.png", "F"),
        record(tmp_path / "missing.png", "F"),
        record(tmp_path / "broken.tif", "F"),
    ]
    records = [files[0], *extra, files[1]]
    ds = make_dataset(records, ["A", "F", "DC", "LC"], batch_size=2, with_path=True)
    _, labels, meta = collect(ds)
    assert labels.tolist() == [0, 1]
    assert [p.decode() for m in meta for p in m["path"]] == [files[0].path, files[1].path]
    for _ in range(2):  # a second epoch is just as fine
        assert len(collect(ds)[1]) == 2


def test_mixed_sizes_are_padded_to_image_size(tmp_path):
    small = write(tmp_path / "small.png", rgb(5, (H - 4, W)))  # like BreaKHis' 700x456
    big = write(tmp_path / "big.png", rgb(6, (H + 4, W + 2)))
    ds = make_dataset([record(small), record(big)], ["A"], image_size=(W, H), batch_size=2)
    images, _, _ = collect(ds)
    assert images.shape == (2, H, W, 3)
    assert (images[0, :2] == 255).all() and (images[0, -2:] == 255).all()
    np.testing.assert_array_equal(images[0, 2:-2], rgb(5, (H - 4, W)))
    np.testing.assert_array_equal(images[1], rgb(6, (H + 4, W + 2))[2:-2, 1:-1])


def test_resize(files):
    ds = make_dataset(files, ["A", "F", "DC", "LC"], image_size=(W, H), resize=(12, 8))
    assert collect(ds)[0].shape == (4, 8, 12, 3)
    normalised = make_dataset(
        files, ["A", "F", "DC", "LC"], image_size=(W, H), resize=(12, 8), normalizer="reinhard"
    )
    assert collect(normalised)[0].shape == (4, 8, 12, 3)


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_normalizer_matches_the_layer(files, method):
    layer = StainNormalization(method, subsample=1)
    ds = make_dataset(files[:2], ["A", "F"], image_size=(W, H), normalizer=layer, batch_size=2)
    images, _, _ = collect(ds)
    expected = np.round(layer(np.stack([rgb(10), rgb(11)])).numpy())
    assert np.abs(images.astype(int) - expected).max() <= 1


def test_reinhard_statistics_ignore_padding(tmp_path):
    x = rgb(7, (H - 4, W))
    path = write(tmp_path / "small.png", x)
    layer = StainNormalization("reinhard", subsample=1)
    ds = make_dataset([record(path)], ["A"], image_size=(W, H), normalizer=layer, batch_size=1)
    images, _, _ = collect(ds)
    expected = np.round(reinhard(x, subsample=1).numpy())
    assert np.abs(images[0, 2:-2].astype(int) - expected).max() <= 1


def test_augmentation_expands_and_keeps_pixels(files):
    classes = ["A", "F", "DC", "LC"]
    ds = make_dataset(files, classes, image_size=(W, H), augment="xu2020", seed=0, batch_size=4)
    images, labels, _ = collect(ds)
    assert len(labels) == 4 * 3 and sorted(labels.tolist()) == sorted([0, 1, 2, 3] * 3)
    for image, label in zip(images, labels, strict=True):
        original = rgb(10 + label).reshape(-1, 3)
        np.testing.assert_array_equal(np.sort(image.reshape(-1, 3), 0), np.sort(original, 0))
    one_view = make_dataset(files, classes, augment="zhu2019", expand=False, image_size=(W, H))
    assert len(collect(one_view)[1]) == 4


def test_shuffle_is_seeded_and_reshuffles(files):
    classes = ["A", "F", "DC", "LC"]

    def order(ds):
        return [int(label) for _, label in ds]

    ds = make_dataset(files * 4, classes, shuffle=True, seed=3, batch_size=None)
    first, second = order(ds), order(ds)
    assert sorted(first) == sorted([0, 1, 2, 3] * 4)
    assert first == order(make_dataset(files * 4, classes, shuffle=True, seed=3, batch_size=None))
    assert first != second


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cache_serves_the_same_images(files, tmp_path, cache):
    target = "memory" if cache == "memory" else str(tmp_path / "cache" / "train")
    ds = make_dataset(files, ["A", "F", "DC", "LC"], image_size=(W, H), cache=target)
    first, second = collect(ds)[0], collect(ds)[0]
    np.testing.assert_array_equal(first, second)
    if cache == "file":
        assert any((tmp_path / "cache").iterdir())


def test_repeat_and_drop_remainder(files):
    ds = make_dataset(files, ["A", "F", "DC", "LC"], batch_size=3, repeat=True, drop_remainder=True)
    assert ds.element_spec[0].shape.as_list() == [3, 460, 700, 3]
    batches = list(ds.take(3))
    assert [b[1].shape[0] for b in batches] == [3, 3, 3]


# --------------------------------------------------------------------------- class balance


def test_balanced_sampling_draws_each_class_at_the_promised_rate(tmp_path):
    # 9 benign images to 1 malignant: unbalanced sampling serves about 10% malignant.
    recs = [record(write(tmp_path / f"b{i}.png", rgb(i)), label="benign", patient=f"b{i}")
            for i in range(9)]
    recs.append(record(write(tmp_path / "m.png", rgb(99)), label="malignant", patient="m"))
    classes = ["benign", "malignant"]

    def malignant_rate(balance: bool) -> float:
        ds = make_dataset(recs, classes, task="binary", batch_size=50, shuffle=True, seed=3,
                          repeat=True, balance=balance, image_size=(W, H))
        labels = np.concatenate([y.numpy() for _, y in ds.take(16)])
        return float(labels.mean())

    balanced = malignant_rate(True)
    # 800 draws at p = 0.5: the standard error is 0.018; 0.06 is more than 3 of them.
    assert abs(balanced - 0.5) < 0.06, balanced
    assert malignant_rate(False) < 0.2


def test_balanced_sampling_still_visits_every_image_of_a_class(tmp_path):
    recs = [record(write(tmp_path / f"b{i}.png", rgb(i)), label="benign", patient=f"b{i}")
            for i in range(6)]
    recs.append(record(write(tmp_path / "m.png", rgb(99)), label="malignant", patient="m"))
    ds = make_dataset(recs, ["benign", "malignant"], task="binary", batch_size=None,
                      shuffle=True, seed=0, repeat=True, balance=True, image_size=(W, H),
                      with_path=True)
    seen = {m["path"].numpy().decode() for _, _, m in ds.take(60)}
    assert seen == {r.path for r in recs}


def test_balance_needs_an_endless_stream(tmp_path):
    recs = [record(write(tmp_path / "a.png", rgb(0)))]
    with pytest.raises(ValueError, match="repeat=True"):
        make_dataset(recs, ["A"], balance=True, repeat=False, image_size=(W, H))
