"""Build any ``--model`` of ``breastzoo fit`` from a TrainConfig."""

from __future__ import annotations

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
    from breastzoo.models.baselines import PatchVoteClassifier, WholeImageClassifier
    from breastzoo.models.selective import SelectiveAttention

    config.validate()
    n = len(class_names)
    common = dict(image_size=config.image_size, class_names=list(class_names),
                  magnification=magnification, stain=config.stain)
    name = config.model
    if name in ("denet_sanet", "resnet50_roi"):
        model = SelectiveAttention(
            n, patch_size=config.patch_size, k=config.k, k_max=config.k_max,
            max_steps=config.max_steps, width=config.width,
            classifier="sanet" if name == "denet_sanet" else "resnet50",
            gamma=config.gamma, t_prime=config.t_prime, reward=config.reward,
            reward_terms=config.reward_terms, separate_encoders=config.separate_encoders,
            init=config.init, location_std=config.location_std, selection=config.selection,
            roi_order=config.roi_order, patch_scale=config.patch_scale,
            seed=config.seed, **common,
        )
    elif name == "sanet_resize":
        model = WholeImageClassifier(n, input_size=config.patch_size, classifier="sanet",
                                     width=config.width, **common)
    elif name == "resnet50_full":
        model = WholeImageClassifier(n, input_size=None, classifier="resnet50", **common)
    elif name == "hybrid":
        from breastzoo.models.hybrid import Hybrid

        model = Hybrid(n, grid=config.grid, patch_size=config.branch_size,
                       lambda_=config.lambda_, local_rule=config.local_rule,
                       width=config.branch_width, **common)
    else:  # random_roi, centre_roi, oracle_roi
        model = PatchVoteClassifier(
            n, patch_size=config.patch_size, k=config.k, mode=name.split("_")[0],
            width=config.width, seed=config.seed, patch_scale=config.patch_scale, **common,
        )
    # Build now: BackupAndRestore and load_weights need variables to exist before fit().
    w, h = config.image_size
    model(_example_inputs(model, keras.ops.zeros((1, h, w, 3), "uint8")))
    if weights:
        model.load_weights(weights)
    return model


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Compile with the paper's optimisers: Adam for the classifier with per-epoch
    exponential decay, and (selective models) Adam for DeNet; ``config.optimizer="sgd"``
    (paper 002) is momentum SGD decayed every ``config.lr_decay_steps`` iterations."""
    from breastzoo.models.selective import SelectiveAttention

    if config.lr_schedule == "cosine":
        # Warm up over the first epoch (Adam's early steps on a fresh BatchNorm net are the
        # noisiest), then decay to zero at the last step.
        total = max(2, config.epochs * steps_per_epoch)
        warmup = min(steps_per_epoch, total // 2)
        schedule = keras.optimizers.schedules.CosineDecay(
            config.sanet_lr / 10.0, decay_steps=total - warmup, warmup_target=config.sanet_lr,
            warmup_steps=warmup,
        )
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
    if isinstance(model, SelectiveAttention):
        model.compile(
            optimizer=optimizer,
            denet_optimizer=keras.optimizers.Adam(config.denet_lr),
        )
    elif config.model == "hybrid":
        model.compile(optimizer=optimizer)  # losses and metrics are built in (train_step)
    else:
        model.compile(
            optimizer=optimizer,
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )


def _example_inputs(model: keras.Model, images):
    from breastzoo.models.baselines import PatchVoteClassifier

    if isinstance(model, PatchVoteClassifier) and model.mode == "oracle":
        centres = keras.ops.full((1, model.k, 2), float(model.patch_size))
        return {"images": images, "centres": centres}
    return images
