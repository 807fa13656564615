"""Tuning studies as YAML: which model, which tuner, which search space, which budget.

A study file (``tuning/*.yaml``) looks like::

    name: roi_patch
    description: Paper 000, Tables VI/VII
    model: denet_sanet          # the HyperModel: denet_sanet | hybrid
    dataset: breakhis
    mag: "100"
    tuner: grid                 # grid | random | hyperband | bayesian
    objective: val_accuracy     # maximised, on the patient-wise validation split
    space:                      # TrainConfig fields; one hyperparameter each
      k: {values: [3, 5, 7, 9]}             # hp.Choice
      patch_size: {values: [56, 112, 224]}
      gamma: {min: 0.05, max: 1.0, sampling: log}   # hp.Float (hp.Int for ints)
      width: {value: 16}                    # hp.Fixed
    budget:
      max_trials: 12            # None: the whole grid (grid) / required (random, bayesian)
      executions_per_trial: 1
      epochs: 8                 # optional TrainConfig overrides for every trial
    presets:                    # optional per --config preset changes (deep-merged)
      tiny:
        space: {patch_size: {values: [16, 32, 64]}}

Example:
    >>> study = load_study("tuning/roi_patch.yaml")  # doctest: +SKIP
    >>> study.grid_size()  # doctest: +SKIP
    12
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

from breastzoo.checks import one_of
from breastzoo.configs import TrainConfig
from breastzoo.data.records import Magnification

TUNERS = ("grid", "random", "hyperband", "bayesian")
#: Study models and the TrainConfig.model each one trains.
STUDY_MODELS = ("denet_sanet", "hybrid")
#: Budget keys read by the tuner; the rest of ``budget`` overrides TrainConfig fields.
TUNER_BUDGET_KEYS = (
    "max_trials", "executions_per_trial", "max_epochs", "factor", "hyperband_iterations",
    "num_initial_points",
)
_TOP_KEYS = {"name", "description", "model", "dataset", "mag", "task", "tuner", "objective",
             "space", "budget", "presets", "seed"}
_SPACE_KEYS = {"values", "value", "min", "max", "step", "sampling"}


@dataclasses.dataclass
class Study:
    """A parsed, validated study (one preset applied).

    Args:
        name: study name (file stem by default); names the default output folder.
        model: ``"denet_sanet"`` or ``"hybrid"``.
        tuner: ``"grid"``, ``"random"``, ``"hyperband"`` or ``"bayesian"``.
        space: TrainConfig field -> spec (``values`` / ``value`` / ``min``+``max``).
        budget: tuner budget (:data:`TUNER_BUDGET_KEYS`) and TrainConfig overrides.
        dataset, mag, task: the data the trials train on.
        objective: metric to maximise (validation split only).
        description: free text.
        seed: tuner seed (random and Bayesian search).
        source: the YAML file it came from.
    """

    name: str
    model: str
    tuner: str
    space: dict[str, dict[str, Any]]
    budget: dict[str, Any]
    dataset: str = "breakhis"
    mag: str | None = "100"
    task: str = "subtype"
    objective: str = "val_accuracy"
    description: str = ""
    seed: int = 0
    source: str | None = None

    @property
    def tuner_budget(self) -> dict[str, Any]:
        """Budget keys that configure the tuner itself."""
        return {k: v for k, v in self.budget.items() if k in TUNER_BUDGET_KEYS}

    @property
    def config_overrides(self) -> dict[str, Any]:
        """Budget keys that override TrainConfig fields of every trial."""
        return {k: v for k, v in self.budget.items() if k not in TUNER_BUDGET_KEYS}

    def grid_size(self) -> int | None:
        """Number of points of the search grid (None when a dimension is continuous)."""
        sizes = [len(grid_values(spec)) if grid_values(spec) is not None else None
                 for spec in self.space.values()]
        if any(s is None for s in sizes):
            return None
        return math.prod(sizes) if sizes else 1

    def planned_trials(self) -> int | None:
        """Trials the study will run: the grid (capped by max_trials) or max_trials."""
        max_trials = self.budget.get("max_trials")
        if self.tuner == "hyperband":
            return None  # Hyperband decides from max_epochs and factor
        if self.tuner == "grid":
            grid = self.grid_size()
            if grid is None:
                return max_trials
            return min(grid, max_trials) if max_trials else grid
        return max_trials

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of a discrete space, in KerasTuner's GridSearch order (first
        dimension slowest)."""
        names = list(self.space)
        values = [grid_values(self.space[n]) for n in names]
        if any(v is None for v in values):
            raise ValueError(f"Study {self.name!r} has a continuous dimension; no grid.")
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (written to the study's output folder)."""
        return dataclasses.asdict(self)


def grid_values(spec: dict[str, Any]) -> list[Any] | None:
    """Discrete values of one dimension, or None for a continuous one.

    Example:
        >>> grid_values({"min": 1, "max": 7, "step": 2})
        [1, 3, 5, 7]
    """
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    lo, hi, step = spec["min"], spec["max"], spec.get("step")
    if isinstance(lo, int) and isinstance(hi, int) and step is None:
        step = 1
    if step is None:
        return None
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    return [type(lo)(lo + i * step) if isinstance(lo, int) else round(lo + i * step, 10)
            for i in range(n)]


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_space(name: str, space: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(space, dict) or not space:
        raise ValueError(f"A study needs a non-empty 'space' mapping. Received: space={space!r}")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    checked: dict[str, dict[str, Any]] = {}
    for key, spec in space.items():
        if key not in fields:
            raise ValueError(
                f"Study {name!r}: the search space names an unknown TrainConfig field. "
                f"Received: {key!r}"
            )
        if not isinstance(spec, dict):
            spec = {"values": list(spec)} if isinstance(spec, list) else {"value": spec}
        unknown = set(spec) - _SPACE_KEYS
        if unknown:
            raise ValueError(f"Study {name!r}: unknown key(s) in space.{key}. "
                             f"Received: {sorted(unknown)}")
        if "values" in spec:
            if not isinstance(spec["values"], list) or not spec["values"]:
                raise ValueError(f"Study {name!r}: space.{key}.values must be a non-empty "
                                 f"list. Received: {spec['values']!r}")
        elif "value" not in spec:
            if "min" not in spec or "max" not in spec:
                raise ValueError(f"Study {name!r}: space.{key} needs 'values', 'value' or "
                                 f"'min' and 'max'. Received: {spec!r}")
            if not spec["min"] < spec["max"]:
                raise ValueError(f"Study {name!r}: space.{key} needs min < max. "
                                 f"Received: min={spec['min']!r}, max={spec['max']!r}")
            if spec.get("sampling", "linear") not in ("linear", "log", "reverse_log"):
                raise ValueError(f"Study {name!r}: unknown sampling. "
                                 f"Received: sampling={spec['sampling']!r}")
        checked[key] = dict(spec)
    return checked


def parse_study(raw: dict[str, Any], preset: str | None = None,
                source: str | None = None) -> Study:
    """Validate a study mapping and apply one preset's overrides.

    Args:
        raw: the YAML mapping.
        preset: ``tiny`` / ``demo`` / ``paper``: merges ``raw["presets"][preset]`` if present.
        source: where it came from (error messages, records).

    Raises:
        ValueError: unknown keys, tuner, model, field or a malformed space/budget.

    Example:
        >>> s = parse_study({"name": "s", "model": "denet_sanet", "tuner": "grid",
        ...                  "space": {"k": {"values": [3, 5]}}})
        >>> s.grid_size()
        2
    """
    if not isinstance(raw, dict):
        raise ValueError(f"A study file must hold a mapping. Received: {type(raw).__name__}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ValueError(f"Unknown study key(s). Received: {sorted(unknown)} in {source}")
    presets = raw.get("presets") or {}
    if preset is not None and preset in presets:
        raw = _deep_merge({k: v for k, v in raw.items() if k != "presets"}, presets[preset])
    name = str(raw.get("name") or (Path(source).stem if source else "study"))
    model = one_of("model", raw.get("model", "denet_sanet"), STUDY_MODELS)
    tuner = one_of("tuner", raw.get("tuner", "grid"), TUNERS)
    space = _check_space(name, raw.get("space"))
    budget = dict(raw.get("budget") or {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = set(budget) - set(TUNER_BUDGET_KEYS) - fields
    if bad:
        raise ValueError(f"Study {name!r}: unknown budget key(s). Received: {sorted(bad)}")
    if tuner in ("random", "bayesian") and not budget.get("max_trials"):
        raise ValueError(f"Study {name!r}: a {tuner} search needs budget.max_trials. "
                         f"Received: budget={budget!r}")
    if tuner == "hyperband" and not budget.get("max_epochs"):
        raise ValueError(f"Study {name!r}: Hyperband needs budget.max_epochs. "
                         f"Received: budget={budget!r}")
    mag = raw.get("mag", "100")
    return Study(
        name=name, model=model, tuner=tuner, space=space, budget=budget,
        dataset=str(raw.get("dataset", "breakhis")),
        # Parsed here so a bad value fails at load time; kept as the number ("100").
        mag=None if mag is None else str(Magnification.parse(mag).power),
        task=str(raw.get("task", "subtype")), objective=str(raw.get("objective", "val_accuracy")),
        description=str(raw.get("description", "")).strip(), seed=int(raw.get("seed", 0)),
        source=source,
    )


def load_study(path: str | Path, preset: str | None = None) -> Study:
    """Read and validate a study YAML file (see the module docstring).

    Args:
        path: the ``.yaml`` file.
        preset: config preset whose ``presets`` overrides apply.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid YAML or study.

    Example:
        >>> load_study("tuning/gamma.yaml", preset="tiny").tuner  # doctest: +SKIP
        'grid'
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No study file. Received: path={str(path)!r}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"Invalid YAML in {path}: {exc}") from None
    return parse_study(raw, preset=preset, source=str(path))
