"""Real-data benchmark: patient-wise k-fold on the real BreaKHis subset, benign vs malignant.

Every model of the table is trained and scored on the same folds. Folds group patients by
their numeric id (14-22549AB / CD / G are one patient) and are stratified by the binary
label (:func:`breastzoo.data.splits.kfold_patients`); inside the training patients of each
fold, a quarter of the patients (again stratified and grouped) is the validation part that
picks the best epoch. The test patients of a fold are never seen in training or selection.

Rows:

* ``majority``: predict the training part's majority class (the trivial baseline);
* ``texture``: scikit-image LBP + GLCM + HED-percentile features with a class-balanced
  logistic regression (:class:`breastzoo.models.texture.TextureClassifier`; the classical
  anchor in the spirit of Spanhol et al. 2016), trained on train + val;
* ``sanet_resize``, ``centre_roi``, ``random_roi``, ``denet_sanet``, ``hybrid``: the Keras
  models, trained with ``breastzoo.training.fit`` exactly as ``breastzoo fit --split``
  does, at the ``--config`` preset;
* ``hybrid_bagN_sum``, ``hybrid_bagN_max`` (N >= 2; not in the default ``--models``): paper
  002's bagging, ``breastzoo fit --model hybrid --bagging N``: N hybrids, member ``i``
  trained on all but the ``i``-th of N folds of the fold's training patients (train + val)
  and validated on it, voting with the Sum or the Max rule. The members are trained once per
  fold x seed, in one run folder ``seed<S>-fold<F>-hybrid_bagN`` (saved with the Sum rule);
  the vote only changes inference, so the Max row is the same saved members reloaded
  (``safe_mode=True``) as an ``Ensemble`` with ``rule="max"`` and scored on the same test
  images (its metrics in ``<run>/vote-max/metrics.json``). Both rows report the training
  time of all N members and the ensemble's parameter count; with ``hybrid`` in the same
  invocation the summary adds the paired difference of balanced accuracy (mean ± standard
  error over folds x seeds) and the cost ratios (time, parameters) against the single
  hybrid. They cost about N hybrids each fold (~30 min per fold for N=5 on 2 cores).

Reported per model: mean ± std over folds x seeds of IRR, PRR, AUC and balanced accuracy;
per-class prediction counts summed over all test images (a model that calls everything one
class shows it here); and training wall time. Run folders are kept under ``--runs``, so an
interrupted benchmark resumes (finished runs are re-scored, not retrained).

Usage::

    python bench/real.py --quick                   # 3 folds x 1 seed (seed 0)
    python bench/real.py                           # 3 folds x 2 seeds (reuses seed 0's runs)
    python bench/real.py --models sanet_resize texture --folds 4 --seeds 0 1 2
    # bagging (issue 14): 5 hybrids vs one, both vote rules, ~2 h on 2 cores (3 folds)
    python bench/real.py --quick --models hybrid hybrid_bag5_sum hybrid_bag5_max \
        --runs runs/bench-real --json bench/results/real_bagging.json --no-docs

Writes ``bench/results/real[_quick].json``, the section "Real BreaKHis subset" of
docs/benchmarks.md (between ``<!-- real-subset:begin -->`` and ``<!-- real-subset:end -->``)
and DeNet's ROIs on real test images, ``docs/img/real_rois.png``.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from breastzoo.io import atomic_write_json, read_json  # noqa: E402

KERAS_MODELS = ("sanet_resize", "centre_roi", "random_roi", "denet_sanet", "hybrid")
ALL_MODELS = ("majority", "texture", *KERAS_MODELS)
METRICS = ("irr", "prr", "auc", "balanced_accuracy")
BEGIN, END = "<!-- real-subset:begin -->", "<!-- real-subset:end -->"
# Paper 002's bagging of hybrids: N members, scored with the Sum and/or Max vote.
BAGGING_MODEL = re.compile(r"hybrid_bag(\d+)_(sum|max)")


def bagging_of(model: str) -> tuple[int, str] | None:
    """``(members, vote rule)`` of a bagging row name (``hybrid_bag5_max`` -> ``(5, "max")``);
    None for any other model."""
    match = BAGGING_MODEL.fullmatch(model)
    return (int(match.group(1)), match.group(2)) if match else None


def model_name(text: str) -> str:
    """argparse type of ``--models``: a name of ALL_MODELS or ``hybrid_bagN_sum|max``."""
    bag = bagging_of(text)
    if text in ALL_MODELS or (bag is not None and bag[0] >= 2):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}; expected one of {', '.join(ALL_MODELS)} or "
        "hybrid_bagN_sum / hybrid_bagN_max with N >= 2")


def fold_splits(records: list, k: int, seed: int, task: str) -> list:
    """``k`` PatientSplits: fold ``i`` is the test part; a stratified, grouped quarter of the
    other patients is the validation part."""
    from breastzoo.data.splits import PatientSplit, kfold_patients, split_patients

    folds = kfold_patients(records, k=k, seed=seed, task=task)
    splits = []
    for i, test in enumerate(folds):
        test_set = set(test)
        rest = [r for r in records if r.patient not in test_set]
        # split_patients' "test" part of the rest is our validation part.
        inner = split_patients(rest, seed=seed, test_fraction=0.25, val_fraction=0.0,
                               task=task)
        split = PatientSplit(sorted(set(inner.train) | set(inner.val)), sorted(inner.test),
                             sorted(test), seed=seed,
                             source=f"bench/real.py fold {i + 1}/{k} seed {seed}")
        split.check()
        splits.append(split)
    return splits


def _metrics_row(metrics: dict, seconds: float) -> dict:
    auc = metrics.get("auc") or {}
    return {
        "irr": metrics["irr"], "prr": metrics["prr"],
        "auc": auc.get("positive", auc.get("macro")),
        "balanced_accuracy": metrics["balanced_accuracy"],
        "prediction_counts": metrics["prediction_counts"],
        "label_counts": metrics["label_counts"],
        "n_images": metrics["n_images"], "n_patients": metrics["n_patients"],
        "seconds": seconds, "warnings": metrics.get("warnings", []),
    }


def run_majority(prepared, split) -> dict:
    from breastzoo.evaluation.metrics import evaluate_predictions

    parts = split.assign(prepared.records)
    names = prepared.class_names
    train = [names.index(r.label) for r in parts["train"] + parts["val"]]
    majority = int(np.bincount(train, minlength=len(names)).argmax())
    test = parts["test"]
    y = np.array([names.index(r.label) for r in test])
    probs = np.zeros((len(test), len(names)))
    probs[:, majority] = 1.0
    m = evaluate_predictions(y, probs, [r.patient for r in test], names, task="binary")
    return _metrics_row(m, 0.0)


def run_texture(prepared, split, cache: Path) -> dict:
    from breastzoo.evaluation.metrics import evaluate_predictions
    from breastzoo.models.texture import TextureClassifier

    parts = split.assign(prepared.records)
    names = prepared.class_names
    started = time.perf_counter()
    clf = TextureClassifier(cache_dir=cache)
    clf.fit(parts["train"] + parts["val"], names, task="binary")
    test = parts["test"]
    probs = clf.predict_proba(test)
    seconds = time.perf_counter() - started
    y = np.array([names.index(r.label) for r in test])
    m = evaluate_predictions(y, probs, [r.patient for r in test], names, task="binary")
    return _metrics_row(m, seconds)


def _keras_config(model: str, args: argparse.Namespace, seed: int):
    from breastzoo.configs import apply_overrides, preset

    config = preset(args.config, model).replace(task=args.task, seed=seed)
    return apply_overrides(config, args.set)


def _timed_fit(config, args: argparse.Namespace, split,
               run_dir: Path) -> tuple[dict, float, bool]:
    """``breastzoo.training.fit`` into ``run_dir`` (trains, resumes, or re-scores a finished
    run) -> ``(metrics, seconds)``: the wall time of the invocation that finished training
    (training + scoring), recorded in ``bench_seconds.json`` and kept when re-scored, and
    whether that time is partial: it only covers the resumed part of an interrupted run ->
    ``(metrics, seconds, partial)``."""
    from breastzoo.training import fit

    timing = run_dir / "bench_seconds.json"
    resumed = run_dir.exists() and not (run_dir / "model.keras").is_file()
    started = time.perf_counter()
    result = fit("breakhis", data=str(args.data), mag=args.mag, config=config,
                 preset=args.config, out=run_dir, split=split, verbose=0, log=lambda _: None)
    seconds = time.perf_counter() - started
    if timing.exists():  # resumed or re-scored: keep the first full training time
        recorded = read_json(timing)
        seconds, resumed = recorded["seconds"], recorded.get("partial", False)
    else:
        atomic_write_json(timing, {"seconds": seconds, "partial": resumed})
    return result["metrics"], seconds, resumed


def _params(path: Path) -> int:
    """Parameters of a saved model (an ensemble counts every member)."""
    from breastzoo import runs

    return int(runs.load_model(path).count_params())


def run_keras(model: str, args: argparse.Namespace, split, run_dir: Path, seed: int) -> dict:
    metrics, seconds, partial = _timed_fit(_keras_config(model, args, seed), args, split,
                                           run_dir)
    return {**_metrics_row(metrics, seconds), "seconds_partial": partial,
            "params": _params(run_dir / "model.keras")}


def run_bagging(members: int, rules: set[str], args: argparse.Namespace, prepared, split,
                run_dir: Path, seed: int) -> dict[str, dict]:
    """Paper 002's bagging of ``members`` hybrids on one fold: ``{rule: row}`` for ``rules``.

    The members are trained once (``fit`` with ``bagging=members``, saved with the Sum rule;
    an interrupted run resumes inside the member it stopped in, a finished one is only
    re-scored). The Sum row is ``fit``'s own evaluation; the Max row reloads the same members
    (``safe_mode=True``), votes them with ``rule="max"`` and scores the same test images with
    the evaluation ``fit`` uses (``predict_records`` + ``evaluate_predictions``). Both rows
    carry the training time of all members and the ensemble's parameters.
    """
    from breastzoo import runs
    from breastzoo.evaluation.metrics import evaluate_predictions
    from breastzoo.evaluation.reports import predict_records
    from breastzoo.models.ensemble import Ensemble

    config = _keras_config("hybrid", args, seed).replace(bagging=members, vote="sum")
    metrics, seconds, partial = _timed_fit(config, args, split, run_dir)
    saved = runs.load_model(run_dir / "model.keras")
    extra = {"seconds_partial": partial, "params": int(saved.count_params()),
             "members": members, "vote": "sum", "run_dir": run_dir.name}
    out = {"sum": {**_metrics_row(metrics, seconds), **extra}}
    if "max" in rules:
        voter = Ensemble(saved.members, rule="max", name="ensemble")
        test = prepared.parts()["test"]
        pred = predict_records(voter, test, prepared.class_names, config,
                               prepared.source.root)
        m = evaluate_predictions(np.asarray(pred["labels"]), pred["probs"], pred["patients"],
                                 prepared.class_names, task=config.task, part="test")
        atomic_write_json(run_dir / "vote-max" / "metrics.json",
                          {**m, "model": "hybrid", "members": members, "vote": "max"})
        out["max"] = {**_metrics_row(m, seconds), **extra, "vote": "max"}
    return {rule: row for rule, row in out.items() if rule in rules}


def _mean_std(values: list) -> dict:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def summarise(rows: list[dict], names: list[str]) -> dict:
    out = {key: _mean_std([r[key] for r in rows]) for key in METRICS}
    out["prediction_counts"] = {n: sum(r["prediction_counts"][n] for r in rows) for n in names}
    out["label_counts"] = {n: sum(r["label_counts"][n] for r in rows) for n in names}
    seconds = [r["seconds"] for r in rows]
    out["seconds_median"] = statistics.median(seconds) if seconds else None
    out["seconds_total"] = sum(seconds)
    params = [r["params"] for r in rows if r.get("params")]
    out["params"] = int(statistics.median(params)) if params else None
    out["runs"] = len(rows)
    return out


def paired_comparison(per_run: list[dict], model: str, baseline: str = "hybrid",
                      key: str = "balanced_accuracy") -> dict | None:
    """``model`` against ``baseline`` on the runs (fold x seed) both have: the mean ± standard
    error of ``model``'s ``key`` minus ``baseline``'s, and the cost ratios (summed training
    seconds, median parameters). None when no run pairs up.

    Example:
        >>> rows = [{"seed": 0, "fold": f, "model": m, "balanced_accuracy": b, "seconds": s,
        ...          "params": p} for f, m, b, s, p in [(0, "a", 0.6, 50, 10),
        ...          (0, "b", 0.5, 10, 2), (1, "a", 0.8, 50, 10), (1, "b", 0.6, 10, 2)]]
        >>> c = paired_comparison(rows, "a", "b")
        >>> round(c["mean"], 3), round(c["se"], 3), c["n"], c["time_ratio"], c["params_ratio"]
        (0.15, 0.05, 2, 5.0, 5.0)
    """
    base = {(r["seed"], r["fold"]): r for r in per_run if r["model"] == baseline}
    pairs = [(r, base[(r["seed"], r["fold"])]) for r in per_run
             if r["model"] == model and (r["seed"], r["fold"]) in base]
    pairs = [(a, b) for a, b in pairs if a.get(key) is not None and b.get(key) is not None]
    if not pairs:
        return None
    diffs = [float(a[key]) - float(b[key]) for a, b in pairs]
    n = len(diffs)
    base_seconds = sum(b["seconds"] for _, b in pairs)
    params = [(a.get("params"), b.get("params")) for a, b in pairs]
    params = [pa / pb for pa, pb in params if pa and pb]
    return {
        "model": model, "baseline": baseline, "key": key, "n": n,
        "mean": statistics.fmean(diffs),
        "se": statistics.stdev(diffs) / math.sqrt(n) if n > 1 else None,
        "diffs": diffs,
        "time_ratio": sum(a["seconds"] for a, _ in pairs) / base_seconds if base_seconds
        else None,
        "params_ratio": statistics.median(params) if params else None,
    }


def _fmt(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(report: dict) -> str:
    names = report["class_names"]
    lines = [
        f"Data: real BreaKHis subset (`../shared/realdata`), {report['magnification']}, "
        f"benign vs malignant, {report['n_images']} images of {report['n_patient_groups']} "
        f"patients (numeric ids). Patient-wise {report['folds']}-fold x "
        f"{len(report['seeds'])} seed(s) ({report['mode']}); preset `{report['config']}`"
        + (f" with `--set {' '.join(report['set'])}`" if report["set"] else "") + ".",
        "",
        f"Command: `{report['command']}` ({report['train_minutes_sum']:.0f} min of training "
        f"summed over all runs, {report['cores']} CPU cores, {report['date']}; this "
        f"invocation: {report['wall_minutes']:.0f} min).",
        "",
        "| model | balanced acc. | AUC | IRR | PRR | predicted "
        + " / ".join(names) + " | train s (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, s in report["summary"].items():
        counts = " / ".join(str(s["prediction_counts"][n]) for n in names)
        secs = "-" if not s["seconds_median"] else f"{s['seconds_median']:.0f}"
        lines.append(f"| {model} | {_fmt(s['balanced_accuracy'])} | {_fmt(s['auc'])} | "
                     f"{_fmt(s['irr'])} | {_fmt(s['prr'])} | {counts} | {secs} |")
    labels = next(iter(report["summary"].values()))["label_counts"]
    lines += ["", "True labels over all test images: "
              + ", ".join(f"{labels[n]} {n}" for n in names) + "."]
    bagged = [m for m in report["summary"] if bagging_of(m)]
    if bagged:
        lines += ["", "Bagging (paper 002): each `hybrid_bagN` fold trains N hybrids once, "
                  "member i on all but the i-th of N folds of the training patients (train + "
                  "val) and validated on it; `_sum` and `_max` score the same members with "
                  "the Sum (mean probability) and Max (majority vote) rule. Train s is all "
                  "N members (and scoring)."]
        for model in bagged:
            c = (report.get("paired") or {}).get(model)
            params = report["summary"][model].get("params")
            size = f" ({params:,} parameters)" if params else ""
            if c is None:
                lines.append(f"* `{model}`{size}: no `hybrid` row on the same folds to pair "
                             "with.")
                continue
            se = "n/a" if c["se"] is None else f"{c['se']:.3f}"
            cost = []
            if c["time_ratio"] is not None:
                cost.append(f"{c['time_ratio']:.1f}x the training time")
            if c["params_ratio"] is not None:
                cost.append(f"{c['params_ratio']:.1f}x the parameters")
            lines.append(f"* `{model}` − `hybrid`, balanced accuracy paired over {c['n']} "
                         f"fold x seed runs: {c['mean']:+.3f} ± {se} (mean ± standard error)"
                         + (f"; cost {', '.join(cost)}" if cost else "") + f"{size}.")
    if any(r.get("seconds_partial") for r in report["runs"]):
        lines += ["", "Some training times only cover the resumed part of an interrupted run "
                  "(`seconds_partial` in the JSON)."]
    return "\n".join(lines)


def update_docs(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Real BreaKHis subset\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def roi_figure(run_dir: Path, out: Path, n: int = 4) -> Path | None:
    """DeNet's ROIs on ``n`` test images of one run (both classes, right and wrong)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    from breastzoo.data.pipeline import decode_image

    pred_path = run_dir / "predictions.json"
    if not pred_path.exists():
        return None
    pred = read_json(pred_path)
    names = pred["class_names"]
    images = pred["images"]
    chosen = []
    for label in range(len(names)):
        of_class = [im for im in images if im["label"] == label]
        # One image per patient where possible, so the figure shows different tissue.
        seen: set = set()
        for im in of_class:
            taken = sum(c["label"] == label for c in chosen)
            if im["patient"] not in seen and taken < n // 2:
                chosen.append(im)
                seen.add(im["patient"])
    if not chosen:
        return None
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 3.2))
    for ax, im in zip(np.atleast_1d(axes), chosen, strict=False):
        ax.imshow(decode_image(im["path"]).numpy())
        for j, (y0, x0, y1, x1) in enumerate(im["boxes"]):
            ax.add_patch(mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                            edgecolor="yellow", linewidth=1.5))
            ax.text(x0 + 3, y0 + 14, str(j + 1), color="yellow", fontsize=8)
        ok = "right" if im["pred"] == im["label"] else "wrong"
        ax.set_title(f"{im['patient']}: {names[im['label']]}\npredicted {names[im['pred']]} "
                     f"({ok})", fontsize=9)
        ax.axis("off")
    fig.suptitle("DeNet+SaNet ROIs on held-out patients (real BreaKHis subset, 100X); "
                 "boxes numbered in voting order", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "realdata")
    parser.add_argument("--mag", default="100")
    parser.add_argument("--task", default="binary", choices=("binary",))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--models", nargs="+", default=list(ALL_MODELS), type=model_name,
                        metavar="MODEL",
                        help=f"models to run (default: all of {' '.join(ALL_MODELS)}); also "
                             "hybrid_bagN_sum / hybrid_bagN_max (N >= 2): paper 002's bagging "
                             "of N hybrids, members trained once for both vote rules")
    parser.add_argument("--config", default="real", help="training preset (default: real)")
    parser.add_argument("--set", nargs="*", default=[], help="FIELD=VALUE config overrides")
    parser.add_argument("--quick", action="store_true",
                        help="3 folds x 1 seed (seed 0) at the preset's budget: at most 60 min "
                             "on 2 cores; the full run adds seed 1 to the same run folders")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-real")
    parser.add_argument("--only-folds", type=int, nargs="+", default=None,
                        help="run only these fold indices (the folds are still cut as "
                             "--folds; for splitting a long run or reporting the finished "
                             "folds of an interrupted one)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "real_rois.png")
    args = parser.parse_args(argv)
    if args.quick:
        # Seed 0 of the full run: the same runs, so a later full run only adds seed 1.
        args.folds, args.seeds = 3, [0]
    if not args.data.is_dir():
        raise SystemExit(f"Real data not found. Received: --data {args.data} (the BreaKHis "
                         "subset lives in ../shared/realdata)")
    mode = "quick" if args.quick else "full"
    suffix = "_quick" if args.quick else ""
    out_json = args.json or ROOT / "bench" / "results" / f"real{suffix}.json"

    from breastzoo.data.records import normalize_magnification
    from breastzoo.data.splits import patient_group
    from breastzoo.training import prepare_data

    args.mag = normalize_magnification(args.mag)
    started = time.perf_counter()
    base = prepare_data("breakhis", str(args.data), args.mag, args.task, 0)
    records = base.records
    print(f"{len(records)} images, {len({patient_group(r.patient) for r in records})} patients "
          f"at {args.mag}; {args.folds} folds x seeds {args.seeds} ({mode}); models: "
          f"{', '.join(args.models)}", flush=True)
    args.models = list(dict.fromkeys(args.models))  # a repeated name would pair with itself
    rows: dict[str, list[dict]] = {m: [] for m in args.models}
    per_run = []
    # Vote rules wanted per bagging size: one trained ensemble per fold x seed serves them all.
    bag_rules: dict[int, set[str]] = {}
    for model in args.models:
        if (bag := bagging_of(model)) is not None:
            bag_rules.setdefault(bag[0], set()).add(bag[1])
    for seed in args.seeds:
        for i, split in enumerate(fold_splits(records, args.folds, seed, args.task)):
            if args.only_folds is not None and i not in args.only_folds:
                continue
            prepared = base.__class__(base.source, base.magnification, base.class_names,
                                      records, split)
            bagged: dict[int, dict[str, dict]] = {}
            for model in args.models:
                tag = f"seed{seed}-fold{i}-{model}"
                t0 = time.perf_counter()
                bag = bagging_of(model)
                if model == "majority":
                    row = run_majority(prepared, split)
                elif model == "texture":
                    row = run_texture(prepared, split, args.runs / "texture-cache")
                elif bag is not None:
                    members, rule = bag
                    if members not in bagged:
                        bagged[members] = run_bagging(
                            members, bag_rules[members], args, prepared, split,
                            args.runs / f"seed{seed}-fold{i}-hybrid_bag{members}", seed)
                    row = bagged[members][rule]
                else:
                    row = run_keras(model, args, split, args.runs / tag, seed)
                rows[model].append(row)
                per_run.append({"seed": seed, "fold": i, "model": model, **row,
                                "test_patients": split.test, "val_patients": split.val})
                counts = " ".join(f"{k}={v}" for k, v in row["prediction_counts"].items())
                print(f"[{tag}] bal.acc {row['balanced_accuracy']:.3f}  AUC "
                      f"{row['auc'] if row['auc'] is None else round(row['auc'], 3)}  IRR "
                      f"{row['irr']:.3f}  predicted {counts}  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    names = base.class_names
    report = {
        "what": "patient-wise k-fold on the real BreaKHis subset, benign vs malignant",
        "data": "real BreaKHis subset (../shared/realdata)",
        "magnification": args.mag, "task": args.task, "class_names": names,
        "n_images": len(records),
        "n_patient_groups": len({patient_group(r.patient) for r in records}),
        "folds": args.folds, "only_folds": args.only_folds, "seeds": args.seeds, "mode": mode,
        "config": args.config,
        "set": args.set, "models": args.models,
        "command": "python bench/real.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cores": __import__("os").cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "wall_minutes": (time.perf_counter() - started) / 60,
        # Training time of every run, summed: the cost of the table from scratch, even when
        # this invocation resumed or re-scored runs made earlier. The Sum and Max rows of a
        # bagging run share one training, counted once.
        "train_minutes_sum": sum({r.get("run_dir") or (r["seed"], r["fold"], r["model"]):
                                  r["seconds"] for r in per_run}.values()) / 60,
        "summary": {m: summarise(rows[m], names) for m in args.models},
        "runs": per_run,
    }
    if "hybrid" in args.models:
        report["paired"] = {m: c for m in args.models if bagging_of(m)
                            if (c := paired_comparison(per_run, m, "hybrid")) is not None}
    atomic_write_json(out_json, report)
    section = markdown(report)
    print("\n" + section)
    if "denet_sanet" in args.models:
        fig = roi_figure(args.runs / f"seed{args.seeds[0]}-fold0-denet_sanet", args.figure)
        if fig:
            print(f"ROI figure: {fig}")
    if not args.no_docs:
        update_docs(args.docs, section + f"\n\nJSON: `{out_json.relative_to(ROOT)}`.")
    return report


if __name__ == "__main__":
    main()
