"""Re-score a finished ``breastzoo tune`` study: per-image validation accuracy of each trial's
saved best-epoch weights.

Why: before 2026-11-22 ``SelectiveAttention.test_step`` averaged batch means, so a short last
validation batch weighted its images more (53 images in batches of 4 scored as if 56). A study
run with that metric keeps its trials' best-epoch checkpoints (KerasTuner's
``checkpoint.weights.h5``); this script loads each one, predicts every validation image once and
counts the correct ones, so the table can be quoted with the per-image metric. The epoch each
checkpoint comes from was still chosen by the old metric; the output says so per trial.

Usage (the same study options as the ``breastzoo tune`` run)::

    python bench/tune_rescore.py tuning/roi_patch.yaml --data demo --config demo \
        --epochs 4 --steps-per-epoch 25 --out runs/tune/roi_patch-demo-e4s25 \
        --json bench/results/tune_roi_patch_demo_e4s25_rescored.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rescore(study_file: str, data: str, preset: str, out: Path,
            overrides: dict) -> list[dict]:
    """Per-image validation accuracy of every completed trial's checkpoint in ``out``."""
    import keras_tuner

    from breastzoo.training import build_datasets, prepare_data
    from breastzoo.tuning.hypermodels import hypermodel_for
    from breastzoo.tuning.runner import base_config
    from breastzoo.tuning.studies import load_study

    study = load_study(study_file, preset=preset)
    base = base_config(study, preset, overrides)
    prepared = prepare_data(study.dataset, data, study.mag, study.task, base.seed)
    hypermodel = hypermodel_for(study.model)(base, prepared, study.space)
    rows = []
    for trial_dir in sorted((out / "keras_tuner").glob("trial_*")):
        trial = keras_tuner.engine.trial.Trial.load(str(trial_dir / "trial.json"))
        weights = trial_dir / "checkpoint.weights.h5"
        if trial.status != "COMPLETED" or not weights.exists():
            continue
        values = {name: trial.hyperparameters.get(name) for name in study.space}
        model = hypermodel.build(trial.hyperparameters)
        config = hypermodel.config_for(values)
        _, val, _ = build_datasets(prepared, config)
        model.infer(next(iter(val))[0])  # create the variables before loading the weights
        model.load_weights(weights)
        labels, preds = [], []
        for images, y in val:
            preds.append(np.argmax(np.asarray(model.infer(images)["probs"]), axis=-1))
            labels.append(np.asarray(y).reshape(-1))
        correct = int(np.sum(np.concatenate(preds) == np.concatenate(labels)))
        n = int(sum(len(y) for y in labels))
        # Cross-check: the fixed test_step must agree with the count above.
        evaluated = model.evaluate(val, verbose=0, return_dict=True)
        rows.append({
            "trial": trial.trial_id, **values,
            "recorded_score": trial.score, "best_epoch": trial.best_step,
            "correct": correct, "images": n, "val_accuracy_per_image": correct / n,
            "evaluate_accuracy": float(evaluated["accuracy"]),
        })
        print(f"trial {trial.trial_id} {values}: recorded {trial.score:.3f}, per image "
              f"{correct}/{n} = {correct / n:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--config", default="demo")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    overrides = {k: v for k, v in (("epochs", args.epochs),
                                   ("steps_per_epoch", args.steps_per_epoch)) if v is not None}
    rows = rescore(args.study, args.data, args.config, args.out, overrides)
    from breastzoo.io import atomic_write_json

    atomic_write_json(args.json, {"command": " ".join(sys.argv), "study_dir": str(args.out),
                                  "note": "synthetic BreaKHis-format testbed, not BreaKHis; "
                                          "checkpoint epoch chosen by the recorded score",
                                  "trials": rows})
    print(json.dumps({"written": str(args.json), "trials": len(rows)}))


if __name__ == "__main__":
    main()
