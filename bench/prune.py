"""SEP channel pruning that keeps accuracy: paper 002's Table 7 and Fig. 13 analogues, on
the real BreaKHis subset (patient-wise folds) and on the synthetic testbed.

**Real subset** (``--data real``, the default): the hybrids ``bench/real.py`` trained on its
patient-wise folds (preset ``real``: two half-width Inception-SEP branches at 112x112, 5x3
patches; ``<--source-runs>/seed<S>-fold<i>-hybrid``) are pruned with ``breastzoo prune``
(:func:`breastzoo.pruning.run.prune_run`), one run folder per variant under ``--runs``,
evaluated on the fold's test patients. Variants (:data:`HYBRID_PLANS`), each retrained
``--retrain-epochs`` epochs of ``--steps`` iterations:

* ``unpruned+retrain``: O = 0 retrained like the pruned rows without a teacher (the
  reference: same budget); ``unpruned+retrain+kd``: the same with the source as teacher;
* ``sep/run``: SEP O = ``--ratio``, retrained with the run's own schedule from its start
  (the first recipe); ``sep/restart``: warm restart; ``sep/restart+kd``: warm restart and
  distillation; ``sep+convs/restart+kd``: the same with the stem and reduce convolutions
  pruned too;
* ``sep+magnitude``: SEP O plus magnitude pruning to ``--sparsity``; ``magnitude``:
  magnitude alone at the sparsity that leaves the same non-zero weights (Fig. 13);
* ``unpruned`` (the source run as trained) and ``majority``.

Variants run one after another over every fold, so an interrupted run keeps whole variants;
finished run folders are read back on a rerun.

**Testbed** (``--data testbed``): one full-width Inception-SEP branch (3.77 M parameters,
paper 002's Table 7 model) on the whole image resized to ``--size`` (scaled to [0, 1];
random flips; class-balanced loss), benign vs malignant at 100X, one replicate per
patient-wise split seed. (On the real subset this bare branch does not learn at a CPU
budget: fold 0 scored 0.38 balanced accuracy after 8 epochs at 160x160, so the real rows use
the hybrids, which do.)

In each testbed replicate the unpruned branch trains ``--epochs`` epochs (Adam ``--lr``); then every
variant starts from those weights and retrains ``--retrain-epochs`` epochs:

* ``unpruned``: no retraining (what the variants start from);
* ``unpruned+retrain``: O = 0 retrained like the pruned rows (the reference: same budget);
* ``sep/constant``: SEP O = ``--ratio`` (R = 1: eq. 5 importance, eq. 8 removal, physical
  removal), retrained at the training rate, constant (the recipe of the first benchmark);
* ``sep/restart``: the same pruned network, warm restart: the rate climbs from
  ``--retrain-lr``/10 to ``--retrain-lr`` over one epoch, then cosine decay to zero
  (:func:`breastzoo.models.factory.warm_restart_schedule`);
* ``sep/restart+kd``: warm restart plus distillation from the unpruned branch
  (:class:`breastzoo.pruning.retrain.Distiller`, ``--alpha``, ``--temperature``);
* ``sep+convs/restart+kd``: the same, with the stem and reduce convolutions pruned too
  (``prune_once(..., convs=True)``);
* ``sep+magnitude``: SEP O plus TF-MOT magnitude pruning to ``--sparsity`` during the warm
  restart retraining; ``magnitude``: magnitude pruning alone from the unpruned branch at the
  sparsity that leaves the same number of non-zero weights (Fig. 13), same retraining;
* ``majority``: the training part's majority class (the trivial baseline);
* ``texture`` (testbed): the simple anchor, :class:`breastzoo.models.texture.TextureClassifier`
  fitted on the same training images. A replicate run before this row existed gets it on
  the next invocation without retraining anything.

Each row: balanced accuracy and accuracy on the test patients, per-class prediction counts,
parameters, non-zero parameters, MACs (224x224). Summary: mean ± standard error over
replicates, and each variant's paired difference from ``unpruned+retrain``. Latency: the
unpruned and the O-pruned architectures at batch 1, 224x224, timed round-robin in one process
(``--latency-repeats``). Results are written after every replicate and a rerun resumes.

Usage::

    python bench/prune.py --quick                  # real subset, 3 folds, 4 variants: ~55 min
    python bench/prune.py --quick --variants unpruned+retrain,sep/restart+kd,sep+magnitude,\
        magnitude,sep+convs/restart+kd,sep/run     # the table in docs/benchmarks.md
    python bench/prune.py --quick --data testbed   # testbed, split seeds 0, 1, 2
    python bench/prune.py --data real --size 224 --epochs 10 --retrain-epochs 6
    python bench/prune.py --latency-only           # the O sweep's architectures, timed
    python bench/prune.py --merge a.json b.json --json all.json   # replicates of several runs

Writes ``bench/results/prune_<data>[_quick].json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from breastzoo.io import atomic_write_json, read_json  # noqa: E402

VARIANTS = ("majority", "texture", "unpruned", "unpruned+retrain", "sep/constant", "sep/restart",
            "sep/restart+kd", "sep+convs/restart+kd", "sep+magnitude", "magnitude")
REFERENCE = "unpruned+retrain"
# Rows every testbed replicate has, whatever --variants says.
BASELINES = ("majority", "texture", "unpruned")


# ------------------------------------------------------------------ data

def _arrays(records, class_names, size: int):
    from breastzoo.data.pipeline import make_dataset

    ds = make_dataset(records, class_names, task="binary", batch_size=32,
                      image_size=(700, 460), resize=(size, size))
    xs, ys = [], []
    for images, labels in ds:
        xs.append(images.numpy())
        ys.append(labels.numpy())
    return np.concatenate(xs).astype("float32") / 255.0, np.concatenate(ys).astype("int32")


def replicates(args):
    """Yield ``(key, description, load, class_names, test_patients, records)``: ``load()``
    gives ``((x_train, y_train), (x_test, y_test))`` and ``records`` is ``(train, test)``,
    the image records behind them (train includes the validation part)."""
    from breastzoo.training import prepare_data

    if args.data == "real":
        from real import fold_splits

        if not args.real.is_dir():
            raise SystemExit(f"Real data not found. Received: --real {args.real} (the "
                             "BreaKHis subset lives in ../shared/realdata)")
        base = prepare_data("breakhis", str(args.real), "100X", "binary", 0)
        for seed in args.seeds:
            for i, split in enumerate(fold_splits(base.records, args.folds, seed, "binary")):
                if args.only is not None and i not in args.only:
                    continue
                parts = split.assign(base.records)
                yield (f"seed{seed}-fold{i}", f"fold {i + 1}/{args.folds}, seed {seed}",
                       lambda p=parts, b=base: (
                           _arrays(p["train"] + p["val"], b.class_names, args.size),
                           _arrays(p["test"], b.class_names, args.size)),
                       base.class_names, sorted({r.patient for r in parts["test"]}),
                       (parts["train"] + parts["val"], parts["test"]))
    else:
        from breastzoo.paths import ensure_demo_data

        root = ensure_demo_data(args.testbed_size)
        for seed in args.seeds:
            prepared = prepare_data("breakhis", str(root), "100X", "binary", seed)
            parts = prepared.parts()
            yield (f"seed{seed}", f"split seed {seed}",
                   lambda p=parts, c=prepared.class_names: (
                       _arrays(p["train"] + p["val"], c, args.size),
                       _arrays(p["test"], c, args.size)),
                   prepared.class_names, sorted({r.patient for r in parts["test"]}),
                   (parts["train"] + parts["val"], parts["test"]))


# ------------------------------------------------------------------ training

def _flip_batches(x, y, batch: int, seed: int):
    """An endless generator of shuffled, randomly flipped batches (cheap augmentation), with
    class-balancing sample weights (Keras takes no ``class_weight`` with a generator)."""
    from sklearn.utils.class_weight import compute_sample_weight

    w = compute_sample_weight("balanced", y).astype("float32")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(y))
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            xb = x[idx]
            if rng.random() < 0.5:
                xb = xb[:, :, ::-1]
            if rng.random() < 0.5:
                xb = xb[:, ::-1]
            yield np.ascontiguousarray(xb), y[idx], w[idx]


def texture_row(train, test, class_names: list[str], cache: Path) -> dict:
    """The simple anchor on one replicate: texture features + logistic regression
    (:class:`breastzoo.models.texture.TextureClassifier`), fitted on ``train`` and scored on
    ``test`` (image records) -> a row of the same shape as the pruned variants'."""
    from breastzoo.models.texture import TextureClassifier

    started = time.perf_counter()
    clf = TextureClassifier(cache_dir=cache)
    clf.fit(train, class_names, task="binary")
    y = np.array([class_names.index(r.label) for r in test])
    return {"variant": "texture", **_scores(y, clf.predict_proba(test)),
            "seconds": round(time.perf_counter() - started, 1)}


def with_texture(rows: list[dict], records, class_names: list[str], cache: Path) -> list[dict]:
    """``rows`` with the texture anchor inserted after ``majority`` if it is missing."""
    if any(r["variant"] == "texture" for r in rows):
        return rows
    row = texture_row(*records, class_names, cache)
    at = next((i + 1 for i, r in enumerate(rows) if r["variant"] == "majority"), 0)
    return [*rows[:at], row, *rows[at:]]


def merge(paths: list[Path]) -> dict:
    """One report from several ``--json`` reports of the same settings (for example one data
    seed each): their replicates side by side, re-summarised; latency from the first.

    Raises:
        SystemExit: the reports were run with different settings, or share a replicate.
    """
    reports = [read_json(p) for p in paths]
    first = reports[0]
    per_replicate: dict[str, list[dict]] = {}
    for path, report in zip(paths, reports, strict=True):
        if report.get("settings") != first.get("settings"):
            raise SystemExit(f"{path} was run with other settings than {paths[0]}: "
                             f"{report.get('settings')} vs {first.get('settings')}")
        for key, rows in report["replicates"].items():
            if key in per_replicate:
                raise SystemExit(f"Replicate {key} is in more than one report. "
                                 f"Received: {path}")
            per_replicate[key] = rows
    return {"command": "python bench/prune.py --merge " + " ".join(map(str, paths)),
            "commands": [r.get("command") for r in reports], "data": first.get("data"),
            "settings": first.get("settings"), "replicates": per_replicate,
            "summary": summarise(per_replicate), "latency": first.get("latency", [])}


def _copy(model, weights, example):
    """A fresh model of ``model``'s class and widths holding ``weights``."""
    clone = type(model).from_config(model.get_config())
    clone(example)
    clone.set_weights(weights)
    return clone


def _fit(model, x, y, *, epochs: int, batch: int, seed: int, callbacks=()):
    import keras

    steps = max(1, len(y) // batch)
    keras.utils.set_random_seed(seed)
    model.fit(_flip_batches(x, y, batch, seed), steps_per_epoch=steps, epochs=epochs,
              shuffle=False, callbacks=list(callbacks), verbose=0)
    return model


def _compile(model, lr) -> None:
    import keras

    # Eager: every pruned model is a new graph, and tracing one costs about as much as
    # a few dozen eager steps on a small CPU.
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], run_eagerly=True)


def _scores(y, probs) -> dict:
    """A row's scores from labels ``y`` and class probabilities ``probs``."""
    from sklearn.metrics import balanced_accuracy_score

    pred = np.argmax(probs, axis=1)
    return {"balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "accuracy": float((pred == y).mean()),
            "prediction_counts": np.bincount(pred, minlength=probs.shape[1]).tolist(),
            "label_counts": np.bincount(y, minlength=probs.shape[1]).tolist()}


def _score(model, x, y) -> dict:
    return _scores(y, model.predict(x, batch_size=32, verbose=0))


def _size(model) -> dict:
    from breastzoo.models.complexity import count_macs
    from breastzoo.pruning.magnitude import sparsity

    stats = sparsity(model)
    return {"params": int(model.count_params()), "nonzero_params": stats["nonzero_params"],
            "kernel_sparsity": round(stats["sparsity"], 4),
            "macs_224": count_macs(model, np.zeros((1, 224, 224, 3), "float32"))}


def _kernel_split(model) -> tuple[int, int]:
    """(weights in prunable kernels, all other weights) of a dense model."""
    from breastzoo.pruning.magnitude import prunable_kernels

    kernels = sum(int(np.prod(k.shape)) for k in prunable_kernels(model))
    return kernels, int(model.count_params()) - kernels


def run_replicate(args, key: str, load, seed: int) -> list[dict]:
    import keras

    from breastzoo.models.factory import warm_restart_schedule
    from breastzoo.models.inception_sep import InceptionSEP
    from breastzoo.pruning.magnitude import MagnitudePruning
    from breastzoo.pruning.retrain import Distiller
    from breastzoo.pruning.sep import prune_once

    (x_tr, y_tr), (x_te, y_te) = load()
    print(f"[{key}] train {len(y_tr)} images {np.bincount(y_tr, minlength=2).tolist()}, "
          f"test {len(y_te)} images {np.bincount(y_te, minlength=2).tolist()}", flush=True)
    rows = []
    majority = int(np.bincount(y_tr, minlength=2).argmax())
    counts = [0, 0]
    counts[majority] = len(y_te)
    rows.append({"variant": "majority", "balanced_accuracy": 0.5,
                 "accuracy": float((y_te == majority).mean()), "prediction_counts": counts,
                 "label_counts": np.bincount(y_te, minlength=2).tolist()})
    one = x_tr[:1]
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    base = InceptionSEP(2)
    base(one)
    _compile(base, args.lr)
    _fit(base, x_tr, y_tr, epochs=args.epochs, batch=args.batch, seed=seed)
    weights = base.get_weights()
    rows.append({"variant": "unpruned", **_score(base, x_te, y_te), **_size(base),
                 "seconds": round(time.perf_counter() - started, 1)})
    print(f"[{key}] {json.dumps(rows[-1])}", flush=True)
    scoring = [x_tr[i:i + 32] for i in range(0, len(x_tr), 32)]
    steps = max(1, len(y_tr) // args.batch)
    total = args.retrain_epochs * steps

    def restart():
        return warm_restart_schedule(args.retrain_lr, total, steps)

    # Every variant starts from a copy: the trained branch, or it pruned once (the same
    # importance, the same kept channels) with or without the stem and reduce convolutions.
    pruned, _ = prune_once(_copy(base, weights, one), scoring, args.ratio)
    pruned_convs, _ = prune_once(_copy(base, weights, one), scoring, args.ratio, convs=True)
    starts = {model_name: (model, model.get_weights()) for model_name, model in
              (("base", base), ("sep", pruned), ("sep+convs", pruned_convs))}

    def start(model_name):
        return lambda: _copy(starts[model_name][0], starts[model_name][1], one)

    fresh, fresh_pruned, fresh_pruned_convs = start("base"), start("sep"), start("sep+convs")

    k1, other1 = _kernel_split(pruned)
    k0, other0 = _kernel_split(base)
    mag_sparsity = 1.0 - ((1.0 - args.sparsity) * k1 + other1 - other0) / k0
    plans = {
        "unpruned+retrain": (fresh, restart, None, None),
        "sep/constant": (fresh_pruned, lambda: args.lr, None, None),
        "sep/restart": (fresh_pruned, restart, None, None),
        "sep/restart+kd": (fresh_pruned, restart, "kd", None),
        "sep+convs/restart+kd": (fresh_pruned_convs, restart, "kd", None),
        "sep+magnitude": (fresh_pruned, restart, None, args.sparsity),
        "magnitude": (fresh, restart, None, mag_sparsity),
    }
    for name in args.variants:
        if name not in plans:
            continue
        make, lr, kd, sparsity = plans[name]
        started = time.perf_counter()
        keras.utils.set_random_seed(seed)
        student = make()
        model = student
        if kd:
            model = Distiller(student, fresh(), alpha=args.alpha, temperature=args.temperature)
            model.compile(optimizer=keras.optimizers.Adam(lr()), run_eagerly=True)
        else:
            _compile(student, lr())
        callbacks = []
        if sparsity:
            callbacks.append(MagnitudePruning(sparsity, end_step=max(2, total),
                                              frequency=max(1, total // 10), target=student))
        _fit(model, x_tr, y_tr, epochs=args.retrain_epochs, batch=args.batch, seed=seed,
             callbacks=callbacks)
        rows.append({"variant": name, **_score(student, x_te, y_te), **_size(student),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(f"[{key}] {json.dumps(rows[-1])}", flush=True)
    return rows


# ------------------------------------------------------------------ real: the hybrids

#: Real-subset variants: ``breastzoo prune`` (:func:`breastzoo.pruning.run.prune_run`)
#: keyword arguments, on top of ``--ratio`` and the retraining budget.
#: In the order they run (every fold of one before the next), most telling first.
#: Every plan states ``distill``, so a change of ``prune_run``'s default cannot change a plan.
#: While that default was 0.5 (2026-12-02) the plans without ``+kd`` silently had a teacher,
#: in the first runs of the second replicate (``prune_real_quick_r2.json``, docs/benchmarks.md).
HYBRID_PLANS: dict[str, dict] = {
    "unpruned+retrain": dict(ratio=0.0, distill=0.0),
    "sep/restart+kd": dict(distill="alpha"),
    "sep+magnitude": dict(magnitude="sparsity", distill=0.0),
    "magnitude": dict(ratio=0.0, magnitude="matched", distill=0.0),
    "sep+convs/restart+kd": dict(distill="alpha", convs=True),
    "sep/run": dict(schedule="run", distill=0.0),
    "sep/restart": dict(distill=0.0),
    # The reference retrained like the distillation recipe, the source its own teacher.
    "unpruned+retrain+kd": dict(ratio=0.0, distill="alpha"),
    # Eq. 8's iterative form: R = 2 prune-retrain loops to the same O, the same total
    # retraining epochs split between the loops.
    "sep/restart+kd/R2": dict(distill="alpha", loops=2),
}
#: ``--quick`` on the real subset: the reference, the recommended recipe and the Fig. 13
#: pair, 4 x 3 runs of about 4.5 minutes on 2 cores.
QUICK_REAL = ("unpruned+retrain", "sep/restart", "sep+magnitude", "magnitude")


def _prediction_list(metrics: dict, names: list[str]) -> list[int]:
    return [int(metrics["prediction_counts"][n]) for n in names]


@functools.cache
def _source_facts(source: Path) -> dict:
    """What every variant of one source hybrid needs: its scores, sizes and the majority
    baseline (read once per fold, not once per variant pass)."""
    from breastzoo import runs
    from breastzoo.pruning.magnitude import sparsity

    run = runs.RunFolder(source)
    metrics = run.read_metrics()
    names = list(metrics["prediction_counts"])
    label_counts = [int(metrics["label_counts"][n]) for n in names]
    train = [r.label for r in runs.load_prepared(source).parts()["train"]]
    majority = max(names, key=train.count)
    model = runs.load_model(run.model_path)
    kernels, other = _kernel_split(model)
    return {"names": names, "label_counts": label_counts,
            "majority_counts": [sum(label_counts) if n == majority else 0 for n in names],
            "balanced_accuracy": metrics["balanced_accuracy"],
            "prediction_counts": _prediction_list(metrics, names),
            "params": int(model.count_params()),
            "nonzero_params": sparsity(model)["nonzero_params"],
            "kernels": kernels, "other": other}


def run_hybrid_replicate(args, key: str, source: Path, variants: list[str]) -> list[dict]:
    """``variants`` of one trained ``bench/real.py`` hybrid, through ``prune_run`` (those
    already in their run folders are read back)."""
    from breastzoo import runs
    from breastzoo.pruning.run import prune_run

    facts = _source_facts(source)
    names, label_counts = facts["names"], facts["label_counts"]
    rows = [{"variant": "majority", "balanced_accuracy": 0.5,
             "prediction_counts": facts["majority_counts"], "label_counts": label_counts},
            {"variant": "unpruned", "balanced_accuracy": facts["balanced_accuracy"],
             "prediction_counts": facts["prediction_counts"], "label_counts": label_counts,
             "params": facts["params"], "nonzero_params": facts["nonzero_params"]}]
    k0, other0 = facts["kernels"], facts["other"]
    done: dict[str, dict] = {}
    for name in variants:
        if name not in HYBRID_PLANS:
            continue
        plan = dict(HYBRID_PLANS[name])
        if plan.get("distill") == "alpha":
            plan["distill"] = args.alpha
        if plan.get("magnitude") == "sparsity":
            plan["magnitude"] = args.sparsity
        if plan.get("magnitude") == "matched":
            if "sep+magnitude" not in done:
                continue
            target = done["sep+magnitude"]["nonzero_params"]
            plan["magnitude"] = round(1.0 - (target - other0) / k0, 4)
        plan.setdefault("ratio", args.ratio)
        loops = plan.pop("loops", 1)
        out = args.runs / key / name.replace("/", "-").replace("+", "_")
        result_path = runs.RunFolder(out).pruning_path
        started = time.perf_counter()
        if result_path.exists():
            result = read_json(result_path)
            after = runs.RunFolder(out).read_metrics()
        else:
            result = prune_run(source, loops=loops,
                               epochs=max(1, args.retrain_epochs // loops),
                               steps_per_epoch=args.steps, retrain_lr=args.retrain_lr or None,
                               temperature=args.temperature, out=out, eager=True, verbose=0,
                               log=lambda _msg: None, **plan)
            after = result.pop("metrics")
            atomic_write_json(out / "bench_seconds.json",
                              {"seconds": round(time.perf_counter() - started, 1)})
        row = {"variant": name, "balanced_accuracy": after["balanced_accuracy"],
               "accuracy": after.get("accuracy"),
               "prediction_counts": _prediction_list(after, names),
               "label_counts": label_counts, "params": result["params_after"],
               "nonzero_params": result["nonzero_params_after"],
               "macs": result["macs_after"], "plan": {**plan, "loops": loops},
               "seconds": read_json(out / "bench_seconds.json")["seconds"]}
        rows[1].setdefault("macs", result["macs_before"])
        done[name] = row
        rows.append(row)
        print(f"[{key}] {json.dumps(row)}", flush=True)
    return rows


# ------------------------------------------------------------------ latency

def latency(args, ratios: list[str]) -> list[dict]:
    """Batch-1 latency of each ratio's architecture at 224x224, timed round-robin (a ``c``
    suffix: the stem and reduce convolutions pruned too)."""
    import tensorflow as tf

    from breastzoo.models.complexity import count_macs
    from breastzoo.models.inception_sep import InceptionSEP
    from breastzoo.pruning.sep import prune_once

    rng = np.random.default_rng(0)
    scoring = [rng.uniform(0, 1, (8, 224, 224, 3)).astype("float32")]
    base = InceptionSEP(2)
    base(scoring[0][:1])
    x = tf.constant(scoring[0][:1])
    models = {}
    for name in ratios:
        ratio, convs = float(str(name).rstrip("c")), str(name).endswith("c")
        model = base if ratio == 0 else prune_once(base, scoring, ratio, convs=convs)[0]
        fn = tf.function(lambda t, m=model: m(t, training=False))
        fn(x)
        fn(x)
        models[str(name)] = (model, fn, [])
    for _ in range(args.latency_repeats):
        for _, fn, times in models.values():
            t = time.perf_counter()
            fn(x).numpy()
            times.append(time.perf_counter() - t)
    rows = []
    for ratio, (model, _, times) in models.items():
        rows.append({"ratio": ratio, "convs": ratio.endswith("c"),
                     "params": int(model.count_params()),
                     "macs_224": count_macs(model, x),
                     "latency_ms": 1000.0 * statistics.median(times)})
    for row in rows:
        row["params_x"] = row["params"] / rows[0]["params"]
        row["macs_x"] = row["macs_224"] / rows[0]["macs_224"]
        row["latency_x"] = row["latency_ms"] / rows[0]["latency_ms"]
    return rows


# ------------------------------------------------------------------ summary

def _mean_se(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
    return {"mean": mean, "se": se, "n": len(values)}


def summarise(per_replicate: dict[str, list[dict]]) -> dict:
    out: dict[str, dict] = {}
    for name in dict.fromkeys([*VARIANTS, *HYBRID_PLANS]):
        runs = [next((r for r in rows if r["variant"] == name), None)
                for rows in per_replicate.values()]
        runs = [r for r in runs if r]
        if not runs:
            continue
        entry = {key: _mean_se([r[key] for r in runs])
                 for key in ("balanced_accuracy", "accuracy")
                 if all(r.get(key) is not None for r in runs)}
        entry["prediction_counts"] = np.sum([r["prediction_counts"] for r in runs], 0).tolist()
        for key in ("params", "nonzero_params", "macs_224", "macs"):
            if key in runs[0]:
                entry[key] = runs[0][key]
        pairs = []
        for rows in per_replicate.values():  # paired within each replicate
            by_name = {r["variant"]: r for r in rows}
            if name in by_name and REFERENCE in by_name:
                pairs.append((by_name[name]["balanced_accuracy"],
                              by_name[REFERENCE]["balanced_accuracy"]))
        if pairs and name != REFERENCE:
            entry["delta_vs_reference_points"] = _mean_se([100 * (a - b) for a, b in pairs])
        out[name] = entry
    return out


def _fmt(stat: dict, scale: float = 1.0) -> str:
    if stat["se"] is None:
        return f"{scale * stat['mean']:.3f}"
    return f"{scale * stat['mean']:.3f} ± {scale * stat['se']:.3f}"


def _fmt_delta(stat: dict | None) -> str:
    if stat is None:
        return "-"
    if stat["se"] is None:
        return f"{stat['mean']:+.1f}"
    return f"{stat['mean']:+.1f} ± {stat['se']:.1f}"


def markdown(report: dict) -> str:
    lines = ["| variant | params | non-zero | MACs | balanced acc. | vs reference "
             "(points) | predicted benign / malignant |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, e in report["summary"].items():
        delta = e.get("delta_vs_reference_points")
        macs = e.get("macs_224") or e.get("macs")
        counts = e["prediction_counts"]
        lines.append(
            f"| {name} | {e.get('params', 0):,} | {e.get('nonzero_params', 0):,} | "
            f"{'-' if not macs else f'{macs / 1e9:.3f} G'} | {_fmt(e['balanced_accuracy'])} | "
            f"{_fmt_delta(delta)} | "
            f"{' / '.join(str(c) for c in counts)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("real", "testbed"), default="real")
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "realdata")
    parser.add_argument("--source-runs", type=Path, default=ROOT / "runs" / "bench-real",
                        help="real: the trained hybrids of bench/real.py "
                             "(<dir>/seed<S>-fold<i>-hybrid)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-prune-real",
                        help="real: where the pruned runs go (a rerun resumes)")
    parser.add_argument("--testbed-size", default="demo", choices=("tiny", "demo", "full"))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--only", type=int, nargs="*", default=None,
                        help="real data: run only these fold indices")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="real: fold seeds (default 0); testbed: split seeds "
                             "(default 0 1 2)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--retrain-epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=None,
                        help="real: iterations per retraining epoch (default: the run's)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--retrain-lr", type=float, default=None,
                        help="warm restart peak (testbed default 3e-4; real default: "
                             "prune_run's, 0.3 x the run's rate)")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--variants", default=None,
                        help="comma-separated (default: every variant of the --data mode)")
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--latency-only", action="store_true",
                        help="only time the architectures (--ratios; 'c' suffix: with --convs)")
    parser.add_argument("--ratios", default="0,0.5,0.5c,0.7,0.9")
    parser.add_argument("--quick", action="store_true",
                        help="real: 3 folds of seed 0, 2 retraining epochs of 20 iterations; "
                             "testbed: 160x160, "
                             "8 + 4 epochs. Each at most 60 minutes on 2 cores")
    parser.add_argument("--no-latency", action="store_true",
                        help="keep the previous invocation's latency rows instead of timing")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine these --json reports (same settings, different "
                             "replicates) into --json and print the table; trains nothing")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.merge:
        if args.json is None:
            parser.error("--merge needs --json for the combined report")
        report = merge(args.merge)
        atomic_write_json(args.json, report)
        print(markdown(report))
        print(f"wrote {args.json}")
        return report
    if args.quick:
        if args.data == "real":
            args.retrain_epochs, args.steps = 2, args.steps or 20
        else:
            args.size, args.epochs, args.retrain_epochs = 160, 8, 4
    if args.seeds is None:
        args.seeds = [0] if args.data == "real" else [0, 1, 2]
    if args.retrain_lr is None and args.data == "testbed":
        args.retrain_lr = 3e-4
    default = list(HYBRID_PLANS) if args.data == "real" else [
        v for v in VARIANTS if v not in BASELINES]
    if args.quick and args.data == "real":
        default = list(QUICK_REAL)
    args.variants = ([v.strip() for v in args.variants.split(",") if v.strip()]
                     if args.variants else default)
    if args.latency_only:
        rows = latency(args, args.ratios.split(","))
        for row in rows:
            print(json.dumps(row))
        if args.json:
            atomic_write_json(args.json, {"command": "python bench/prune.py "
                                          + " ".join(sys.argv[1:]), "latency": rows})
        return {"latency": rows}
    suffix = "_quick" if args.quick else ""
    out = args.json or ROOT / "bench" / "results" / f"prune_{args.data}{suffix}.json"
    previous = read_json(out) if out.exists() else {}
    settings = {k: getattr(args, k) for k in ("data", "size", "epochs", "retrain_epochs",
                                              "steps", "batch", "lr", "retrain_lr", "ratio",
                                              "sparsity", "alpha", "temperature")}
    per_replicate = previous.get("replicates", {}) if previous.get("settings") == settings else {}
    started = time.perf_counter()
    if args.data == "real":
        jobs = [(f"seed{seed}-fold{i}", args.source_runs / f"seed{seed}-fold{i}-hybrid")
                for seed in args.seeds for i in range(args.folds)
                if args.only is None or i in args.only]
    else:
        jobs = [(key, load, names, records)
                for key, _what, load, names, _patients, records in replicates(args)]
    if args.data == "real":
        # Variant by variant, every fold of one before the next: an interrupted run still
        # has whole variants (a mean and a standard error) for the first ones.
        missing = [key for key, job in jobs if not (job / "model.keras").exists()]
        if missing:
            raise SystemExit(f"No trained hybrid for {', '.join(missing)} under "
                             f"{args.source_runs}. Run bench/real.py --models hybrid first.")
        jobs = [(key, args.variants[: i + 1], job) for i in range(len(args.variants))
                for key, job in jobs]
    for entry in jobs:
        if args.data == "real":
            key, variants, job = entry
            per_replicate[key] = run_hybrid_replicate(args, key, job, variants)
        else:
            key, job, names, records = entry
            rows = per_replicate.get(key)
            if rows is not None and any(r["variant"] == "texture" for r in rows):
                print(f"[{key}] done before, skipped", flush=True)
                continue
            if rows is None:
                seed = int(key.split("-")[0].removeprefix("seed"))
                rows = run_replicate(args, key, job, seed)
            else:
                print(f"[{key}] done before; adding the texture anchor", flush=True)
            rows = with_texture(rows, records, names, args.runs / "texture-cache")
            print(f"[{key}] {json.dumps(next(r for r in rows if r['variant'] == 'texture'))}",
                  flush=True)
            per_replicate[key] = rows
        report = {"command": "python bench/prune.py " + " ".join(sys.argv[1:] if argv is None
                                                                   else argv),
                  "data": ("real BreaKHis subset (../shared/realdata), 100X, benign vs "
                           "malignant, patient-wise folds of bench/real.py; the hybrids it "
                           "trained (preset real), pruned with breastzoo prune"
                           if args.data == "real" else
                           f"synthetic testbed ({args.testbed_size}), 100X, benign vs "
                           "malignant, patient-wise split seeds; one full-width branch"),
                  "settings": settings, "replicates": per_replicate,
                  "summary": summarise(per_replicate),
                  # kept until re-timed below, so that --no-latency can keep them
                  "latency": previous.get("latency", []),
                  "seconds_this_invocation": round(time.perf_counter() - started, 1)}
        atomic_write_json(out, report)
    report = read_json(out)
    if args.no_latency and report.get("latency"):
        print("--no-latency: the latency rows of the previous invocation are kept", flush=True)
    else:
        report["latency"] = latency(args, ["0", str(args.ratio), f"{args.ratio}c"])
    report["seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out, report)
    print(markdown(report))
    for row in report["latency"]:
        print(json.dumps(row))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
