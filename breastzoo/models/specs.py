"""One table of every ``breastzoo fit --model``: name -> class, builder and flags.

Everything that depends on the kind of a model reads it here: ``configs.MODELS`` and the CLI's
``--model`` choices (the names), :mod:`~breastzoo.models.factory` (the builder, the compile
recipe), :mod:`~breastzoo.models.complexity` (the names), :mod:`breastzoo.export.serving`
(what a model serves and in which formats), ``LoadedModel.has_rois`` and
``registry.default_name`` (the zoo name).

================  ====================  ========  ========  ======  =====================
name              class                 has_rois  selects   lesion  serving
================  ====================  ========  ========  ======  =====================
denet_sanet       SelectiveAttention    yes       yes       no      builtin
resnet50_roi      SelectiveAttention    yes       yes       no      builtin
sanet_resize      WholeImageClassifier  no        no        no      builtin
resnet50_full     WholeImageClassifier  no        no        no      builtin
random_roi        PatchVoteClassifier   yes       yes       no      savedmodel
centre_roi        PatchVoteClassifier   yes       yes       no      builtin
grid_confident    PatchVoteClassifier   yes       yes       no      builtin
oracle_roi        PatchVoteClassifier   yes       yes       yes     none
hybrid            Hybrid                yes       no        no      builtin
================  ====================  ========  ========  ======  =====================

A bagging :class:`~breastzoo.models.ensemble.Ensemble` is not a name of its own: it is
served (and reports ROIs) the way its members are (:func:`spec_of`, :func:`members_of`).

This module imports neither Keras nor TensorFlow (``configs.MODELS`` is derived from it):
classes are named by import path and builders import them when called.

Each model class answers ``spec_name`` (its row here) and owns its serving outputs:
``serving_outputs(images, *, builtin_ops=False, noise_rows=1) -> {"probabilities"[, "boxes",
"n_rois"]}``.

Example:
    >>> model_spec("hybrid").zoo_prefix, model_spec("hybrid").has_rois
    ('hybrid_sep', True)
    >>> [s.name for s in SPECS.values() if s.serving != "builtin"]
    ['random_roi', 'oracle_roi']
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # configs imports this module: no runtime import back
    from breastzoo.configs import TrainConfig

__all__ = [
    "MODEL_NAMES",
    "SERVING_KINDS",
    "SPECS",
    "ModelSpec",
    "check_servable",
    "find_spec",
    "members_of",
    "model_spec",
    "spec_of",
]

#: How a model serves: ``"builtin"`` (SavedModel, TFLite and ONNX), ``"savedmodel"`` (only a
#: SavedModel: it needs a TF op outside TFLite's builtins) or ``"none"`` (it cannot be served).
SERVING_KINDS = ("builtin", "savedmodel", "none")

#: The model's builder: ``(config, num_classes, common) -> uncompiled, unbuilt model``, where
#: ``common`` holds the input contract (image_size, class_names, magnification, stain).
Builder = Callable[["TrainConfig", int, dict[str, Any]], Any]


@dataclass(frozen=True)
class ModelSpec:
    """One ``fit --model``.

    Attributes:
        name: the ``--model`` name.
        class_path: ``module.Class`` of the Keras model it builds.
        builder: ``(config, num_classes, common) -> model`` (see :data:`Builder`).
        has_rois: its serving outputs and ``LoadedModel.infer`` report regions (``boxes``,
            ``n_rois``): DeNet's ROIs, the baselines' crops, the hybrid's grid cells.
        selects_rois: those regions are chosen per image, so whether they hit the lesion
            means something (``roi_hit_rate``); False for whole-image models and for the
            hybrid, whose fixed grid tiles the whole image.
        needs_lesion_centres: it takes ground-truth lesion centres as a second input
            (``{"images", "centres"}``; synthetic data only): trained without geometric
            augmentation, fed by ``attach_lesion_centres``, never served.
        zoo_prefix: zoo names are ``<prefix>_<magnification>`` (``hybrid_sep_200x``).
        bach_prefix: zoo names on BACH are ``<bach_prefix>_bach`` (``hybrid_bach``).
        serving: one of :data:`SERVING_KINDS`.
        trains_denet: a SelectiveAttention: two optimizers and the DeNet reward callback.
        own_losses: its ``train_step`` builds its losses and metrics (compile with an
            optimizer only); otherwise compiled with sparse cross-entropy and accuracy.
        native_bach_size: a whole-image model that resizes its input itself, so it takes BACH
            photos at their native 2048x1536 rather than cropped to the BreaKHis canvas.
    """

    name: str
    class_path: str
    builder: Builder
    has_rois: bool
    selects_rois: bool
    needs_lesion_centres: bool = False
    zoo_prefix: str = ""
    bach_prefix: str = ""
    serving: str = "builtin"
    trains_denet: bool = False
    own_losses: bool = False
    native_bach_size: bool = False

    def __post_init__(self) -> None:
        if self.serving not in SERVING_KINDS:
            raise ValueError(f"Unknown serving kind. Received: serving={self.serving!r}")
        # Frozen: defaults that depend on the name are set through object.__setattr__.
        if not self.zoo_prefix:
            object.__setattr__(self, "zoo_prefix", self.name)
        if not self.bach_prefix:
            object.__setattr__(self, "bach_prefix", self.name)

    @property
    def model_class(self) -> type:
        """The Keras model class (imported on first use).

        Example:
            >>> model_spec("hybrid").model_class.__name__  # doctest: +SKIP
            'Hybrid'
        """
        module, _, cls = self.class_path.rpartition(".")
        return getattr(importlib.import_module(module), cls)

    def build(self, config: TrainConfig, num_classes: int, **common: Any) -> Any:
        """The uncompiled, unbuilt model (``build_model`` in factory builds and checks it).

        Example:
            >>> from breastzoo.configs import preset
            >>> model_spec("sanet_resize").build(preset("tiny"), 2).name  # doctest: +SKIP
            'whole_image_classifier'
        """
        return self.builder(config, int(num_classes), common)

    def check_servable(self, builtin_ops: bool = False) -> None:
        """Raise ValueError when this model cannot be served (with builtin ops).

        Example:
            >>> model_spec("random_roi").check_servable(builtin_ops=True)
            ... # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: random_roi draws fresh random crops per call, ... as a SavedModel. ...
        """
        if self.serving == "none":
            raise ValueError(
                f"{self.name} needs ground-truth lesion centres as a second input and cannot "
                f"be served. Received: model={self.name!r}"
            )
        if builtin_ops and self.serving != "builtin":
            raise ValueError(
                f"{self.name} draws fresh random crops per call, which needs a random op that "
                f"TFLite builtins lack; export it as a SavedModel. Received: model={self.name!r}"
            )


# ---------------------------------------------------------------------- builders


def _selective(config: TrainConfig, n: int, common: dict[str, Any], *,
               classifier: str) -> Any:
    from breastzoo.models.selective import SelectiveAttention

    return SelectiveAttention(
        n, patch_size=config.patch_size, k=config.k, k_max=config.k_max,
        max_steps=config.max_steps, width=config.width, classifier=classifier,
        gamma=config.gamma, t_prime=config.t_prime, reward=config.reward,
        reward_terms=config.reward_terms, separate_encoders=config.separate_encoders,
        init=config.init, location_std=config.location_std, selection=config.selection,
        roi_order=config.roi_order, patch_scale=config.patch_scale, seed=config.seed,
        patch_dihedral=config.patch_dihedral, location_policy=config.location_policy,
        entropy_bonus=config.entropy_bonus, warmup_steps=config.warmup_steps,
        novelty_bonus=config.novelty_bonus, rp_source=config.rp_source, **common,
    )


def _whole(config: TrainConfig, n: int, common: dict[str, Any], *, classifier: str) -> Any:
    from breastzoo.models.baselines import WholeImageClassifier

    if classifier == "resnet50":  # ResNet-50 on the full image, no resize
        return WholeImageClassifier(n, input_size=None, classifier="resnet50", **common)
    return WholeImageClassifier(n, input_size=config.patch_size, classifier=classifier,
                                width=config.width, **common)


def _patch_vote(config: TrainConfig, n: int, common: dict[str, Any], *, mode: str) -> Any:
    from breastzoo.models.baselines import PatchVoteClassifier

    return PatchVoteClassifier(
        n, patch_size=config.patch_size, k=config.k, mode=mode, width=config.width,
        seed=config.seed, patch_scale=config.patch_scale,
        patch_dihedral=config.patch_dihedral, **common,
    )


def _hybrid(config: TrainConfig, n: int, common: dict[str, Any]) -> Any:
    from breastzoo.models.hybrid import Hybrid

    return Hybrid(n, grid=config.grid, patch_size=config.branch_size, lambda_=config.lambda_,
                  local_rule=config.local_rule, width=config.branch_width, **common)


_SELECTIVE = "breastzoo.models.selective.SelectiveAttention"
_WHOLE = "breastzoo.models.baselines.WholeImageClassifier"
_PATCH = "breastzoo.models.baselines.PatchVoteClassifier"

#: Every ``fit --model``, in the order the CLI lists them.
SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("denet_sanet", _SELECTIVE, functools.partial(_selective, classifier="sanet"),
                  has_rois=True, selects_rois=True, trains_denet=True),
        ModelSpec("sanet_resize", _WHOLE, functools.partial(_whole, classifier="sanet"),
                  has_rois=False, selects_rois=False),
        ModelSpec("random_roi", _PATCH, functools.partial(_patch_vote, mode="random"),
                  has_rois=True, selects_rois=True, serving="savedmodel"),
        ModelSpec("centre_roi", _PATCH, functools.partial(_patch_vote, mode="centre"),
                  has_rois=True, selects_rois=True),
        # Trained as random_roi; infers on a dense tile grid and votes its k most confident
        # tiles (chosen per image, so the hit rate means something; no random op: builtin).
        ModelSpec("grid_confident", _PATCH,
                  functools.partial(_patch_vote, mode="grid_confident"),
                  has_rois=True, selects_rois=True),
        ModelSpec("oracle_roi", _PATCH, functools.partial(_patch_vote, mode="oracle"),
                  has_rois=True, selects_rois=True, needs_lesion_centres=True,
                  serving="none"),
        ModelSpec("resnet50_roi", _SELECTIVE,
                  functools.partial(_selective, classifier="resnet50"),
                  has_rois=True, selects_rois=True, trains_denet=True),
        ModelSpec("resnet50_full", _WHOLE, functools.partial(_whole, classifier="resnet50"),
                  has_rois=False, selects_rois=False),
        ModelSpec("hybrid", "breastzoo.models.hybrid.Hybrid", _hybrid,
                  has_rois=True, selects_rois=False, zoo_prefix="hybrid_sep",
                  bach_prefix="hybrid", own_losses=True, native_bach_size=True),
    )
}

#: The names, in table order (``configs.MODELS``).
MODEL_NAMES: tuple[str, ...] = tuple(SPECS)


def model_spec(name: str) -> ModelSpec:
    """The spec of a ``--model`` name.

    Raises:
        ValueError: unknown name (the message lists the known ones).

    Example:
        >>> model_spec("oracle_roi").needs_lesion_centres
        True
    """
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown model. Received: model={name!r}; expected one of "
                         f"{', '.join(MODEL_NAMES)}.") from None


def members_of(model: Any) -> list[Any]:
    """The models that make ``model``'s predictions: an ensemble's members (recursively),
    else ``[model]``.

    Example:
        >>> members_of("not a model")
        ['not a model']
    """
    members = getattr(model, "members", None)
    if not members:
        return [model]
    return [m for member in members for m in members_of(member)]


def find_spec(model: Any) -> ModelSpec | None:
    """The spec of a built model (an ensemble: its first member's), or ``None`` when the
    model is not a breastzoo model.

    Example:
        >>> find_spec("not a model") is None
        True
    """
    return SPECS.get(getattr(members_of(model)[0], "spec_name", None))


def spec_of(model: Any) -> ModelSpec:
    """The spec of a built breastzoo model; an ensemble has its first member's (what its
    ``infer`` and serving outputs report ROIs from).

    Raises:
        ValueError: not a breastzoo model.

    Example:
        >>> spec_of("not a model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Not a breastzoo model: ... or an Ensemble of them. Received: model=str
    """
    spec = find_spec(model)
    if spec is None:
        raise ValueError(
            "Not a breastzoo model: expected a model of breastzoo fit --model "
            f"({', '.join(MODEL_NAMES)}) or an Ensemble of them. "
            f"Received: model={type(model).__name__}"
        )
    return spec


def check_servable(model: Any, builtin_ops: bool = False) -> ModelSpec:
    """Check that every member of ``model`` can be served (with builtin ops); return the
    spec of ``model`` (:func:`spec_of`).

    Raises:
        ValueError: not a breastzoo model, or a member that cannot be served that way.

    Example:
        >>> check_servable("not a model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Not a breastzoo model: ... Received: model=str
    """
    for member in members_of(model):
        spec_of(member).check_servable(builtin_ops)
    return spec_of(model)
