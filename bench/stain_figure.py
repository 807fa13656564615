"""Figure: Reinhard and Macenko stain normalisation on real BreaKHis 100X images.

Four images of the real development subset (2 benign, 2 malignant, four different patient
groups) in rows; columns: the original, :func:`breastzoo.data.stain.normalize_stain` with
``"reinhard"`` and with ``"macenko"``, each with the project's documented default reference
(:func:`breastzoo.data.stain.default_reference`). Normalisation runs on the full-resolution
image, as in the training pipeline; only the displayed thumbnails are downscaled (which keeps
the PNG small). Per image and method it also prints the mean RGB and the share of clipped
(0 or 255) channel values, so colour blow-ups show up as numbers too::

    python bench/stain_figure.py [--data ../shared/realdata] [--out docs/img/real_stain.png]

The images are read from ``--data`` and never copied into the repository; only the figure is
written.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("reinhard", "macenko")
TITLES = {"original": "original", "reinhard": "Reinhard (lαβ)", "macenko": "Macenko"}
THUMB_WIDTH = 300  # display size only; normalisation runs on the full 700x460 image
DPI = 88


def pick_images(records: list, per_class: int = 2) -> list:
    """``per_class`` benign and malignant records, one per patient group, chosen without
    randomness: patients in sorted id order, skipping a group already used, and the middle
    image (sorted by path) of each patient.

    Args:
        records: BreaKHis index records of one magnification.
        per_class: images per class.

    Returns:
        Records, benign first.

    Example:
        >>> pick_images([])
        []
    """
    from breastzoo.data.splits import patient_group

    chosen = []
    for label in ("benign", "malignant"):
        by_patient: dict[str, list] = {}
        for r in records:
            if r.label == label:
                by_patient.setdefault(r.patient, []).append(r)
        groups: set[str] = set()
        for patient in sorted(by_patient):
            if len(groups) == per_class:
                break
            if patient_group(patient) in groups:
                continue
            groups.add(patient_group(patient))
            images = sorted(by_patient[patient], key=lambda r: r.path)
            chosen.append(images[len(images) // 2])
    return chosen


def _thumb(image: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    size = (width, max(1, round(h * width / w)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _stats(image: np.ndarray) -> str:
    mean = image.reshape(-1, 3).mean(0)
    clipped = float(np.mean((image == 0) | (image == 255)))
    return f"mean RGB ({mean[0]:5.1f}, {mean[1]:5.1f}, {mean[2]:5.1f})  clipped {clipped:6.2%}"


def make_figure(data: Path, out: Path) -> Path:
    """Normalise four real images and write the figure to ``out`` atomically.

    Args:
        data: root of the real BreaKHis subset (``BreaKHis_v1/...`` below it).
        out: PNG to write.

    Returns:
        ``out``.

    Raises:
        SystemExit: ``data`` is missing or holds fewer than two images of each class at 100X.

    Example:
        >>> make_figure(Path("../shared/realdata"), Path("real_stain.png"))  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from breastzoo.data.index import index_dataset
    from breastzoo.data.pipeline import decode_image
    from breastzoo.data.stain import normalize_stain

    if not data.is_dir():
        raise SystemExit(f"Real data folder not found. Received: --data {data}")
    records = index_dataset(data, "breakhis").filter("100X").records
    picked = pick_images(records)
    if len(picked) != 4:
        raise SystemExit(
            f"Need 2 benign and 2 malignant patient groups at 100X. Received: {len(picked)} "
            f"images under {data}"
        )

    rows = []
    for r in picked:
        original = decode_image(r.path).numpy()
        row = {"original": original}
        for method in METHODS:
            # Default reference of each method (normalize_stain's reference=None), float32 out.
            normalised = normalize_stain(original, method).numpy()
            row[method] = np.clip(np.round(normalised), 0, 255).astype(np.uint8)
        rows.append((r, row))
        for name, image in row.items():
            print(f"{r.patient:12s} {r.label:9s} {name:9s} {_stats(image)}")

    columns = ("original", *METHODS)
    # ~300 px per panel at DPI: photographs compress poorly in PNG, so the pixel count is
    # what keeps the file under ~1.5 MB.
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(3.3 * len(columns), 2.3 * len(rows)))
    for i, (r, row) in enumerate(rows):
        for j, name in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(_thumb(row[name]))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(TITLES[name], fontsize=11)
            if j == 0:
                ax.set_ylabel(f"{r.patient}\n{r.label} ({r.subtype})", fontsize=9)
    fig.suptitle("Stain normalisation, real BreaKHis subset, 100X", fontsize=12)
    fig.text(
        0.5,
        0.005,
        "Rows: one image per patient (2 benign, 2 malignant). Default references: Reinhard = "
        "HistomicsTK TCGA lαβ statistics, Macenko = reference-implementation stain matrix.",
        ha="center",
        va="bottom",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))

    out.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a reader never sees a half-written PNG.
    tmp = out.parent / f".{out.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--data`` (real subset root) and ``--out`` (PNG path)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "realdata",
        help="root of the real BreaKHis subset (default: ../shared/realdata beside the repo)",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "img" / "real_stain.png", help="PNG to write"
    )
    args = parser.parse_args(argv)
    make_figure(args.data, args.out)


if __name__ == "__main__":
    main()
