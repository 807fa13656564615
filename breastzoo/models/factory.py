"""Build and compile any ``--model`` of ``breastzoo fit`` from a TrainConfig; the model's
class and builder come from its row of :mod:`breastzoo.models.specs`."""

from __future__ import annotations

from typing import Any

import keras

from breastzoo.configs import TrainConfig


def build_model(
    config: TrainConfig,
    class_names: list[str],
    magnification: str | None = None,
    weights: str | None = None,
) -> keras.Model:
    """The (uncompiled) model for ``config.model``.

    Args:
        config: run configuration (model name, sizes, reward options).
        class_names: ordered classes (their count sets the output size).
        magnification: recorded in the model as its input contract.
        weights: optional ``.weights.h5`` to load into the built model (users with
            pretrained weights; nothing is downloaded).

    Example:
        >>> from breastzoo.configs import preset
        >>> build_model(preset("tiny"), ["benign", "malignant"]).name  # doctest: +SKIP
        'selective_attention'
    """
    from breastzoo.models.specs import model_spec

    config.validate()
    common = dict(image_size=config.image_size, class_names=list(class_names),
                  magnification=magnification, stain=config.stain)
    model = model_spec(config.model).build(config, len(class_names), **common)
    # Build now: BackupAndRestore and load_weights need variables to exist before fit().
    w, h = config.image_size
    model(example_inputs(model, keras.ops.zeros((1, h, w, 3), "uint8")))
    if weights:
        model.load_weights(weights)
    return model


def warm_restart_schedule(peak_lr: float, total_steps: int, warmup_steps: int
                          ) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from ``peak_lr / 10`` to ``peak_lr``, then cosine decay to zero.

    The ``cosine`` learning-rate schedule of training, and the warm restart of pruning's
    retraining (:mod:`breastzoo.pruning.retrain`): a freshly pruned network starts from
    trained weights, so the rate climbs back gently instead of jumping to its peak.

    Args:
        peak_lr: the rate reached after the warm-up.
        total_steps: optimizer steps of the whole run (at least 2).
        warmup_steps: steps of the warm-up (capped at half the run).

    Example:
        >>> s = warm_restart_schedule(1e-3, 100, 10)
        >>> round(float(s(0)), 6), round(float(s(10)), 6), round(float(s(100)), 6)
        (0.0001, 0.001, 0.0)
    """
    # Adam's early steps on a fresh BatchNorm net are the noisiest: warm up first.
    total = max(2, int(total_steps))
    warmup = max(0, min(int(warmup_steps), total // 2))
    return keras.optimizers.schedules.CosineDecay(
        peak_lr / 10.0, decay_steps=total - warmup, warmup_target=peak_lr, warmup_steps=warmup,
    )


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Compile with the paper's optimisers: Adam for the classifier with per-epoch
    exponential decay, and (selective models) Adam for DeNet; ``config.optimizer="sgd"``
    (paper 002) is momentum SGD decayed every ``config.lr_decay_steps`` iterations.

    How a model compiles is its spec's (:mod:`breastzoo.models.specs`): ``trains_denet``
    (a second optimizer for DeNet), ``own_losses`` (losses and metrics built into its
    ``train_step``), else sparse cross-entropy and accuracy.

    Example:
        >>> from breastzoo.configs import preset
        >>> model = build_model(preset("tiny"), ["a", "b"])  # doctest: +SKIP
        >>> compile_model(model, preset("tiny"), steps_per_epoch=3)  # doctest: +SKIP
    """
    from breastzoo.models.specs import spec_of

    if config.lr_schedule == "cosine":
        schedule = warm_restart_schedule(config.sanet_lr, config.epochs * steps_per_epoch,
                                         steps_per_epoch)
    else:
        schedule = keras.optimizers.schedules.ExponentialDecay(
            config.sanet_lr, decay_steps=max(1, config.lr_decay_steps or steps_per_epoch),
            decay_rate=config.sanet_decay, staircase=True,
        )
    if config.optimizer == "sgd":
        # Keras' weight decay is decoupled (w -= lr * wd * w), not Caffe's L2 gradient term.
        optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(schedule, weight_decay=config.weight_decay)
    spec = spec_of(model)
    if spec.trains_denet:
        model.compile(
            optimizer=optimizer,
            denet_optimizer=keras.optimizers.Adam(config.denet_lr),
        )
    elif spec.own_losses:
        model.compile(optimizer=optimizer)  # losses and metrics are built in (train_step)
    else:
        model.compile(
            optimizer=optimizer,
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )


def example_inputs(model: keras.Model, images: Any) -> Any:
    """What ``model`` takes for ``images``: the images, or (models whose spec
    ``needs_lesion_centres``: ``oracle_roi``) ``{"images", "centres"}`` with placeholder
    centres, enough to build the model or count its MACs.

    Example:
        >>> from breastzoo.configs import preset
        >>> m = build_model(preset("tiny", "oracle_roi"), ["a", "b"])  # doctest: +SKIP
        >>> sorted(example_inputs(m, keras.ops.zeros((1, 92, 140, 3))))  # doctest: +SKIP
        ['centres', 'images']
    """
    from breastzoo.models.specs import spec_of

    if spec_of(model).needs_lesion_centres:
        centres = keras.ops.full((1, model.k, 2), float(model.patch_size))
        return {"images": images, "centres": centres}
    return images
