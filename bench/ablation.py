"""Paper 000's Table V analogue on the synthetic testbed: DeNet+SaNet vs its ablations.

    python bench/ablation.py [--quick] [--seeds 0,1,2 | --seed N] [--size demo]
        [--models a,b] [--set FIELD=VALUE ...] [--out DIR] --json PATH

For each data seed in turn, generates (or reuses) the ``--size`` testbed of that seed
(:func:`breastzoo.paths.ensure_demo_data`) and trains every model on the same patient-wise
split at 100X with the same budget (``breastzoo.training.fit``, config preset ``--config``).
Reported per model: image / patient recognition rates (IRR, PRR), balanced accuracy, the ROI
hit rate (fraction of ROI centres inside the ground-truth lesion), each per seed and as the
median with a standard error over seeds (sample std / sqrt(n)); the per-class PREDICTION
counts of every model and seed (a collapsed model shows as one column holding every test
image); training time; and each seed's wall time (``--quick``: at most 25 minutes per data
seed on 2 cores).

Default models: ``denet_sanet``, its ablations ``sanet_resize`` (-DeNet) and ``random_roi``
(random selection), the centre prior ``centre_roi``, the policy-free ``grid_confident`` (the
classifier's k most confident tiles of a dense grid: separates an RL failure from a
classifier limit) and the upper bound ``oracle_roi`` (crops inside the lesion).

With ``--out DIR`` every run lives in ``DIR/<size>-seed<S>/<model>`` and a run that already
has its metrics is reused, not retrained (a changed config is refused, as ``breastzoo fit``
refuses it), so an interrupted benchmark resumes. The JSON is written atomically.

Results are on SYNTHETIC data and are not BreaKHis results.

Examples::

    python bench/ablation.py --quick --seeds 0,1,2 --out runs/ablation \\
        --json bench/results/ablation_quick.json
    python bench/ablation.py --size tiny --epochs 1 --steps 2 --models random_roi \\
        --json /tmp/ablation-smoke.json      # smoke run: seconds
    python bench/ablation.py --merge seed0.json seeds12.json --json all.json  # no training
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from breastzoo.io import atomic_write_json, read_json  # noqa: E402

DEFAULT_MODELS = ("denet_sanet", "sanet_resize", "random_roi", "centre_roi", "grid_confident",
                  "oracle_roi")
#: Metrics summarised over seeds (``None`` where a model has no value, e.g. no ROIs).
METRICS = ("irr", "prr", "balanced_accuracy", "roi_hit_rate")
#: ``--quick``: the budget the issue's targets are measured at.
QUICK = {"epochs": 6, "steps_per_epoch": 40}
QUICK_MINUTES_PER_SEED = 25
TIMING = "bench_seconds.json"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``.

    Example:
        >>> parse_seeds("0, 2")
        [0, 2]
    """
    seeds = [int(s) for s in text.split(",") if s.strip()]
    if not seeds:
        raise ValueError(f"Need at least one seed. Received: seeds={text!r}")
    return seeds


def make_config(model: str, *, config: str = "demo", quick: bool = False,
                epochs: int | None = None, steps: int | None = None,
                reward: str | None = None, overrides: Sequence[str] = ()) -> Any:
    """The TrainConfig one model trains with: the preset, the ``--quick`` budget, then
    ``--epochs``/``--steps``/``--reward`` and ``--set FIELD=VALUE`` overrides.

    Example:
        >>> make_config("random_roi", quick=True, overrides=["k=3"]).k  # doctest: +SKIP
        3
    """
    from breastzoo.configs import apply_overrides, preset

    cfg = preset(config, model)
    if quick:
        cfg = cfg.replace(**QUICK)
    cfg = cfg.replace(epochs=epochs, steps_per_epoch=steps, reward=reward)
    return apply_overrides(cfg, list(overrides))


def prediction_counts(metrics: dict) -> dict[str, int]:
    """Test images predicted as each class: ``prediction_counts``, or the column sums of
    the confusion matrix (rows are true classes) in metrics that predate it.

    Example:
        >>> prediction_counts({"class_names": ["a", "b"], "confusion_matrix": [[3, 1], [2, 0]]})
        {'a': 5, 'b': 1}
    """
    if metrics.get("prediction_counts"):
        return {str(k): int(v) for k, v in metrics["prediction_counts"].items()}
    cm = metrics["confusion_matrix"]
    return {name: int(sum(row[j] for row in cm))
            for j, name in enumerate(metrics["class_names"])}


def run_model(cfg: Any, data: Path, run_dir: Path, *, preset: str = "demo",
              log: Callable[[str], None] = print) -> dict:
    """Train and evaluate one model (or reuse its finished run folder); one result row.

    Args:
        cfg: the model's TrainConfig.
        data: testbed root.
        run_dir: its run folder; one that is finished and has ``metrics.json`` is reused.
        preset: config preset name, recorded in the run's manifest.
        log: where ``fit``'s progress lines go.

    Returns:
        ``{"irr", "prr", "balanced_accuracy", "kappa", "binary_irr", "roi_hit_rate",
        "prediction_counts", "label_counts", "train_seconds", "reused", "run_dir"}``.
    """
    from breastzoo.runs import RunFolder, check_resumable

    run = RunFolder(run_dir)
    metrics = run.read_metrics() if run.is_finished else None
    reused = metrics is not None
    started = time.perf_counter()
    if reused:
        # Same refusal as `breastzoo fit`: a folder trained with another config is not ours.
        check_resumable(run.path, {"config": cfg.to_dict()}, keys=("config",))
        log(f"{run_dir}: finished run with metrics; reused")
    else:
        from breastzoo.training import fit

        metrics = fit("breakhis", data=str(data), mag="100", config=cfg, preset=preset,
                      out=run_dir, verbose=0, log=log)["metrics"]
    seconds = time.perf_counter() - started
    timing = run.path / TIMING
    if timing.is_file():  # resumed or reused: keep the first full training time
        seconds = read_json(timing)["seconds"]
    elif not reused:
        atomic_write_json(timing, {"seconds": seconds})
    binary = metrics.get("binary") or {}
    return {
        "irr": metrics["irr"], "prr": metrics["prr"],
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "kappa": metrics.get("kappa"), "binary_irr": binary.get("irr"),
        "roi_hit_rate": metrics.get("roi_hit_rate"),
        "prediction_counts": prediction_counts(metrics),
        "label_counts": metrics.get("label_counts"),
        "train_seconds": None if reused and not timing.is_file() else seconds,
        "reused": reused, "run_dir": str(run_dir),
    }


def summarise(values: Sequence[float | None]) -> dict:
    """``{"values", "median", "se", "n"}`` over seeds; ``se`` is the standard error of the
    mean (sample std, ddof=1, over sqrt(n)); None with fewer than two values.

    Example:
        >>> s = summarise([0.4, 0.5, 0.6])
        >>> round(s["median"], 3), round(s["se"], 4), s["n"]
        (0.5, 0.0577, 3)
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"values": list(values), "median": None, "se": None, "n": 0}
    se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else None
    return {"values": list(values), "median": statistics.median(vals), "se": se,
            "n": len(vals)}


def run_ablation(models: Sequence[str], seeds: Sequence[int], *, size: str = "demo",
                 config: str = "demo", quick: bool = False, epochs: int | None = None,
                 steps: int | None = None, reward: str | None = None,
                 overrides: Sequence[str] = (), out: str | Path | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Train ``models`` on the ``size`` testbed of every data seed; the report (a dict).

    Args:
        models: ``fit --model`` names.
        seeds: testbed (data) seeds, run in turn.
        size: testbed size (``"tiny"``, ``"demo"``, ``"full"``).
        config: config preset the models train with.
        quick: the quick budget (:data:`QUICK`).
        epochs, steps: budget overrides.
        reward: DeNet reward override.
        overrides: ``FIELD=VALUE`` config overrides.
        out: keep run folders here (and reuse finished ones); default a temporary folder.
        log: where progress lines go.

    Example:
        >>> run_ablation(["random_roi"], [0], size="tiny", epochs=1, steps=2)  # doctest: +SKIP
    """
    from breastzoo.paths import ensure_demo_data

    configs = {m: make_config(m, config=config, quick=quick, epochs=epochs, steps=steps,
                              reward=reward, overrides=overrides) for m in models}
    out_root = Path(out) if out else Path(tempfile.mkdtemp(prefix="ablation-"))
    per_seed: dict[str, dict[str, dict]] = {m: {} for m in models}
    seed_wall: dict[str, float] = {}
    for seed in seeds:
        started = time.perf_counter()
        data = ensure_demo_data(size, seed)
        for name in models:
            row = run_model(configs[name], data, out_root / f"{size}-seed{seed}" / name,
                            preset=config, log=lambda _: None)
            per_seed[name][str(seed)] = row
            log(json.dumps({"seed": seed, "model": name,
                            **{k: row[k] for k in (*METRICS, "prediction_counts",
                                                   "train_seconds", "reused")}}))
        wall = time.perf_counter() - started
        seed_wall[str(seed)] = wall
        note = ""
        if quick and wall > 60 * QUICK_MINUTES_PER_SEED:
            note = f" (over the {QUICK_MINUTES_PER_SEED}-minute quick budget)"
        log(f"data seed {seed}: {wall:.0f} s wall ({wall / 60:.1f} min){note}")
    base = configs[models[0]]
    return {
        "data": (f"synthetic testbed ({size} size, data seeds "
                 f"{', '.join(map(str, seeds))}, 100X; not BreaKHis)"),
        "size": size, "seeds": list(seeds), "config": config,
        "budget": {"epochs": base.epochs, "steps_per_epoch": base.steps_per_epoch,
                   "batch_size": base.batch_size, "quick": quick},
        "reward": configs.get("denet_sanet", base).reward,
        "overrides": list(overrides),
        "seed_wall_seconds": seed_wall,
        "summary": {m: {k: summarise([per_seed[m][str(s)][k] for s in seeds])
                        for k in METRICS} for m in models},
        "models": per_seed,
        "run_root": str(out_root),
    }


#: Issue 12's targets as per-seed differences (a - b, balanced accuracy unless noted).
TARGETS = (
    ("oracle_roi - sanet_resize >= 0.20", "oracle_roi", "sanet_resize", 0.20),
    ("denet_sanet - sanet_resize >= 0.10", "denet_sanet", "sanet_resize", 0.10),
    ("denet_sanet - random_roi >= 0.20", "denet_sanet", "random_roi", 0.20),
    ("denet_sanet - oracle_roi >= -0.05", "denet_sanet", "oracle_roi", -0.05),
)


def target_checks(report: dict) -> list[dict]:
    """Issue 12's targets on the report's seeds: per target the per-seed differences, their
    median and standard error (:func:`summarise`) and whether the median meets it; plus the
    ROI hit-rate ratio of ``denet_sanet`` to ``random_roi`` (target >= 2) and whether DeNet's
    hit rate beats ``centre_roi``'s. Targets whose models are not in the report are skipped.

    Example:
        >>> rows = {m: {"0": {"balanced_accuracy": b, "roi_hit_rate": h}}
        ...         for m, b, h in [("oracle_roi", 0.6, 1.0), ("sanet_resize", 0.2, None)]}
        >>> [(c["target"], round(c["median"], 2), c["met"])
        ...  for c in target_checks({"seeds": [0], "models": rows})]
        [('oracle_roi - sanet_resize >= 0.20', 0.4, True)]
    """
    seeds = [str(s) for s in report["seeds"]]
    models = report["models"]
    checks = []
    for label, a, b, threshold in TARGETS:
        if a in models and b in models:
            stat = summarise([models[a][s]["balanced_accuracy"] - models[b][s]["balanced_accuracy"]
                              for s in seeds])
            checks.append({"target": label, **stat, "met": stat["median"] >= threshold})
    if {"denet_sanet", "random_roi"} <= set(models):
        ratios = [models["denet_sanet"][s]["roi_hit_rate"] / models["random_roi"][s]["roi_hit_rate"]
                  for s in seeds if models["random_roi"][s]["roi_hit_rate"]]
        stat = summarise(ratios)
        checks.append({"target": "ROI hit denet_sanet / random_roi >= 2", **stat,
                       "met": stat["median"] is not None and stat["median"] >= 2})
    if {"denet_sanet", "centre_roi"} <= set(models):
        stat = summarise([models["denet_sanet"][s]["roi_hit_rate"]
                          - models["centre_roi"][s]["roi_hit_rate"] for s in seeds])
        checks.append({"target": "ROI hit denet_sanet - centre_roi > 0", **stat,
                       "met": stat["median"] is not None and stat["median"] > 0})
    return checks


def merge_reports(reports: Sequence[dict]) -> dict:
    """One report over the data seeds of several (e.g. seed 0 run first, seeds 1-2 later),
    with the summary recomputed. The runs must share budget, config, reward and overrides,
    and a seed measured twice must agree.

    Example:
        >>> merge_reports([a, b])["seeds"]  # doctest: +SKIP
        [0, 1, 2]
    """
    first = reports[0]
    keys = ("size", "config", "budget", "reward", "overrides")
    for other in reports[1:]:
        for key in keys:
            if other[key] != first[key]:
                raise ValueError(f"Reports differ in {key}. Received: {first[key]!r} and "
                                 f"{other[key]!r}")
    models = list(dict.fromkeys(m for r in reports for m in r["models"]))
    per_seed: dict[str, dict[str, dict]] = {m: {} for m in models}
    walls: dict[str, float] = {}
    for report in reports:
        walls.update(report["seed_wall_seconds"])
        for m, rows in report["models"].items():
            for seed, row in rows.items():
                old = per_seed[m].get(seed)
                if old is not None and old["balanced_accuracy"] != row["balanced_accuracy"]:
                    raise ValueError(f"Seed {seed} of {m} differs between the reports")
                per_seed[m][seed] = row
    seeds = sorted({int(s) for rows in per_seed.values() for s in rows})
    missing = [(m, s) for m in models for s in seeds if str(s) not in per_seed[m]]
    if missing:
        raise ValueError(f"Not every model has every seed. Missing (model, seed): {missing}")
    return {
        **{k: first[k] for k in keys},
        "data": (f"synthetic testbed ({first['size']} size, data seeds "
                 f"{', '.join(map(str, seeds))}, 100X; not BreaKHis)"),
        "seeds": seeds, "seed_wall_seconds": walls,
        "summary": {m: {k: summarise([per_seed[m][str(s)][k] for s in seeds])
                        for k in METRICS} for m in models},
        "models": per_seed,
        "merged_from": [r.get("command") for r in reports],
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _stat(stat: dict) -> str:
    if stat["median"] is None:
        return "-"
    return f"{stat['median']:.3f}" + ("" if stat["se"] is None else f"±{stat['se']:.3f}")


def format_report(report: dict) -> str:
    """Two tables: one row per model and seed (with per-class prediction counts), then the
    median ± standard error over seeds."""
    seeds = [str(s) for s in report["seeds"]]
    first = next(iter(report["models"].values()))[seeds[0]]
    names = list(first["prediction_counts"])
    lines = [report["data"], "",
             f"{'model':<15} {'seed':>4} {'IRR':>6} {'PRR':>6} {'bal':>6} {'hit':>5} "
             f"{'sec':>6}  predicted {'/'.join(names)}"]
    for model, rows in report["models"].items():
        for s in seeds:
            r = rows[s]
            counts = "/".join(str(r["prediction_counts"].get(n, 0)) for n in names)
            secs = "-" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
            lines.append(f"{model:<15} {s:>4} {_num(r['irr']):>6} {_num(r['prr']):>6} "
                         f"{_num(r['balanced_accuracy']):>6} "
                         f"{_num(r['roi_hit_rate'], 2):>5} {secs:>6}  {counts}")
    for s in seeds:
        labels = next(iter(report["models"].values()))[s].get("label_counts") or {}
        if labels:
            lines.append(f"{'(true labels)':<15} {s:>4} {'':>6} {'':>6} {'':>6} {'':>5} "
                         f"{'':>6}  " + "/".join(str(labels.get(n, 0)) for n in names))
    lines += ["", f"median ± standard error over {len(seeds)} data seed(s)",
              f"{'model':<15} {'IRR':>13} {'PRR':>13} {'bal.acc':>13} {'ROI hit':>13}"]
    for model, stats in report["summary"].items():
        lines.append(f"{model:<15} " + " ".join(f"{_stat(stats[k]):>13}" for k in METRICS))
    checks = target_checks(report)
    if checks:
        lines += ["", "issue 12 targets (median over seeds of the per-seed value)"]
        for c in checks:
            lines.append(f"{c['target']:<40} {_stat(c):>13}  "
                         f"{'met' if c['met'] else 'missed'}")
    walls = ", ".join(f"seed {s}: {w / 60:.1f} min"
                      for s, w in report["seed_wall_seconds"].items())
    lines += ["", f"wall time per data seed: {walls}"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options bench/ablation.py and bench/testbed.py share (all but ``--models``)."""
    parser.add_argument("--quick", action="store_true",
                        help=f"epochs={QUICK['epochs']}, steps_per_epoch="
                             f"{QUICK['steps_per_epoch']} (<= {QUICK_MINUTES_PER_SEED} min "
                             "per data seed on 2 cores)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=parse_seeds, default=None,
                       help="comma-separated testbed (data) seeds, e.g. 0,1,2 (default 0)")
    seeds.add_argument("--seed", type=int, default=None, help="one testbed (data) seed")
    parser.add_argument("--size", default="demo", choices=("tiny", "demo", "full"),
                        help="testbed size (tiny: smoke runs)")
    parser.add_argument("--config", default="demo", help="training preset (default: demo)")
    parser.add_argument("--reward", default=None, help="DeNet reward: paper or per_image")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig field, e.g. --set sanet_lr=0.001")
    parser.add_argument("--out", default=None,
                        help="keep run folders here; finished runs are reused")


def run_from_args(args: argparse.Namespace, models: Sequence[str]) -> dict:
    """:func:`run_ablation` with the options of :func:`add_arguments`; writes ``args.json``
    (when set) and prints the tables."""
    seeds = args.seeds or [0 if args.seed is None else args.seed]
    report = run_ablation(models, seeds, size=args.size, config=args.config,
                          quick=args.quick, epochs=args.epochs, steps=args.steps,
                          reward=args.reward, overrides=args.set, out=args.out)
    report["command"] = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    report["targets"] = target_checks(report)
    if args.json:
        atomic_write_json(args.json, report)
    print(format_report(report))
    if args.json:
        print(f"wrote {args.json}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--json", required=True, help="output JSON path")
    parser.add_argument("--merge", nargs="+", default=None, metavar="REPORT",
                        help="instead of training: merge these reports' data seeds into "
                             "--json and print the tables (e.g. seed 0, then seeds 1-2)")
    args = parser.parse_args(argv)
    if args.merge:
        report = merge_reports([read_json(p) for p in args.merge])
        report["targets"] = target_checks(report)
        atomic_write_json(args.json, report)
        print(format_report(report))
        return 0
    run_from_args(args, [m for m in args.models.split(",") if m])
    return 0


if __name__ == "__main__":
    sys.exit(main())
