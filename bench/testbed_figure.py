"""Draw docs/img/testbed_subtypes.png: what the synthetic testbed (v2) looks like.

Top row: one whole 700x460 image with its lesion outlined (yellow) and the 112x112 window
centred on it (cyan), next to the same image resized to 112x112 (what a model that resizes
the whole image sees). Below: the 112x112 full-resolution window centred on the lesion of one
image per subtype, every image with its own patient's stain.

    python bench/testbed_figure.py docs/img/testbed_subtypes.png [--mag 100X] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CROP = 112


def lesion_window(mask: np.ndarray, size: int = CROP) -> tuple[int, int]:
    """Top-left corner (y, x) of the ``size``-pixel window centred on the lesion's centroid.

    Args:
        mask: bool lesion mask (height, width).
        size: window side in pixels.

    Example:
        >>> m = np.zeros((300, 400), bool)
        >>> m[100:120, 200:230] = True
        >>> lesion_window(m)
        (54, 158)
    """
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0 = int(np.clip(round(float(ys.mean())) - size // 2, 0, max(h - size, 0)))
    x0 = int(np.clip(round(float(xs.mean())) - size // 2, 0, max(w - size, 0)))
    return y0, x0


def draw(path: Path, mag: str = "100X", seed: int = 0) -> None:
    """Render the figure into ``path`` (PNG).

    Args:
        path: output file.
        mag: magnification of every image (``"40X"`` .. ``"400X"``).
        seed: seed of the images and patients drawn.

    Example:
        >>> draw(Path("/tmp/testbed_subtypes.png"))  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    from breastzoo.data.constants import SUBTYPE_CLASS, SUBTYPE_NAMES, SUBTYPES
    from breastzoo.data.testbed import TESTBED_VERSION, patient_style, render_image

    def one(i: int, subtype: str) -> tuple[np.ndarray, np.ndarray]:
        style = patient_style(np.random.default_rng([seed, i, 1]))
        return render_image(subtype, mag, np.random.default_rng([seed, i, 2]), stain=style)

    fig = plt.figure(figsize=(16, 13), dpi=80)
    grid = fig.add_gridspec(3, 4, height_ratios=[1.35, 1, 1])
    whole, mask = one(4, "DC")
    ax = fig.add_subplot(grid[0, :3])
    ax.imshow(whole)
    ax.contour(mask, levels=[0.5], colors="yellow", linewidths=1.0)
    y0, x0 = lesion_window(mask)
    ax.add_patch(Rectangle((x0, y0), CROP, CROP, fill=False, edgecolor="cyan", linewidth=1.2))
    ax.set_title(
        f"DC, {mag}: the whole 700x460 image; lesion ({100 * mask.mean():.1f}% of the image) "
        "in yellow, a 112x112 window on it in cyan",
        fontsize=11,
    )
    ax = fig.add_subplot(grid[0, 3])
    ax.imshow(np.asarray(Image.fromarray(whole).resize((CROP, CROP), Image.Resampling.BILINEAR)))
    ax.set_title("the same image resized to 112x112", fontsize=11)
    for i, subtype in enumerate(SUBTYPES):
        img, mask = one(i if subtype != "DC" else 4, subtype)
        y0, x0 = lesion_window(mask)
        ax = fig.add_subplot(grid[1 + i // 4, i % 4])
        ax.imshow(img[y0 : y0 + CROP, x0 : x0 + CROP], interpolation="nearest")
        ax.contour(
            mask[y0 : y0 + CROP, x0 : x0 + CROP], levels=[0.5], colors="yellow", linewidths=0.8
        )
        ax.set_title(
            f"{subtype}: {SUBTYPE_NAMES[subtype].replace('_', ' ')} ({SUBTYPE_CLASS[subtype]})",
            fontsize=11,
        )
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"breastzoo synthetic BreaKHis-format testbed v{TESTBED_VERSION} (not BreaKHis), {mag}: "
        "below, the 112x112 full-resolution window on the lesion of one image per subtype",
        fontsize=13,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python bench/testbed_figure.py OUT.png [--mag 100X] [--seed 0]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--mag", default="100X", choices=("40X", "100X", "200X", "400X"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    draw(args.out, args.mag, args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
