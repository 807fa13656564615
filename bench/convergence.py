"""Paper 000's convergence claim: DeNet's selection trains SaNet to a target validation
accuracy in about half the time of training SaNet on every candidate patch.

    python bench/convergence.py [--epochs 10] [--target 0.3] [--seed 0] --json PATH

Both runs use the same data (synthetic ``demo`` testbed at 100X, data seed ``--seed``), split,
glimpse budget and optimisers; ``selection="all"`` makes every glimpse DeNet visits a SaNet
training patch. Reports, per run, the first epoch whose validation accuracy reaches
``--target``, the wall seconds to get there and the whole history. Synthetic data, not
BreaKHis.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def first_reaching(epochs: list[dict], target: float) -> tuple[int | None, float | None]:
    """(1-based epoch, cumulative seconds) at which val_accuracy first reaches target."""
    seconds = 0.0
    for e in epochs:
        seconds += e.get("epoch_seconds", 0.0)
        if e.get("val_accuracy", 0.0) >= target:
            return e["epoch"] + 1, seconds
    return None, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from breastzoo.configs import preset
    from breastzoo.io import atomic_write_json, read_json
    from breastzoo.paths import ensure_demo_data
    from breastzoo.training import fit

    root = ensure_demo_data("demo", args.seed)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="convergence-"))
    results = {}
    for selection in ("denet", "all"):
        cfg = preset("demo").replace(epochs=args.epochs, selection=selection)
        r = fit("breakhis", data=str(root), mag="100", config=cfg, preset="bench",
                out=out / selection, verbose=0, log=print)
        epochs = read_json(out / selection / "history.json")["epochs"]
        epoch, seconds = first_reaching(epochs, args.target)
        results[selection] = {
            "epochs_to_target": epoch, "seconds_to_target": seconds,
            "total_seconds": sum(e.get("epoch_seconds", 0.0) for e in epochs),
            "test_irr": r["metrics"]["irr"],
            "val_accuracy": [e.get("val_accuracy") for e in epochs],
        }
        print(selection, results[selection])
    atomic_write_json(args.json, {
        "data": f"synthetic testbed, demo size, data seed {args.seed}, 100X (not BreaKHis)",
        "target_val_accuracy": args.target, "epochs": args.epochs, "results": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
