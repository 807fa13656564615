"""``breastzoo compare``: several evaluated runs side by side, with paper 000's tests."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from breastzoo.io import read_json
from breastzoo.runs import RunFolder

SUMMARY_KEYS = ("irr", "prr", "kappa", "f1", "ppv", "auc", "roi_hit_rate")


def _scalar(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, dict):  # macro values are stored as {"macro": x, ...}
        value = value.get("macro")
    return value if isinstance(value, int | float) else None


def per_unit_scores(run_dir: Path, level: str) -> dict[str, float]:
    """Accuracy per image (path -> 0/1) or per patient (id -> fraction correct)."""
    images = read_json(RunFolder(run_dir).predictions_path)["images"]
    if level == "image":
        return {im["path"]: float(im["pred"] == im["label"]) for im in images}
    per: dict[str, list[float]] = defaultdict(list)
    for im in images:
        per[im["patient"]].append(float(im["pred"] == im["label"]))
    return {p: sum(v) / len(v) for p, v in per.items()}


def compare_runs(run_dirs: list[str | Path], level: str = "patient") -> dict:
    """Metrics of each run plus the Friedman and pairwise sign tests on matched units.

    Args:
        run_dirs: evaluated run folders (each has metrics.json and predictions.json).
        level: ``"patient"`` (units are test patients) or ``"image"``.

    Returns:
        ``{"runs": {name: {metric: value}}, "level", "units", "tests"}``; tests are computed
        on the units every run shares (runs with different test splits share few).

    Raises:
        ValueError: bad level, fewer than two runs, a folder that is not evaluated, or no
            shared test units.

    Example:
        >>> compare_runs(["runs/a", "runs/b", "runs/c"])  # doctest: +SKIP
    """
    from breastzoo.evaluation.stats import compare_methods

    if level not in ("patient", "image"):
        raise ValueError(f"Unknown level. Received: level={level!r}; expected patient, image")
    if len(run_dirs) < 2:
        raise ValueError(f"Need at least two runs to compare. Received: {len(run_dirs)}")
    runs, scores = {}, {}
    for run in map(RunFolder, run_dirs):
        d = run.path
        metrics = run.read_metrics()
        if metrics is None:
            raise ValueError(f"Not an evaluated run folder (no {run.metrics_path.name}). "
                             f"Received: {d}")
        name = d.name if d.name not in runs else str(d)
        runs[name] = {k: _scalar(metrics, k) for k in SUMMARY_KEYS}
        scores[name] = per_unit_scores(d, level)
    shared = sorted(set.intersection(*(set(s) for s in scores.values())))
    if not shared:
        raise ValueError("The runs share no test units; compare runs of the same split.")
    tests = compare_methods({n: [s[u] for u in shared] for n, s in scores.items()})
    return {"runs": runs, "level": level, "units": len(shared), "tests": tests}
