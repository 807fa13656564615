"""Testbed v2 (issue 12): the class is only in the lesion's fine detail, lesions sit anywhere,
and a class-independent halo tells where they are.

One module-level sample of freshly rendered 700x460 images at 100X (the ablation's
magnification), ``PER_CLASS`` per subtype, each with its own patient's stain, feeds three
probes:

- a *resize colour probe*: optical-density percentiles of the whole image resized to 112x112
  (antialiased), leave-one-out nearest centroid over the 8 subtypes: it must sit near chance;
- a *lesion texture probe*: LBP and GLCM statistics of the grey 112x112 full-resolution crop
  centred on the lesion, same classifier: the fine detail must still tell the subtypes apart;
- the *halo*: tissue optical density near the lesion's edge against far from it, per subtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from breastzoo.data.constants import SUBTYPES
from breastzoo.data.testbed import (
    LESION_FRACTION,
    halo_density,
    patient_style,
    place_lesion,
    render_image,
)

PER_CLASS = 12  # 96 images: leave-one-out accuracy has a standard error of about 0.035
SEED = 20240
CROP = 112
PERCENTILES = (5, 25, 50, 75, 95)
NEAR, FAR = (45.0, 55.0), (240.0, 260.0)  # distance bands from the lesion edge, px


def _od(img: np.ndarray) -> np.ndarray:
    """Optical density per RGB channel."""
    return -np.log((img.astype(np.float32) + 1.0) / 256.0)


def _colour_features(img: np.ndarray) -> np.ndarray:
    small = np.asarray(Image.fromarray(img).resize((CROP, CROP), Image.Resampling.BILINEAR))
    return np.percentile(_od(small).reshape(-1, 3), PERCENTILES, axis=0).T.ravel()


def _lesion_crop(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0 = int(np.clip(round(ys.mean()) - CROP // 2, 0, h - CROP))
    x0 = int(np.clip(round(xs.mean()) - CROP // 2, 0, w - CROP))
    return img[y0 : y0 + CROP, x0 : x0 + CROP]


def _texture_features(crop: np.ndarray) -> np.ndarray:
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    grey = np.asarray(Image.fromarray(crop).convert("L"))
    out: list[float] = []
    for points, radius in ((8, 1), (16, 2)):
        lbp = local_binary_pattern(grey, points, radius, "uniform").astype(int)
        out.extend(np.bincount(lbp.ravel(), minlength=points + 2) / lbp.size)
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    glcm = graycomatrix(grey // 8, [1, 2, 4, 8], angles, 32, symmetric=True, normed=True)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        out.extend(graycoprops(glcm, prop).mean(1))
    return np.asarray(out)


def _band_density(od_sum: np.ndarray, dist: np.ndarray, band: tuple[float, float]) -> float:
    sel = (dist >= band[0]) & (dist < band[1])
    return float(od_sum[sel].mean()) if sel.sum() >= 200 else float("nan")


def loo_nearest_centroid(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-centroid classifier on standardised features."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-9)
    hits = 0
    for i in range(len(labels)):
        rest = np.arange(len(labels)) != i
        centroids = np.stack(
            [x[rest & (labels == k)].mean(0) for k in range(int(labels.max()) + 1)]
        )
        hits += int(np.argmin(((centroids - x[i]) ** 2).sum(1)) == labels[i])
    return hits / len(labels)


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    colour, texture, labels, near, far = [], [], [], [], []
    for k, subtype in enumerate(SUBTYPES):
        for i in range(PER_CLASS):
            style = patient_style(np.random.default_rng([SEED, k, i, 1]))
            rng = np.random.default_rng([SEED, k, i, 2])
            img, mask = render_image(subtype, "100X", rng, stain=style)
            colour.append(_colour_features(img))
            texture.append(_texture_features(_lesion_crop(img, mask)))
            labels.append(k)
            dist = ndimage.distance_transform_edt(~mask)
            od_sum = _od(img).sum(-1)
            near.append(_band_density(od_sum, dist, NEAR))
            far.append(_band_density(od_sum, dist, FAR))
    return {
        "colour": np.asarray(colour),
        "texture": np.asarray(texture),
        "labels": np.asarray(labels),
        "near": np.asarray(near),
        "far": np.asarray(far),
    }


def test_resize_colour_probe_sits_near_chance(sample):
    acc = loo_nearest_centroid(sample["colour"], sample["labels"])
    print(f"resize colour probe (112x112, OD percentiles): {acc:.3f} (chance 0.125)")
    assert acc <= 0.20


def test_fine_detail_in_a_lesion_crop_separates_the_subtypes(sample):
    texture = loo_nearest_centroid(sample["texture"], sample["labels"])
    colour = loo_nearest_centroid(sample["colour"], sample["labels"])
    print(f"lesion-crop texture probe: {texture:.3f}; resize colour probe: {colour:.3f}")
    assert texture >= 0.5
    assert texture >= colour + 0.3


def test_lesion_centres_are_uniform_over_the_field():
    rng = np.random.default_rng(7)
    h, w = 460, 700
    ux, uy, band_hits, band_expected = [], [], 0, 0.0
    for _ in range(300):
        lesion = place_lesion((h, w), rng)
        assert LESION_FRACTION[0] - 0.005 <= lesion.mask.mean() <= LESION_FRACTION[1] + 0.005
        cx, cy = lesion.centre
        ys, xs = np.nonzero(lesion.mask)
        # The centre is the mask's bounding-box centre, and the whole lesion is inside.
        assert (xs.min() + xs.max()) / 2 == cx and (ys.min() + ys.max()) / 2 == cy
        (x_lo, x_hi), (y_lo, y_hi) = lesion.x_range, lesion.y_range
        assert x_lo < x_hi and y_lo < y_hi  # a small lesion: it has room to move
        ux.append((cx - x_lo) / (x_hi - x_lo))
        uy.append((cy - y_lo) / (y_hi - y_lo))
        # Outer 15% bands of the width: hits vs the share of the feasible range they hold.
        band = 0.15 * w
        inside_band = max(0.0, min(x_hi, band) - x_lo) + max(0.0, x_hi - max(x_lo, w - band))
        band_expected += inside_band / (x_hi - x_lo)
        band_hits += int(cx < band or cx > w - band)
    assert stats.kstest(ux, "uniform").pvalue > 0.01
    assert stats.kstest(uy, "uniform").pvalue > 0.01
    assert abs(band_hits - band_expected) < 3 * np.sqrt(band_expected) + 1
    # No centre bias: as many centres in the outer thirds of the feasible range as inside.
    assert 0.55 < np.mean(np.abs(np.asarray(ux) - 0.5) > 1 / 6) < 0.78


def test_halo_is_denser_near_the_lesion_and_the_same_for_every_subtype(sample):
    near, far, labels = sample["near"], sample["far"], sample["labels"]
    ok = np.isfinite(near) & np.isfinite(far)
    assert ok.mean() > 0.6
    ratio = near[ok] / far[ok]
    print(f"halo: OD at 50 px / OD at 250 px, median {np.median(ratio):.3f}")
    assert np.median(ratio) > 1.1 and np.mean(ratio > 1) > 0.85
    # Class-independent: no subtype's halo differs from the others' beyond chance.
    groups = [ratio[labels[ok] == k] for k in range(len(SUBTYPES))]
    assert stats.kruskal(*[g for g in groups if g.size]).pvalue > 0.01
    assert halo_density(50.0) > 3 * halo_density(250.0)
