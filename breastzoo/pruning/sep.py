"""SEP channel pruning of paper 002 (Zhu et al. 2019, "Compact model design", eqs. 5-8).

One pruning loop on a trained model:

1. **Importance** (eq. 5): the SE activation ``s_c`` of every SEP block, averaged over the
   training set (:func:`channel_importance`). In a hybrid each branch is scored on its own
   inputs: the global branch on the downsampled images, the local branch on every patch.
2. **Selection** (eqs. 7-8): with target ratio ``O`` over ``R`` loops each loop removes
   ``X = 1 - (1 - O)^(1/R)`` of every SEP block's channels, the least important first
   (:func:`loop_fraction`, :func:`select_channels`).
3. **Physical removal** (:func:`prune_model`): a narrower model of the same class is built from
   its config with smaller ``channels`` and the kept weights are copied in. A channel of an
   Inception module's output is one filter of its 1x1, 3x3, 5x5 or pool-proj convolution;
   its consumers are kept consistent: the SE squeeze rows and excite columns, the input
   channels of the next module's four input convolutions (across the max pool after 3b), and
   the classifier rows of the head concatenation (4e, 4b, 4c, 4d).

Retraining between loops is the caller's (``breastzoo prune``); the SE bottleneck keeps its
trained size so the gates of the kept channels are exactly those of the unpruned model.

Works on an :class:`~breastzoo.models.inception_sep.InceptionSEP` and on any model holding
InceptionSEP sub-models as ``global_branch`` / ``local_branch`` that is rebuilt from its config
with ``global_channels`` / ``local_channels`` (the :class:`~breastzoo.models.hybrid.Hybrid`).

Example:
    >>> round(loop_fraction(0.5, 1), 3), round(loop_fraction(0.75, 2), 3)
    (0.5, 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from breastzoo.models.inception_sep import (
    BRANCH_KEYS,
    HEAD_MODULES,
    MODULES,
    OUTPUT_KEYS,
    InceptionSEP,
)

__all__ = [
    "BRANCH_ATTRS",
    "INNER_CONV_KEYS",
    "STEM_KEYS",
    "conv_importance",
    "inner_conv",
    "select_conv_channels",
    "channel_importance",
    "loop_fraction",
    "prune_model",
    "prune_once",
    "sep_branches",
    "select_channels",
]

#: Attributes of a composite model that may hold InceptionSEP branches, and the config key
#: that rebuilds each one narrower.
BRANCH_ATTRS: dict[str, str] = {"global_branch": "global_channels",
                                "local_branch": "local_channels"}
#: Key used for a bare InceptionSEP (the model is its own single branch).
SELF = "self"

Keep = dict[str, dict[str, np.ndarray]]

#: The stem's convolutions, in order (stem3's output feeds the first Inception module).
STEM_KEYS: tuple[str, ...] = ("stem1", "stem2", "stem3")
#: Convolutions with no SEP block after them, pruned only with ``convs=True``: the stem and
#: every module's 3x3/5x5 reduce convolutions. Together they hold about a third of the MACs
#: (the stem alone 0.48 of 1.46 G at 224x224), which SEP pruning never touches.
INNER_CONV_KEYS: tuple[str, ...] = STEM_KEYS + tuple(
    f"{m}_{k}" for m in MODULES for k in ("3x3r", "5x5r"))


def loop_fraction(target: float, loops: int = 1) -> float:
    """Eq. 8: the fraction ``X`` of channels removed in each of ``loops`` loops.

    Removing ``X`` of what is left ``R`` times removes ``1 - (1 - X)^R = O`` overall (eq. 7).

    Args:
        target: overall pruning ratio ``O`` in [0, 1).
        loops: number of prune-retrain loops ``R`` (>= 1).

    Example:
        >>> round(loop_fraction(0.8, 4), 4)
        0.3313
    """
    if not 0.0 <= float(target) < 1.0:
        raise ValueError(f"ratio must be in [0, 1). Received: ratio={target!r}")
    if int(loops) < 1:
        raise ValueError(f"loops must be >= 1. Received: loops={loops!r}")
    return 1.0 - (1.0 - float(target)) ** (1.0 / int(loops))


def sep_branches(model: keras.Model) -> dict[str, InceptionSEP]:
    """The InceptionSEP networks inside ``model``: ``{"self": model}`` or ``{attr: branch}``.

    Args:
        model: an InceptionSEP or a model with ``global_branch`` / ``local_branch``.

    Example:
        >>> list(sep_branches(InceptionSEP(2, width=0.125)))
        ['self']
    """
    if isinstance(model, InceptionSEP):
        return {SELF: model}
    found = {attr: getattr(model, attr) for attr in BRANCH_ATTRS
             if isinstance(getattr(model, attr, None), InceptionSEP)}
    if not found:
        raise ValueError(
            "SEP pruning needs an InceptionSEP or a model with InceptionSEP branches "
            f"(global_branch / local_branch). Received: model={type(model).__name__}"
        )
    return found


def _branch_inputs(model: keras.Model, images: Any) -> dict[str, Any]:
    """What each branch sees for a batch of the model's inputs."""
    if isinstance(model, InceptionSEP):
        x = keras.ops.convert_to_tensor(images)
        if "int" in str(x.dtype):  # a bare branch takes [0, 1] floats
            x = keras.ops.cast(x, "float32") / 255.0
        return {SELF: x}
    if not hasattr(model, "inputs_of_branches"):
        raise ValueError(
            f"{type(model).__name__} has no inputs_of_branches(images); cannot score its "
            f"branches. Received: model={type(model).__name__}"
        )
    glob, patches = model.inputs_of_branches(images)
    shape = keras.ops.shape(patches)
    flat = keras.ops.reshape(patches, (-1, shape[2], shape[3], shape[4]))
    return {"global_branch": glob, "local_branch": flat}


def channel_importance(model: keras.Model, batches: Iterable[Any],
                       max_batches: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Eq. 5: mean SE activation of every SEP channel over the given (training) images.

    Args:
        model: an InceptionSEP (float inputs in [0, 1]; uint8 is scaled) or a hybrid.
        batches: iterable of image batches, or of ``(images, labels, ...)`` tuples (a
            ``tf.data.Dataset`` of the training split, without augmentation).
        max_batches: stop after this many batches (None: all).

    Returns:
        ``{branch: {module: importance [C]}}`` (branch ``"self"`` for a bare InceptionSEP).

    Example:
        >>> import numpy as np
        >>> net = InceptionSEP(2, width=0.125)
        >>> imp = channel_importance(net, [np.zeros((2, 32, 32, 3), "float32")])
        >>> imp["self"]["3a"].shape
        (32,)
    """
    branches = sep_branches(model)
    sums: dict[str, dict[str, np.ndarray]] = {}
    count: dict[str, int] = {name: 0 for name in branches}
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        for name, x in _branch_inputs(model, images).items():
            gates = branches[name].se_gates(x)
            per = sums.setdefault(name, {})
            for module, g in gates.items():
                total = keras.ops.convert_to_numpy(g).astype("float64").sum(axis=0)
                per[module] = per.get(module, 0.0) + total
            count[name] += int(keras.ops.shape(x)[0])
    if not sums:
        raise ValueError("channel_importance needs at least one batch. Received: 0 batches")
    return {name: {m: (v / count[name]).astype("float32") for m, v in per.items()}
            for name, per in sums.items()}


def _groups(branch: InceptionSEP, module: str) -> list[tuple[str, int, int]]:
    """(conv key, start, stop) of each convolution's channels in the module output."""
    out, start = [], 0
    for key in OUTPUT_KEYS:
        n = branch.channels[f"{module}_{key}"]
        out.append((key, start, start + n))
        start += n
    return out


def select_channels(branch: InceptionSEP, importance: dict[str, np.ndarray],
                    fraction: float) -> dict[str, np.ndarray]:
    """Kept channel indices of every SEP block after removing ``fraction`` of them.

    The ``round(fraction * C)`` least important channels of each block go (eq. 8, Fig. 6);
    ties are broken by index so the choice is deterministic. Each of the four output
    convolutions keeps at least its most important channel (a convolution with zero filters
    cannot exist), so a block may keep slightly more than ``(1 - fraction) C``.

    Args:
        branch: the InceptionSEP the importances belong to.
        importance: ``{module: [C]}`` from :func:`channel_importance`.
        fraction: share of channels to remove per block, in [0, 1).

    Returns:
        ``{module: sorted kept indices}``.

    Example:
        >>> net = InceptionSEP(2, width=0.125)
        >>> imp = {m: np.arange(net.module_channels(m), dtype="float32") for m in MODULES}
        >>> len(select_channels(net, imp, 0.5)["3a"])
        17
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"fraction must be in [0, 1). Received: fraction={fraction!r}")
    keep = {}
    for module in MODULES:
        scores = np.asarray(importance[module], dtype="float64")
        c = branch.module_channels(module)
        if scores.shape != (c,):
            raise ValueError(
                f"importance of {module} must have {c} entries. Received: shape={scores.shape}"
            )
        n_drop = int(round(float(fraction) * c))
        order = np.lexsort((np.arange(c), scores))  # ascending importance, then index
        kept = np.ones(c, dtype=bool)
        kept[order[:n_drop]] = False
        for _, start, stop in _groups(branch, module):
            if not kept[start:stop].any():
                kept[start + int(np.argmax(scores[start:stop]))] = True
        keep[module] = np.flatnonzero(kept)
    return keep


def inner_conv(branch: InceptionSEP, key: str) -> Any:
    """The ConvBNReLU layer of an :data:`INNER_CONV_KEYS` key.

    Args:
        branch: an InceptionSEP.
        key: ``"stem1"``-``"stem3"`` or ``"<module>_3x3r"`` / ``"<module>_5x5r"``.

    Example:
        >>> inner_conv(InceptionSEP(2, width=0.125), "3a_3x3r").name
        'b3x3r'
    """
    if key in STEM_KEYS:
        return branch.stem[STEM_KEYS.index(key)]
    module, kind = key.split("_")
    inception = branch.inceptions[MODULES.index(module)]
    return inception.b3r if kind == "3x3r" else inception.b5r


def conv_importance(branch: InceptionSEP) -> dict[str, np.ndarray]:
    """Importance of the channels of the convolutions SEP does not score: ``|gamma|``.

    These convolutions have no SE gate to average (eq. 5), so a channel's importance is the
    magnitude of its BatchNorm scale (network slimming, Liu et al. 2017): a channel whose
    scale is near zero passes almost nothing but its constant shift on.

    Args:
        branch: a built InceptionSEP.

    Returns:
        ``{key: [C]}`` for every key of :data:`INNER_CONV_KEYS`.

    Example:
        >>> net = InceptionSEP(2, width=0.125)
        >>> _ = net(np.zeros((1, 32, 32, 3), "float32"))
        >>> conv_importance(net)["stem3"].shape
        (24,)
    """
    return {key: np.abs(_np(inner_conv(branch, key).bn.gamma)).astype("float32")
            for key in INNER_CONV_KEYS}


def select_conv_channels(branch: InceptionSEP, fraction: float) -> dict[str, np.ndarray]:
    """Kept channels of the stem and reduce convolutions after removing ``fraction`` of each.

    The ``round(fraction * C)`` channels with the smallest :func:`conv_importance` go, ties
    broken by index; every convolution keeps at least one channel.

    Args:
        branch: a built InceptionSEP.
        fraction: share of each convolution's channels to remove, in [0, 1).

    Returns:
        ``{key: sorted kept indices}`` for every key of :data:`INNER_CONV_KEYS`.

    Example:
        >>> net = InceptionSEP(2, width=0.125)
        >>> _ = net(np.zeros((1, 32, 32, 3), "float32"))
        >>> len(select_conv_channels(net, 0.5)["stem1"])
        4
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"fraction must be in [0, 1). Received: fraction={fraction!r}")
    keep = {}
    for key, scores in conv_importance(branch).items():
        c = len(scores)
        n_drop = min(int(round(float(fraction) * c)), c - 1)
        order = np.lexsort((np.arange(c), scores))
        keep[key] = np.sort(order[n_drop:])
    return keep


def _assign(variable: Any, value: np.ndarray) -> None:
    if tuple(variable.shape) != value.shape:
        raise ValueError(
            f"Internal shape mismatch copying {variable.path}: {tuple(variable.shape)} vs "
            f"{value.shape}. Received: value.shape={value.shape}"
        )
    variable.assign(value)


def _np(variable: Any) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable)


def _copy_conv(old: Any, new: Any, in_idx: np.ndarray | None, out_idx: np.ndarray | None) -> None:
    kernel = _np(old.conv.kernel)
    if in_idx is not None:
        kernel = kernel[:, :, in_idx, :]
    if out_idx is not None:
        kernel = kernel[..., out_idx]
    _assign(new.conv.kernel, kernel)
    pairs = [(old.conv.bias, new.conv.bias), (old.bn.gamma, new.bn.gamma),
             (old.bn.beta, new.bn.beta), (old.bn.moving_mean, new.bn.moving_mean),
             (old.bn.moving_variance, new.bn.moving_variance)]
    for a, b in pairs:
        value = _np(a)
        _assign(b, value if out_idx is None else value[out_idx])


def _narrow_channels(branch: InceptionSEP, keep: dict[str, np.ndarray]) -> dict[str, int]:
    channels = dict(branch.channels)
    for name, kept in keep.items():
        if name in INNER_CONV_KEYS:
            channels[name] = len(kept)
            continue
        for key, start, stop in _groups(branch, name):
            channels[f"{name}_{key}"] = int(((kept >= start) & (kept < stop)).sum())
    return channels


def _copy_branch(old: InceptionSEP, new: InceptionSEP, keep: dict[str, np.ndarray]) -> None:
    """Copy the kept weights of ``old`` into the narrower, built ``new``."""
    in_idx: np.ndarray | None = None  # channels of the tensor entering the current layer
    for key, a, b in zip(STEM_KEYS, old.stem, new.stem, strict=True):
        _copy_conv(a, b, in_idx, keep.get(key))
        in_idx = keep.get(key)
    for module, a, b, sa, sb in zip(MODULES, old.inceptions, new.inceptions, old.seps,
                                    new.seps, strict=True):
        kept = keep.get(module)
        out = {key: None for key in OUTPUT_KEYS}
        if kept is not None:
            for key, start, stop in _groups(old, module):
                out[key] = kept[(kept >= start) & (kept < stop)] - start
        convs = dict(zip(BRANCH_KEYS, (a.b1, a.b3r, a.b3, a.b5r, a.b5, a.bp), strict=True))
        new_convs = dict(zip(BRANCH_KEYS, (b.b1, b.b3r, b.b3, b.b5r, b.b5, b.bp), strict=True))
        # Reduce convolutions are not SEP-followed: their filters go only with convs=True
        # (keys "<module>_3x3r" / "_5x5r"), and the 3x3 / 5x5 convolutions lose the matching
        # input channels.
        r3, r5 = keep.get(f"{module}_3x3r"), keep.get(f"{module}_5x5r")
        inputs = {"1x1": in_idx, "3x3r": in_idx, "3x3": r3, "5x5r": in_idx, "5x5": r5,
                  "pool": in_idx}
        outputs = {"1x1": out["1x1"], "3x3r": r3, "3x3": out["3x3"], "5x5r": r5,
                   "5x5": out["5x5"], "pool": out["pool"]}
        for key in BRANCH_KEYS:
            _copy_conv(convs[key], new_convs[key], inputs[key], outputs[key])
        # SE: squeeze reads the module output (rows), excite writes it (columns).
        sq_k, sq_b = _np(sa.squeeze.kernel), _np(sa.squeeze.bias)
        ex_k, ex_b = _np(sa.excite.kernel), _np(sa.excite.bias)
        if kept is not None:
            sq_k, ex_k, ex_b = sq_k[kept], ex_k[:, kept], ex_b[kept]
        _assign(sb.squeeze.kernel, sq_k)
        _assign(sb.squeeze.bias, sq_b)
        _assign(sb.excite.kernel, ex_k)
        _assign(sb.excite.bias, ex_b)
        in_idx = kept
    rows, offset = [], 0
    for module in HEAD_MODULES:
        c = old.module_channels(module)
        kept = keep.get(module)
        rows.append(offset + (np.arange(c) if kept is None else kept))
        offset += c
    kernel = _np(old.classifier.kernel)[np.concatenate(rows)]
    _assign(new.classifier.kernel, kernel)
    _assign(new.classifier.bias, _np(old.classifier.bias))


def _built_shape(model: keras.Model) -> tuple:
    shape = getattr(model, "_build_shapes_dict", None) or {}
    first = next(iter(shape.values()), None)
    return tuple(first) if first is not None else (None, None, None, 3)


def prune_model(model: keras.Model, keep: Keep) -> keras.Model:
    """Build the narrower model that keeps only ``keep``'s channels, with copied weights.

    Args:
        model: a built InceptionSEP or composite (hybrid) model.
        keep: ``{branch: {module: kept indices}}`` (branch ``"self"`` for a bare
            InceptionSEP; keys: modules, and with ``convs`` the stem and reduce
            convolutions of :data:`INNER_CONV_KEYS`); a missing branch or key keeps
            everything.

    Returns:
        A new, built, uncompiled model of the same class. Outputs equal the old model's
        exactly when the removed channels were inert (gate 0).

    Example:
        >>> net = InceptionSEP(2, width=0.125)
        >>> _ = net(np.zeros((1, 32, 32, 3), "float32"))
        >>> imp = channel_importance(net, [np.zeros((1, 32, 32, 3), "float32")])
        >>> small = prune_model(net, {"self": select_channels(net, imp["self"], 0.5)})
        >>> small.module_channels("3a")
        17
    """
    if not model.built:
        raise ValueError(f"Build the model before pruning it. Received: model={model.name}")
    branches = sep_branches(model)
    unknown = sorted(set(keep) - set(branches))
    if unknown:
        raise ValueError(f"Unknown branch names {unknown}; the model has {sorted(branches)}. "
                         f"Received: keep keys={sorted(keep)}")
    narrow = {name: _narrow_channels(b, keep.get(name, {})) for name, b in branches.items()}
    config = model.get_config()
    if SELF in branches:
        config["channels"] = narrow[SELF]
        new = type(model).from_config(config)
        new.build(_built_shape(model))
    else:
        for name, channels in narrow.items():
            config[BRANCH_ATTRS[name]] = channels
        new = type(model).from_config(config)
        new.build(_built_shape(model))
    new_branches = sep_branches(new)
    for name, branch in branches.items():
        _copy_branch(branch, new_branches[name], keep.get(name, {}))
    if SELF not in branches:
        _copy_other_weights(model, new, branches)
    return new


def _copy_other_weights(old: keras.Model, new: keras.Model,
                        branches: dict[str, InceptionSEP]) -> None:
    """Copy every non-branch weight (stain reference, ...) by path."""
    skip = {id(v) for b in branches.values() for v in b.weights}
    old_by_path = {v.path: v for v in old.weights if id(v) not in skip}
    new_skip = {id(v) for b in sep_branches(new).values() for v in b.weights}
    for v in new.weights:
        if id(v) in new_skip:
            continue
        source = old_by_path.get(v.path)
        if source is None or tuple(source.shape) != tuple(v.shape):
            raise ValueError(f"No matching weight for {v.path} in the unpruned model. "
                             f"Received: path={v.path}")
        v.assign(_np(source))


def prune_once(model: keras.Model, batches: Iterable[Any], fraction: float,
               max_batches: int | None = None, convs: bool = False
               ) -> tuple[keras.Model, Keep]:
    """One SEP loop without retraining: score (eq. 5), select (eq. 8), remove physically.

    Args:
        model: InceptionSEP or hybrid, trained.
        batches: training images (see :func:`channel_importance`).
        fraction: ``X`` of eq. 8 (use :func:`loop_fraction`).
        max_batches: cap on scored batches.
        convs: also remove ``fraction`` of the stem and reduce convolutions' channels
            (:func:`select_conv_channels`): the MACs SEP pruning leaves, and most of the
            latency it does not remove (docs/pruning.md).

    Returns:
        ``(pruned model, kept indices per branch and module)`` (with ``convs``, also per
        :data:`INNER_CONV_KEYS` key).

    Example:
        >>> net = InceptionSEP(2, width=0.125)
        >>> small, _ = prune_once(net, [np.zeros((1, 32, 32, 3), "float32")], 0.5)
        >>> small.count_params() < net.count_params()
        True
    """
    if not model.built:
        first = next(iter(batches))
        model(first[0] if isinstance(first, (tuple, list)) else first)
    importance = channel_importance(model, batches, max_batches=max_batches)
    branches = sep_branches(model)
    keep = {name: select_channels(branches[name], imp, fraction)
            for name, imp in importance.items()}
    if convs:
        for name in keep:
            keep[name].update(select_conv_channels(branches[name], fraction))
    return prune_model(model, keep), keep
