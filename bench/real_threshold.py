"""Probe: would a decision threshold chosen on the validation patients help on held-out ones?

Several bench/real.py runs rank the test images well (AUC 0.83-0.90) yet call almost all of
them one class (balanced accuracy 0.50-0.62): the ranking is learnt, the operating point is
not. This probe loads each finished run of ``runs/bench-real``, scores its *validation*
patients, picks the threshold on P(malignant) that maximises validation balanced accuracy
(the middle of the best range), applies it to the run's stored test probabilities and prints
argmax vs calibrated balanced accuracy side by side. Nothing is tuned on the test patients.

Usage::

    python bench/real_threshold.py [--runs runs/bench-real] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_threshold(p_pos: np.ndarray, y: np.ndarray) -> float:
    """Threshold on P(positive) with the best balanced accuracy on (p_pos, y).

    Candidates are the midpoints between sorted distinct scores (and 0.5); among the best ones
    the median is taken, so a wide plateau gives its centre rather than an edge.

    Example:
        >>> best_threshold(np.array([0.1, 0.2, 0.6, 0.7]), np.array([0, 0, 1, 1]))
        0.4
    """
    from sklearn.metrics import balanced_accuracy_score

    s = np.unique(p_pos)
    cands = np.unique(np.concatenate([[0.5], (s[1:] + s[:-1]) / 2])) if len(s) > 1 else [0.5]
    scores = [balanced_accuracy_score(y, (p_pos >= t).astype(int)) for t in cands]
    best = max(scores)
    tied = [t for t, sc in zip(cands, scores, strict=True) if sc >= best - 1e-12]
    return float(statistics.median(tied))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-real")
    parser.add_argument("--json", type=Path,
                        default=ROOT / "bench" / "results" / "real_threshold.json")
    args = parser.parse_args(argv)

    import keras
    from sklearn.metrics import balanced_accuracy_score

    from breastzoo.evaluation.reports import predict_records
    from breastzoo.io import atomic_write_json, read_json
    from breastzoo.runs import RunFolder, load_model, load_prepared

    rows = []
    for run in sorted(args.runs.glob("seed*-fold*-*")):
        folder = RunFolder(run)
        if not folder.is_finished or not folder.predictions_path.exists():
            continue
        config = folder.train_config()
        prepared = load_prepared(run)
        val = prepared.split.assign(prepared.records)["val"]
        model = load_model(folder.model_path)
        v = predict_records(model, val, prepared.class_names, config)
        t = best_threshold(v["probs"][:, 1], np.asarray(v["labels"]))
        pred = read_json(folder.predictions_path)["images"]
        y = np.array([im["label"] for im in pred])
        p = np.array([im["probs"][1] for im in pred])
        before = balanced_accuracy_score(y, (p >= 0.5).astype(int))
        after = balanced_accuracy_score(y, (p >= t).astype(int))
        row = {"run": run.name, "model": config.model, "threshold": t,
               "bal_acc_argmax": float(before), "bal_acc_threshold": float(after),
               "predicted_malignant_argmax": int((p >= 0.5).sum()),
               "predicted_malignant_threshold": int((p >= t).sum()), "n": len(y)}
        rows.append(row)
        print(f"{run.name:32s} t={t:.3f}  bal.acc {before:.3f} -> {after:.3f}  "
              f"malignant calls {row['predicted_malignant_argmax']} -> "
              f"{row['predicted_malignant_threshold']} of {len(y)}", flush=True)
        keras.backend.clear_session()
    summary = {}
    for model in sorted({r["model"] for r in rows}):
        rs = [r for r in rows if r["model"] == model]
        summary[model] = {k: statistics.fmean(r[k] for r in rs)
                          for k in ("bal_acc_argmax", "bal_acc_threshold")} | {"runs": len(rs)}
        print(f"{model:14s} argmax {summary[model]['bal_acc_argmax']:.3f}  threshold "
              f"{summary[model]['bal_acc_threshold']:.3f}  ({len(rs)} runs)")
    atomic_write_json(args.json, {"data": "real BreaKHis subset (../shared/realdata), 100X, "
                                  "binary", "summary": summary, "runs": rows})
    return summary


if __name__ == "__main__":
    main()
