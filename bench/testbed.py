"""Calibrate the synthetic testbed with the ablation's own models.

Trains ``sanet_resize`` (the whole image resized to 112x112: paper 000's "-DeNet"),
``random_roi`` (random full-resolution crops), ``grid_confident`` (the crop classifier's most
confident tiles of a dense grid, no policy) and ``oracle_roi`` (crops inside the lesion: the
upper bound of hard attention) exactly as ``bench/ablation.py`` does (same
``breastzoo.training.fit`` path, same presets and budget options; it calls that script's
:func:`run_ablation`), on each data seed, and prints every model's per-class prediction
counts, so a collapsed model (one class for every image) is visible rather than read as a
hard task.

The testbed's premise is ``oracle_roi`` well above ``sanet_resize`` (target: at least 20
points of IRR, median over 3 data seeds) and ``random_roi`` near ``sanet_resize``.
Results are on SYNTHETIC data and are not BreaKHis results.

Usage::

    python bench/testbed.py --quick --seeds 0,1,2 --out runs/testbed \\
        --json bench/results/testbed.json
    python bench/testbed.py --size tiny --epochs 1 --steps 2     # smoke run

The testbed figure (docs/img/testbed_subtypes.png) is drawn by ``bench/testbed_figure.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ablation import add_arguments, run_from_args  # noqa: E402

MODELS = ("sanet_resize", "random_roi", "grid_confident", "oracle_roi")
#: Points of IRR that ``oracle_roi`` should gain over ``sanet_resize`` (median over seeds).
TARGET_GAP = 20.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    args = parser.parse_args(argv)
    report = run_from_args(args, [m for m in args.models.split(",") if m])
    summary = report["summary"]
    if "oracle_roi" in summary and "sanet_resize" in summary:
        oracle, resize = summary["oracle_roi"]["irr"], summary["sanet_resize"]["irr"]
        if oracle["median"] is not None and resize["median"] is not None:
            gap = 100 * (oracle["median"] - resize["median"])
            print(f"oracle_roi - sanet_resize: {gap:+.1f} points of IRR (median over seeds; "
                  f"target >= +{TARGET_GAP:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
