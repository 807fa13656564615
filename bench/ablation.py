"""Paper 000's Table V analogue on the synthetic testbed: DeNet+SaNet vs its ablations.

    python bench/ablation.py [--quick] [--seed N] [--models a,b] --json PATH

Trains every model on the same patient-wise split of the ``demo`` testbed (data seed
``--seed``) at 100X with the same budget and reports image / patient recognition rates, the
ROI hit rate (fraction of ROI centres inside the ground-truth lesion) and training time.
Results are on SYNTHETIC data and are not BreaKHis results.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from breastzoo.configs import preset  # noqa: E402
from breastzoo.io import atomic_write_json  # noqa: E402

DEFAULT_MODELS = ("denet_sanet", "sanet_resize", "random_roi", "oracle_roi")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short budget (< 25 min, 2 cores)")
    parser.add_argument("--seed", type=int, default=0, help="testbed (data) seed")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--reward", default=None, help="DeNet reward: paper or per_image")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig field, e.g. --set sanet_lr=0.001")
    parser.add_argument("--json", required=True, help="output JSON path")
    parser.add_argument("--out", default=None, help="keep run folders here")
    args = parser.parse_args()

    from breastzoo.paths import ensure_demo_data
    from breastzoo.training import fit

    root = ensure_demo_data("demo", args.seed)
    base = preset("demo")
    if args.quick:
        base = base.replace(epochs=6, steps_per_epoch=40)
    base = base.replace(epochs=args.epochs, reward=args.reward)
    for item in args.set:
        field, _, value = item.partition("=")
        current = getattr(base, field)
        base = base.replace(**{field: type(current)(value) if current is not None else value})
    out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ablation-"))
    results: dict[str, dict] = {}
    for name in args.models.split(","):
        cfg = base.replace(model=name)
        start = time.perf_counter()
        r = fit("breakhis", data=str(root), mag="100", config=cfg, preset="bench",
                out=out_root / name, verbose=0, log=print)
        m = r["metrics"]
        results[name] = {
            "irr": m["irr"], "prr": m["prr"], "kappa": m["kappa"],
            "binary_irr": m["binary"]["irr"], "roi_hit_rate": m["roi_hit_rate"],
            "train_seconds": time.perf_counter() - start,
        }
        print(json.dumps({name: results[name]}))
    report = {
        "data": f"synthetic testbed, demo size, data seed {args.seed}, 100X (not BreaKHis)",
        "budget": {"epochs": base.epochs, "steps_per_epoch": base.steps_per_epoch,
                   "batch_size": base.batch_size, "quick": args.quick},
        "reward": base.reward,
        "overrides": args.set,
        "models": results,
    }
    atomic_write_json(args.json, report)
    print(f"{'model':<14} {'IRR':>6} {'PRR':>6} {'hit':>6} {'sec':>7}")
    for name, r in results.items():
        hit = "-" if r["roi_hit_rate"] is None else f"{r['roi_hit_rate']:.2f}"
        print(f"{name:<14} {r['irr']:6.3f} {r['prr']:6.3f} {hit:>6} {r['train_seconds']:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
