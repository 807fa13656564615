"""Recipe probe on the real BreaKHis subset: one model, one hand-made patient-wise fold.

The single-fold experiments behind the ``real`` preset's choices (docs/models.md, "Training on
real BreaKHis"): the demo preset's budget, binary task, with ``--set``-style overrides, on
three hand-made folds of the 100X subset that each hold out one or two benign patient groups.
Each run appends one JSON line to bench/results/real_probe.jsonl. Single folds are noisy
(one benign patient decides a fold); bench/real.py is the benchmark.

Usage::

    python bench/real_probe.py sanet_resize 1 stain=none color_jitter=0.1 lr_schedule=cosine
"""
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from breastzoo.configs import apply_overrides, preset
from breastzoo.data.index import index_dataset
from breastzoo.data.splits import PatientSplit, patient_group
from breastzoo.datasource import DataSource
from breastzoo.evaluation.reports import predict_records
from breastzoo.training import PreparedData, train_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))



def main() -> dict:
    """Train and score one probe run; append its result line."""
    model, fold = sys.argv[1], int(sys.argv[2])
    over = sys.argv[3:]
    root = str(Path(__file__).resolve().parents[2] / "shared" / "realdata")
    idx = index_dataset(root, "breakhis").filter("100X")
    recs = idx.records
    groups = {}
    for r in recs:
        groups.setdefault(patient_group(r.patient), set()).add(r.patient)
    FOLDS = [  # test groups
        ["14-21998", "14-15704", "14-10926", "14-12204", "15-190"],
        ["14-22549", "14-12773", "14-13412", "14-10147"],
        ["14-3411", "14-25197", "14-12465", "14-15687", "14-18842", "14-11031", "14-2523"],
    ]
    VAL = [  # val groups from the rest
        ["14-3411", "14-12465", "14-10147"],
        ["14-3411", "14-15704", "14-11031"],
        ["14-22549", "14-15704", "14-10926"],
    ]
    test_g, val_g = FOLDS[fold], VAL[fold]
    def ids(gs: list[str]) -> list[str]:
        return sorted(p for g in gs for p in groups[g])

    train_g = [g for g in groups if g not in test_g and g not in val_g]
    split = PatientSplit(ids(train_g), ids(val_g), ids(test_g), seed=0, source=f"exp fold {fold}")
    split.check()
    cfg = apply_overrides(preset("demo", model), ["task=binary", *over])
    cfg = cfg.validate()
    prep = PreparedData(DataSource(Path(root), "breakhis", False), "100X",
                        ["benign", "malignant"], recs, split)
    tag = "_".join([model, str(fold)] + [o.replace("=", "") for o in over])
    run = Path(__file__).resolve().parents[1] / "runs" / "real-probe" / tag
    t0 = time.time()
    path = train_run(run, prep, cfg, verbose=2, log=print)
    train_s = time.time() - t0
    m = keras.saving.load_model(path, safe_mode=True)
    test = prep.parts()["test"]
    pred = predict_records(m, test, prep.class_names, cfg, Path(root))
    y = np.asarray(pred["labels"])
    p = pred["probs"]
    yh = p.argmax(-1)
    res = dict(tag=tag, train_s=train_s, irr=float((y == yh).mean()),
               bal=float(balanced_accuracy_score(y, yh)), auc=float(roc_auc_score(y, p[:, 1])),
               counts=np.bincount(yh, minlength=2).tolist(),
               labels=np.bincount(y, minlength=2).tolist())
    print("RESULT", json.dumps(res))
    with open(Path(__file__).resolve().parent / "results" / "real_probe.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    return res


if __name__ == "__main__":
    main()
