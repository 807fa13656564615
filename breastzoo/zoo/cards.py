"""Model cards (Mitchell et al., "Model Cards for Model Reporting", 2019) and metadata.

Every published version carries ``card.json`` (machine-readable), ``card.md`` (the same for
people) and ``metadata.json`` (versions, parameter count, date, git commit, split hash). The
measured parts come from the run folder; the hand-written parts (description, intended use,
caveats, how wrong-size images are handled) from the catalogue's ``card_template.yaml``.

A model trained on the synthetic testbed is FLAGGED in its training-data section: its metrics
say nothing about real histopathology.

Example:
    >>> render_markdown({"name": "m", "model_details": {}, "metrics": {}})[:4]
    '# m'
"""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path
from typing import Any

from breastzoo import runs
from breastzoo.data.records import Magnification
from breastzoo.io import atomic_write_bytes, atomic_write_json
from breastzoo.zoo import registry

#: How a wrong-size image is brought to the model's input size (``input.on_size_mismatch``).
SIZE_POLICIES = ("pad", "resize", "error")

SYNTHETIC_FLAG = (
    "FLAGGED: trained and evaluated on the synthetic BreaKHis-format testbed, not on BreaKHis "
    "or any real histopathology; its metrics only show that the pipeline works."
)
INTENDED_USE = (
    "Research on breast-cancer histopathology image classification: reproducing and comparing "
    "methods, teaching, building on the code."
)
OUT_OF_SCOPE = [
    "Diagnosis, triage or any clinical decision: this is not a medical device and has not "
    "been validated clinically.",
    "Images from other organs, stains, scanners or magnifications than the ones it was "
    "trained on, without re-validation.",
]
DEFAULT_CAVEATS = [
    "Trained on one patient-wise split; a different split or seed moves the metrics "
    "(see the trials of `breastzoo fit --trials`).",
    "Metrics are on the held-out test patients of the same dataset; performance on another "
    "lab's images (stain, scanner) is unknown.",
]


def _model_summary(model: Any) -> dict:
    """The input contract a model records about itself (image size, classes, patches...)."""
    out: dict[str, Any] = {"class": type(model).__name__}
    members = getattr(model, "members", None)  # an ensemble: its members share a contract
    base = members[0] if members else model
    for attr in ("image_size", "patch_size", "k", "k_max", "n_patches", "stain",
                 "magnification", "class_names", "num_classes"):
        value = getattr(base, attr, None)
        if value is not None:
            out[attr] = list(value) if isinstance(value, tuple) else value
    out["parameters"] = int(model.count_params())
    return out


def _metric_row(m: dict) -> dict:
    def macro(key: str) -> float | None:
        v = m.get(key)
        return v.get("macro") if isinstance(v, dict) else v

    return {
        "prr": m.get("prr"), "irr": m.get("irr"), "kappa": m.get("kappa"),
        "ppv": macro("ppv"), "f1": macro("f1"), "auc": macro("auc"),
        "n_images": m.get("n_images"), "n_patients": m.get("n_patients"),
    }


def _recipe_mismatches(recipe: dict | None, manifest: dict, preset: str | None) -> list[str]:
    """Where the run differs from the catalogue recipe (shown in the card, not refused)."""
    if not recipe:
        return []
    args = [str(a) for a in recipe.get("fit", [])]

    def opt(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) \
            else None

    cfg = manifest["config"]
    out = []
    want_model = opt("--model") or "denet_sanet"
    if want_model != cfg.get("model"):
        out.append(f"model {cfg.get('model')!r} (recipe: {want_model!r})")
    want_mag = opt("--mag")
    have_mag = manifest.get("magnification")
    if want_mag and (have_mag is None
                     or Magnification.parse(want_mag) != Magnification.parse(have_mag)):
        out.append(f"magnification {manifest.get('magnification')!r} (recipe: {want_mag}X)")
    want_task = opt("--task") or "subtype"
    if want_task != cfg.get("task"):
        out.append(f"task {cfg.get('task')!r} (recipe: {want_task!r})")
    want_config = opt("--config")
    if want_config and preset and want_config != preset:
        out.append(f"config preset {preset!r} (recipe: {want_config!r})")
    if args and args[0] != manifest["data"].get("dataset"):
        out.append(f"dataset {manifest['data'].get('dataset')!r} (recipe: {args[0]!r})")
    if manifest["data"].get("synthetic") and "demo" not in args:
        out.append("data: the synthetic testbed (recipe: real data)")
    return out


def build_card(
    run_dir: str | Path,
    name: str,
    model: Any,
    *,
    root_path: Path | None = None,
    savedmodel_writer: str | None = None,
) -> dict:
    """The model card of a run as a JSON-ready dict.

    Args:
        run_dir: evaluated run folder (``config.json``, ``metrics.json``).
        name: zoo name.
        model: the loaded Keras model (input contract, parameter count).
        root_path: zoo root whose catalogue holds the recipe and card template.
        savedmodel_writer: which function wrote the SavedModel (recorded).

    Example:
        >>> build_card("runs/r", "denet_sanet_100x", model)  # doctest: +SKIP
    """
    run = runs.RunFolder(run_dir)
    manifest = run.read_manifest()
    metrics = run.read_metrics()
    if metrics is None:
        raise ValueError(f"{run.path} has no {run.metrics_path.name}; run `breastzoo evaluate "
                         f"{run.path}` first.")
    template = registry.read_card_template(name, root_path) or {}
    recipe = registry.read_recipe(name, root_path)
    cfg = manifest["config"]
    data = manifest["data"]
    split = manifest["split"]
    mag = manifest.get("magnification") or "all"
    policy = template.get("on_size_mismatch", "pad")
    if policy not in SIZE_POLICIES:
        raise ValueError(
            f"Unknown on_size_mismatch in the card template of {name}. Received: {policy!r}; "
            f"expected one of {SIZE_POLICIES}"
        )
    summary = _model_summary(model)
    per_mag = {mag: _metric_row(metrics)}
    binary = metrics.get("binary")
    caveats = [str(c) for c in template.get("caveats") or []] + DEFAULT_CAVEATS
    # The preset recorded in config.json; runs made before it was, from the folder's name.
    preset = runs.preset_of(manifest, run.path)
    mismatches = _recipe_mismatches(recipe, manifest, preset)
    if mismatches:
        caveats.insert(0, "This version was NOT trained with the catalogue recipe: "
                       + "; ".join(mismatches) + ".")
    if data.get("synthetic"):
        caveats.insert(0, SYNTHETIC_FLAG)
    counts = split.get("counts", {})
    return {
        "format": 1,
        "name": name,
        "model_details": {
            "title": template.get("title", name),
            "description": template.get("description", ""),
            "architecture": cfg.get("model"),
            "keras_class": summary["class"],
            "parameters": summary["parameters"],
            "references": template.get("references", []),
            "license": template.get("license", "Apache-2.0"),
            "savedmodel_writer": savedmodel_writer,
            "preset": preset,
            "config": cfg,
        },
        "intended_use": {
            "primary": template.get("intended_use", INTENDED_USE),
            "not_for_diagnosis": True,
            "out_of_scope": list(template.get("out_of_scope") or OUT_OF_SCOPE),
        },
        "input": {
            "image_size": summary.get("image_size"),  # (width, height)
            "dtype": "uint8",
            "channels": "RGB",
            "value_range": [0, 255],
            "magnification": manifest.get("magnification"),
            "class_names": manifest.get("class_names"),
            "patch_size": summary.get("patch_size"),
            "rois": summary.get("k") or summary.get("n_patches"),
            "stain_normalisation": summary.get("stain"),
            "on_size_mismatch": policy,
            "preprocessing": "inside the model: stain normalisation (if any), scaling to "
                             "[0, 1], ROI cropping; feed raw uint8 RGB images",
        },
        "training_data": {
            "dataset": data.get("dataset"),
            "description": data.get("description"),
            "synthetic": bool(data.get("synthetic")),
            "flag": SYNTHETIC_FLAG if data.get("synthetic") else None,
            "magnification": manifest.get("magnification"),
            "task": cfg.get("task"),
            "train": counts.get("train"),
            "validation": counts.get("val"),
        },
        "evaluation_data": {
            "split": "patient-wise: no patient appears in more than one of train/val/test",
            "split_source": split.get("source"),
            "split_seed": split.get("seed"),
            "split_fingerprint": split.get("fingerprint"),
            "test": counts.get("test"),
            "test_patients": split.get("test"),
        },
        "metrics": {
            "per_magnification": per_mag,
            "binary_per_magnification": {mag: _metric_row(binary)} if binary else None,
            "roi_hit_rate": metrics.get("roi_hit_rate"),
            "mean_rois": metrics.get("mean_rois"),
            "definitions": {
                "prr": "patient recognition rate: mean over test patients of their images' "
                       "accuracy",
                "irr": "image recognition rate: correct / all test images",
                "kappa": "Cohen's kappa", "ppv": "positive predictive value (precision), "
                "macro over classes", "f1": "F1, macro over classes",
            },
        },
        "confusion_matrix": {
            "class_names": metrics.get("class_names") or manifest.get("class_names"),
            "rows": "true class", "columns": "predicted class",
            "matrix": metrics.get("confusion_matrix"),
        },
        "caveats": caveats,
        "recipe": recipe,
    }


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _counts(c: Any) -> str:
    if isinstance(c, dict):
        return f"{c.get('patients', '?')} patients, {c.get('images', '?')} images"
    return _fmt(c)


def render_markdown(card: dict) -> str:
    """``card.md``: the card as Markdown (same content as ``card.json``).

    Example:
        >>> "Intended use" in render_markdown({"name": "m", "model_details": {}, "metrics": {}})
        True
    """
    d = card.get("model_details", {})
    use = card.get("intended_use", {})
    inp = card.get("input", {})
    train = card.get("training_data", {})
    ev = card.get("evaluation_data", {})
    met = card.get("metrics", {})
    title = d.get("title") or ""
    lines = [f"# {card.get('name')}" + (f": {title}" if title and title != card.get("name")
                                        else ""), ""]
    if train.get("flag"):
        lines += [f"> **{train['flag']}**", ""]
    lines += ["## Model details", "", d.get("description") or "", "",
              f"- architecture: `{d.get('architecture')}` (Keras class `{d.get('keras_class')}`)",
              f"- parameters: {d.get('parameters')}",
              f"- license: {d.get('license')}"]
    for ref in d.get("references", []) or []:
        lines.append(f"- reference: {ref}")
    lines += ["", "## Intended use", "", use.get("primary", INTENDED_USE), "",
              "**Not for diagnosis.** Out of scope:", ""]
    lines += [f"- {x}" for x in use.get("out_of_scope", OUT_OF_SCOPE)]
    size = inp.get("image_size")
    lines += ["", "## Input contract", "",
              f"- images: uint8 RGB, {size[0]}x{size[1]} (width x height), values 0-255"
              if size else "- images: uint8 RGB",
              f"- magnification: {inp.get('magnification') or 'n/a'}",
              f"- classes: {', '.join(inp.get('class_names') or [])}",
              f"- ROIs: {inp.get('rois') or 'none (whole image)'} of "
              f"{inp.get('patch_size') or '-'} px",
              f"- stain normalisation: {inp.get('stain_normalisation')}",
              f"- wrong-size images: **{inp.get('on_size_mismatch')}** "
              "(pad: pad with white / centre-crop to the size as the training pipeline does, "
              "keeping the pixel scale; resize: bilinear resize; error: refused)",
              f"- preprocessing: {inp.get('preprocessing', '')}", "",
              "## Training data", "",
              f"- {train.get('description')} ({train.get('dataset')}), task "
              f"{train.get('task')}, magnification {train.get('magnification') or 'n/a'}",
              f"- train: {_counts(train.get('train'))}; validation: "
              f"{_counts(train.get('validation'))}", "",
              "## Evaluation data", "",
              f"- {ev.get('split')} ({ev.get('split_source')}, seed {ev.get('split_seed')})",
              f"- test: {_counts(ev.get('test'))}",
              f"- split fingerprint (SHA-256 of the patient lists): "
              f"`{ev.get('split_fingerprint')}`", "",
              "## Metrics (test patients)", ""]
    for caption, table in ((None, met.get("per_magnification")),
                           ("Benign vs malignant (subtypes mapped to their class):",
                            met.get("binary_per_magnification"))):
        if not table:
            continue
        if caption:
            lines += [caption, ""]
        lines += ["| magnification | PRR | IRR | kappa | PPV | F1 | AUC | images | patients |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for mag, row in table.items():
            lines.append("| " + " | ".join([mag] + [_fmt(row.get(k)) for k in (
                "prr", "irr", "kappa", "ppv", "f1", "auc", "n_images", "n_patients")]) + " |")
        lines.append("")
    if met.get("roi_hit_rate") is not None:
        lines += [f"ROI hit rate (synthetic lesion masks): {_fmt(met['roi_hit_rate'])}", ""]
    cm = card.get("confusion_matrix") or {}
    if cm.get("matrix"):
        names = cm.get("class_names") or [str(i) for i in range(len(cm["matrix"]))]
        lines += ["## Confusion matrix (rows: true, columns: predicted)", "",
                  "| true \\ predicted | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        for n, row in zip(names, cm["matrix"], strict=False):
            lines.append(f"| {n} | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    lines += ["## Caveats", ""] + [f"- {c}" for c in card.get("caveats", [])]
    recipe = card.get("recipe")
    if recipe and recipe.get("fit"):
        lines += ["", "## Recipe", "", "```", "breastzoo fit " + " ".join(
            str(a) for a in recipe["fit"]), "```"]
    return "\n".join(lines) + "\n"


def write_card(directory: Path, card: dict) -> None:
    """Write ``card.json`` and ``card.md`` into ``directory`` (atomically)."""
    atomic_write_json(Path(directory) / "card.json", card)
    atomic_write_bytes(Path(directory) / "card.md", render_markdown(card).encode())


def _git_commit() -> dict:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}


def build_metadata(run_dir: str | Path, model: Any) -> dict:
    """``metadata.json``: versions, parameter count, date, git commit, data-split hash.

    Example:
        >>> build_metadata("runs/r", model)["parameters"]  # doctest: +SKIP
        12345
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    import breastzoo

    def v(pkg: str) -> str | None:
        try:
            return pkg_version(pkg)
        except PackageNotFoundError:
            return None

    run = runs.RunFolder(run_dir)
    manifest = run.read_manifest()
    git = _git_commit()
    return {
        "format": 1,
        "breastzoo": breastzoo.__version__,
        "keras": v("keras"),
        "tensorflow": v("tensorflow"),
        "parameters": int(model.count_params()),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "split_hash": manifest["split"].get("fingerprint"),
        "run_dir": str(run.path.resolve()),
        "model_file": run.model_path.name,
    }


def write_metadata(directory: Path, metadata: dict) -> None:
    """Write ``metadata.json`` into ``directory`` (atomically)."""
    atomic_write_json(Path(directory) / "metadata.json", metadata)
