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
  does, at the ``--config`` preset.

Reported per model: mean ± std over folds x seeds of IRR, PRR, AUC and balanced accuracy;
per-class prediction counts summed over all test images (a model that calls everything one
class shows it here); and training wall time. Run folders are kept under ``--runs``, so an
interrupted benchmark resumes (finished runs are re-scored, not retrained).

Usage::

    python bench/real.py --quick                   # 3 folds x 1 seed (seed 0)
    python bench/real.py                           # 3 folds x 2 seeds (reuses seed 0's runs)
    python bench/real.py --models sanet_resize texture --folds 4 --seeds 0 1 2

Writes ``bench/results/real[_quick].json``, the section "Real BreaKHis subset" of
docs/benchmarks.md (between ``<!-- real-subset:begin -->`` and ``<!-- real-subset:end -->``)
and DeNet's ROIs on real test images, ``docs/img/real_rois.png``.
"""

from __future__ import annotations

import argparse
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


def run_keras(model: str, args: argparse.Namespace, split, run_dir: Path, seed: int) -> dict:
    from breastzoo.configs import apply_overrides, preset
    from breastzoo.training import fit

    config = preset(args.config, model).replace(task=args.task, seed=seed)
    config = apply_overrides(config, args.set)
    timing = run_dir / "bench_seconds.json"
    started = time.perf_counter()
    result = fit("breakhis", data=str(args.data), mag=args.mag, config=config,
                 preset=args.config, out=run_dir, split=split, verbose=0, log=lambda _: None)
    seconds = time.perf_counter() - started
    if timing.exists():  # resumed or re-scored: keep the first full training time
        seconds = read_json(timing)["seconds"]
    else:
        atomic_write_json(timing, {"seconds": seconds})
    return _metrics_row(result["metrics"], seconds)


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
    out["runs"] = len(rows)
    return out


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
    parser.add_argument("--models", nargs="+", default=list(ALL_MODELS), choices=ALL_MODELS)
    parser.add_argument("--config", default="real", help="training preset (default: real)")
    parser.add_argument("--set", nargs="*", default=[], help="FIELD=VALUE config overrides")
    parser.add_argument("--quick", action="store_true",
                        help="3 folds x 1 seed (seed 0) at the preset's budget: at most 60 min "
                             "on 2 cores; the full run adds seed 1 to the same run folders")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-real")
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
    rows: dict[str, list[dict]] = {m: [] for m in args.models}
    per_run = []
    for seed in args.seeds:
        for i, split in enumerate(fold_splits(records, args.folds, seed, args.task)):
            prepared = base.__class__(base.source, base.magnification, base.class_names,
                                      records, split)
            for model in args.models:
                tag = f"seed{seed}-fold{i}-{model}"
                t0 = time.perf_counter()
                if model == "majority":
                    row = run_majority(prepared, split)
                elif model == "texture":
                    row = run_texture(prepared, split, args.runs / "texture-cache")
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
        "folds": args.folds, "seeds": args.seeds, "mode": mode, "config": args.config,
        "set": args.set, "models": args.models,
        "command": "python bench/real.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cores": __import__("os").cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "wall_minutes": (time.perf_counter() - started) / 60,
        # Training time of every run, summed: the cost of the table from scratch, even when
        # this invocation resumed or re-scored runs made earlier.
        "train_minutes_sum": sum(r["seconds"] for r in per_run) / 60,
        "summary": {m: summarise(rows[m], names) for m in args.models},
        "runs": per_run,
    }
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
