"""Calibrate the synthetic testbed against paper 000's premise.

Trains the SAME small Keras CNN with the SAME budget (epochs, samples per epoch, optimiser,
batch size) on three views of one magnification of the testbed and reports 8-class image
accuracy on held-out patients:

* ``resized``: the whole 700x460 image resized to 112x112 (what paper 000's "-DeNet"
  ablation does);
* ``oracle``:  112x112 crops at full resolution centred on a random point of the lesion mask
  (the "right place"; the upper bound a perfect hard-attention policy could reach);
* ``random``:  112x112 crops at uniformly random places (paper 000's "Random Selection").

Crop models are evaluated with 5 crops per test image (mean of softmax). The premise of the
testbed is ``oracle`` >> ``resized`` ~ ``random``. Splits are patient-wise
(``breastzoo.data.splits.split_patients``); each repeat uses a different split and seed, and
the median over repeats is reported.

Usage::

    python bench/testbed.py --size demo --mag 100X --epochs 30 --repeats 3 \\
        --json runs/bench/testbed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CROP = 112
CLASSES = ("A", "F", "PT", "TA", "DC", "LC", "MC", "PC")


def load_split_images(root: Path, mag: str, split_seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Images, masks and labels of the train and test patients of one magnification."""
    from breastzoo.data.breakhis import index_breakhis
    from breastzoo.data.splits import split_patients
    from breastzoo.data.testbed import mask_path

    index = index_breakhis(root).filter(mag)
    split = split_patients(index.records, seed=split_seed)
    parts = split.assign(index.records)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in ("train", "test"):
        records = parts[name]
        images = np.stack([np.asarray(Image.open(r.path).convert("RGB")) for r in records])
        masks = np.stack([np.asarray(Image.open(mask_path(r.path, root))) > 127 for r in records])
        labels = np.array([CLASSES.index(r.subtype) for r in records], np.int64)
        out[name] = {
            "images": images,
            "masks": masks,
            "labels": labels,
            "patients": np.array([r.patient for r in records]),
        }
    return out


def resize_all(images: np.ndarray) -> np.ndarray:
    """Whole images resized to CROP x CROP (PIL bilinear, which anti-aliases when shrinking)."""
    return np.stack(
        [
            np.asarray(Image.fromarray(img).resize((CROP, CROP), Image.Resampling.BILINEAR))
            for img in images
        ]
    )


def crop_at(image: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """A CROP x CROP patch centred at (cy, cx), shifted to stay inside the image."""
    h, w = image.shape[:2]
    y0 = int(np.clip(cy - CROP // 2, 0, h - CROP))
    x0 = int(np.clip(cx - CROP // 2, 0, w - CROP))
    return image[y0 : y0 + CROP, x0 : x0 + CROP]


def crop_centres(mask: np.ndarray, n: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` crop centres: random lesion pixels (``oracle``) or uniform (``random``)."""
    h, w = mask.shape
    if mode == "oracle":
        ys, xs = np.nonzero(mask)
        i = rng.integers(0, ys.size, n)
        return np.stack([ys[i], xs[i]], 1)
    return np.stack(
        [
            rng.integers(CROP // 2, h - CROP // 2 + 1, n),
            rng.integers(CROP // 2, w - CROP // 2 + 1, n),
        ],
        1,
    )


def make_crops(
    images: np.ndarray, masks: np.ndarray, mode: str, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` crops per image, shape (len(images) * n, CROP, CROP, 3), image-major."""
    out = []
    for img, mask in zip(images, masks, strict=True):
        for cy, cx in crop_centres(mask, n, mode, rng):
            out.append(crop_at(img, int(cy), int(cx)))
    return np.stack(out)


def augment(batch: np.ndarray, rng: np.random.Generator, color: bool = True) -> np.ndarray:
    """Random flips and 90-degree rotations (paper 000's augmentation) plus colour jitter.

    The colour jitter (per-channel gain ~5%-10% and offset ~8 grey levels) stands in for
    stain augmentation: with only ~3 training patients per class, a CNN otherwise learns
    each patient's stain instead of the morphology. It is applied identically to every view.
    """
    out = batch.copy()
    for i in range(len(out)):
        x = out[i]
        if rng.random() < 0.5:
            x = x[:, ::-1]
        if rng.random() < 0.5:
            x = x[::-1]
        out[i] = np.rot90(x, int(rng.integers(4)))
    if not color:
        return out
    n = len(out)
    gain = np.exp(rng.normal(0.0, 0.08, (n, 1, 1, 3))).astype(np.float32)
    offset = rng.normal(0.0, 8.0, (n, 1, 1, 3)).astype(np.float32)
    return np.clip(out.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def build_model(seed: int):
    """The small CNN all three views share (4 conv blocks, ~100k parameters).

    No BatchNorm: with a budget of a few hundred steps its moving statistics lag the
    weights and inference-mode accuracy collapses (we measured 99% train-mode vs 79%
    inference-mode accuracy on the training images themselves).
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((CROP, CROP, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (16, 32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run_view(
    view: str,
    data: dict,
    epochs: int,
    batch: int,
    seed: int,
    per_image: int = 2,
    color: bool = True,
) -> dict:
    """Train one view with the shared budget and return its test accuracy."""
    rng = np.random.default_rng(seed)
    train, test = data["train"], data["test"]
    model = build_model(seed)
    if view == "resized":
        x_train_fixed = resize_all(train["images"])
    labels = np.repeat(train["labels"], per_image)
    start = time.perf_counter()
    for _ in range(epochs):
        # per_image samples per training image per epoch, for every view: the same budget
        # (the resized view sees each image per_image times, differently augmented).
        if view == "resized":
            x = np.repeat(x_train_fixed, per_image, axis=0)
        else:
            x = make_crops(train["images"], train["masks"], view, per_image, rng)
        order = rng.permutation(len(x))
        model.fit(
            augment(x[order], rng, color),
            labels[order],
            batch_size=batch,
            epochs=1,
            verbose=0,
            shuffle=False,
        )
    train_s = time.perf_counter() - start
    if view == "resized":
        probs = model.predict(resize_all(test["images"]), batch_size=64, verbose=0)
    else:
        crops = make_crops(test["images"], test["masks"], view, 5, rng)
        probs = model.predict(crops, batch_size=64, verbose=0)
        probs = probs.reshape(len(test["images"]), 5, -1).mean(1)  # 5-crop mean vote
    pred = probs.argmax(1)
    acc = float((pred == test["labels"]).mean())
    confusion = np.zeros((len(CLASSES), len(CLASSES)), int)
    for t, p in zip(test["labels"], pred, strict=True):
        confusion[t, p] += 1
    return {"accuracy": acc, "train_seconds": round(train_s, 1), "confusion": confusion.tolist()}


def lesion_hit_rate(masks: np.ndarray, rng: np.random.Generator, n: int = 20) -> float:
    """Share of uniformly random 112x112 crops whose centre lies on the lesion."""
    hits = []
    for mask in masks:
        c = crop_centres(mask, n, "random", rng)
        hits.append(mask[c[:, 0], c[:, 1]].mean())
    return float(np.mean(hits))


def draw_figure(path: Path, mag: str = "100X", seed: int = 0) -> None:
    """One testbed image per subtype next to its lesion mask (4 x 4 grid of panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from breastzoo.data.constants import SUBTYPE_CLASS, SUBTYPE_NAMES
    from breastzoo.data.testbed import patient_style, render_image

    fig, axes = plt.subplots(
        4, 4, figsize=(16, 11.2), dpi=80, gridspec_kw={"width_ratios": [1, 0.6, 1, 0.6]}
    )
    for i, subtype in enumerate(CLASSES):
        style = patient_style(np.random.default_rng([seed, i, 1]))
        img, mask = render_image(subtype, mag, np.random.default_rng([seed, i, 2]), stain=style)
        ax_img, ax_mask = axes[i // 2, 2 * (i % 2)], axes[i // 2, 2 * (i % 2) + 1]
        ax_img.imshow(img)
        ax_img.contour(mask, levels=[0.5], colors="yellow", linewidths=0.8)
        ax_img.set_title(
            f"{subtype}: {SUBTYPE_NAMES[subtype].replace('_', ' ')} "
            f"({SUBTYPE_CLASS[subtype]}), {mag}",
            fontsize=11,
        )
        ax_mask.imshow(mask, cmap="gray", vmin=0, vmax=1)
        ax_mask.set_title(f"lesion mask ({100 * mask.mean():.0f}% of image)", fontsize=10)
        for ax in (ax_img, ax_mask):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "breastzoo synthetic BreaKHis-format testbed (not BreaKHis): one 700x460 "
        "image per subtype, lesion outlined in yellow",
        fontsize=13,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", "--preset", dest="size", default="demo",
                        choices=("tiny", "demo", "full"), help="testbed size (--preset: old name)")
    parser.add_argument("--seed", type=int, default=0, help="testbed seed")
    parser.add_argument("--mag", default="100X", choices=("40X", "100X", "200X", "400X"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--per-image", type=int, default=2, help="training samples per image per epoch (all views)"
    )
    parser.add_argument(
        "--no-color-jitter",
        action="store_true",
        help="flips/rotations only (paper 000's augmentation)",
    )
    parser.add_argument("--views", default="resized,oracle,random")
    parser.add_argument(
        "--data", type=Path, default=None, help="testbed folder (default: the breastzoo cache)"
    )
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument(
        "--figure", type=Path, help="only draw one image + mask per subtype at --mag into this PNG"
    )
    args = parser.parse_args(argv)
    if args.figure:
        draw_figure(args.figure, args.mag, args.seed)
        print(f"wrote {args.figure}")
        return 0
    if args.json is None:
        parser.error("--json PATH is required (or --figure PATH)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from breastzoo.data.testbed import synthesize
    from breastzoo.paths import cache_dir

    root = args.data or cache_dir() / "bench" / f"testbed-{args.size}-{args.seed}"
    t0 = time.perf_counter()
    summary = synthesize(root, size=args.size, seed=args.seed)
    how = "cached" if summary["cached"] else f"generated in {summary['seconds']:.0f} s"
    print(f"testbed: {summary['images']} images in {root} ({how})")

    views = args.views.split(",")
    results: dict[str, list[dict]] = {v: [] for v in views}
    splits = []
    for rep in range(args.repeats):
        data = load_split_images(root, args.mag, split_seed=rep)
        splits.append(
            {
                "seed": rep,
                "train_images": int(len(data["train"]["labels"])),
                "test_images": int(len(data["test"]["labels"])),
                "test_patients": sorted(set(data["test"]["patients"].tolist())),
                "random_crop_lesion_hit_rate": round(
                    lesion_hit_rate(data["test"]["masks"], np.random.default_rng(rep)), 3
                ),
            }
        )
        for view in views:
            res = run_view(
                view,
                data,
                args.epochs,
                args.batch,
                seed=1000 * rep + 7,
                per_image=args.per_image,
                color=not args.no_color_jitter,
            )
            results[view].append(res)
            print(
                f"repeat {rep}: {view:8s} acc {res['accuracy']:.3f} ({res['train_seconds']:.0f} s)",
                flush=True,
            )

    table = {
        v: {
            "median": statistics.median(r["accuracy"] for r in results[v]),
            "runs": [r["accuracy"] for r in results[v]],
        }
        for v in views
    }
    print(f"\n{'view':10s} {'median':>7s}  runs")
    for v in views:
        runs = " ".join(f"{a:.3f}" for a in table[v]["runs"])
        print(f"{v:10s} {table[v]['median']:7.3f}  {runs}")
    gap = None
    if "oracle" in table and "resized" in table:
        gap = table["oracle"]["median"] - table["resized"]["median"]
        print(f"oracle - resized: {100 * gap:+.1f} points (target >= +15)")

    out = {
        "command": "python bench/testbed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "size": args.size,
        "seed": args.seed,
        "magnification": args.mag,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "batch": args.batch,
        "per_image": args.per_image,
        "color_jitter": not args.no_color_jitter,
        "optimizer": "Adam(1e-3)",
        "crop": CROP,
        "test_crops": 5,
        "data": str(root),
        "generation": summary,
        "splits": splits,
        "accuracy": table,
        "oracle_minus_resized": gap,
        "details": results,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
