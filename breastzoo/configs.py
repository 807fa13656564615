"""Training presets: ``tiny`` (tests), ``demo`` (make demo, CPU), ``real`` (real H&E on
CPU, bench/real.py) and ``paper`` (paper 000).

A preset is a :class:`TrainConfig`; command-line options override single fields. The config
is written to every run folder (``config.json``) so a run can be resumed and re-evaluated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from breastzoo.models.specs import MODEL_NAMES

#: Every ``fit --model`` name, from the one model table (breastzoo.models.specs, which
#: imports neither Keras nor TensorFlow).
MODELS: tuple[str, ...] = MODEL_NAMES
PRESETS = ("tiny", "demo", "real", "paper")


@dataclass
class TrainConfig:
    """Everything a run needs besides the data.

    Args:
        model: one of :data:`MODELS`.
        task: ``"subtype"`` (8 classes on BreaKHis) or ``"binary"``.
        image_size: (width, height) every image is brought to (BreaKHis: 700x460).
        patch_size: side of a square ROI as the classifier sees it (paper: 112).
        patch_scale: an ROI covers ``patch_size * patch_scale`` image pixels, average-pooled
            to ``patch_size`` (1 = full resolution, the paper; ROI models only).
        patch_dihedral: train the patch classifier on patches turned by a random one of the 8
            symmetries of the square (90-degree rotations and flips; ROI models only). Whole
            images of 700x460 cannot be turned by 90 degrees, patches can.
        k: ROIs selected per image (paper: 5).
        k_max: upper bound on ROIs at test time when the vote is tied.
        max_steps: DeNet glimpses per image per training iteration (it stops early in the
            paper once k are selected; a fixed budget keeps the graph static).
        gamma, t_prime: convergence reward r_c = -log(i_gamma / t_prime) (paper: 0.25, 200).
        reward: ``"paper"`` (one scalar r_p + r_c per iteration), ``"per_image"``
            (adds each image's log-likelihood of its true class on its selected patches) or
            ``"per_glimpse"`` (each action credited with the patch it produced; see
            :mod:`breastzoo.models.selective`).
        reward_terms: subset of ``("rp", "rc")`` for the -r_p / -r_c ablations.
        separate_encoders: eqs. 1-3 encoders (False is the -Eq. 3 ablation).
        init: DeNet init, ``"glorot"``, ``"paper"`` U(-0.01, 0.01) or ``"random"`` (see DeNet).
        location_std: std of the Gaussian location policy (normalised coordinates).
        location_policy: DeNet's move: ``"grid"`` (default, not the paper: a categorical over
            image tiles with inhibition of return and a low-resolution context; training and
            inference take the same walk) or ``"gaussian"`` (the paper). docs/models.md.
        entropy_bonus: weight of the policy-entropy bonus in DeNet's loss.
        warmup_steps: iterations in which SaNet trains on random glimpses before DeNet
            learns (DeNet+SaNet only).
        novelty_bonus: weight of a class-independent "this glimpse stands out" term in the
            per-glimpse reward (grid policy; see ``selective.glimpse_novelty``).
        rp_source: where r_p comes from (``reward="paper"`` or ``"per_image"``): ``"epoch"``,
            the latest per-epoch validation accuracy, or ``"batch"``, the accuracy on a fixed
            mini-batch of ``rp_images`` validation images after every SaNet step (eqs. 5-6).
        rp_images: size of that fixed validation mini-batch (class-balanced where it can be).
        width: base filter count of SaNet (paper-sized: 64).
        batch_size: images per iteration (paper: 4 for DeNet, i.e. 20 selected patches).
        epochs: training epochs.
        steps_per_epoch: cap on iterations per epoch (None: the whole training split).
        sanet_lr, sanet_decay: SaNet Adam learning rate and per-epoch exponential decay.
        denet_lr: DeNet Adam learning rate.
        augment: augmentation policy (``"xu2020"``: rotations and flips, 3x).
        stain: stain normalisation inside the model (``"reinhard"``, ``"macenko"``, ``"none"``).
        roi_order: inference ROI order, ``"selected"`` or ``"probability"``.
        selection: ``"denet"`` or ``"all"`` (SaNet trains on every glimpse; convergence bench).
        seed: run seed (weights, sampling, split).
        lambda_: hybrid (paper 002): weight of the local branch in P = lambda P_L +
            (1 - lambda) P_G (paper: 0.6).
        grid: hybrid: (columns, rows) of the local patch grid (paper: 5x3 from 1120x672).
        local_rule: hybrid: patch predictions ``"mean"`` (averaged) or ``"max"`` (majority).
        branch_size: hybrid: side of the global input and of each local patch (paper: 224).
        branch_width: hybrid: channel multiplier of both Inception-SEP branches.
        optimizer: ``"adam"`` (paper 000) or ``"sgd"`` (paper 002: momentum SGD); its
            learning rate and decay are ``sanet_lr`` and ``sanet_decay``.
        momentum, weight_decay: SGD momentum and (decoupled) weight decay.
        lr_decay_steps: apply ``sanet_decay`` every this many iterations (paper 002: 10000);
            ``None``: once per epoch.
        bagging: train this many models on disjoint folds of the training patients (each on
            all folds but one, validated on that one) and save them as one ensemble
            (paper 002: 5); 1 = a single model.
        vote: how the bagged models vote: ``"sum"`` (average probabilities) or ``"max"``
            (majority).
        balance: class-balanced sampling of training images (every class drawn equally
            often; see :func:`breastzoo.data.pipeline.make_dataset`). On by default: real
            BreaKHis is 31% benign, and without it small models learned to call everything
            by the majority class (docs/models.md).
        color_jitter: HED stain-jitter strength for training images (0 = off; 0.05 is
            Tellez et al.'s "HED-light").
        lr_schedule: ``"exponential"`` (the papers' decay, ``sanet_decay`` per epoch or per
            ``lr_decay_steps``) or ``"cosine"`` (linear warm-up over the first epoch, then
            cosine decay to 0 over the run).
        keep_best: ``"val_balanced_accuracy"`` (the saved model is the epoch with the best
            validation balanced accuracy; ties: lower validation loss) or ``"last"``.

    Example:
        >>> preset("tiny").patch_size
        32
    """

    model: str = "denet_sanet"
    task: str = "subtype"
    image_size: tuple[int, int] = (700, 460)
    patch_size: int = 112
    patch_scale: int = 1
    patch_dihedral: bool = False
    k: int = 5
    k_max: int = 9
    max_steps: int = 10
    gamma: float = 0.25
    t_prime: float = 200.0
    reward: str = "per_glimpse"
    reward_terms: tuple[str, ...] = ("rp", "rc")
    separate_encoders: bool = True
    init: str = "glorot"
    location_std: float = 0.1
    location_policy: str = "grid"
    entropy_bonus: float = 0.01
    warmup_steps: int = 40
    novelty_bonus: float = 0.0
    rp_source: str = "epoch"
    rp_images: int = 8
    width: int = 64
    batch_size: int = 4
    epochs: int = 30
    steps_per_epoch: int | None = None
    sanet_lr: float = 0.01
    sanet_decay: float = 0.9
    denet_lr: float = 1e-3
    augment: str = "xu2020"
    stain: str = "reinhard"
    selection: str = "denet"
    roi_order: str = "selected"
    seed: int = 0
    lambda_: float = 0.6
    grid: tuple[int, int] = (5, 3)
    local_rule: str = "mean"
    branch_size: int = 224
    branch_width: float = 1.0
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float | None = None
    lr_decay_steps: int | None = None
    bagging: int = 1
    vote: str = "sum"
    balance: bool = True
    color_jitter: float = 0.0
    lr_schedule: str = "exponential"
    keep_best: str = "val_balanced_accuracy"
    extra: dict = field(default_factory=dict)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"Unknown config field(s). Received: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad field; return self."""
        if self.model not in MODELS:
            raise ValueError(
                f"Unknown model. Received: model={self.model!r}; expected one of "
                f"{', '.join(MODELS)}."
            )
        if self.task not in ("subtype", "binary"):
            raise ValueError(f"Unknown task. Received: task={self.task!r}")
        if self.reward not in ("paper", "per_image", "per_glimpse"):
            raise ValueError(f"Unknown reward. Received: reward={self.reward!r}")
        if not set(self.reward_terms) <= {"rp", "rc"}:
            raise ValueError(f"Unknown reward term. Received: reward_terms={self.reward_terms}")
        if self.rp_source not in ("epoch", "batch"):
            raise ValueError(f"Unknown rp_source. Received: rp_source={self.rp_source!r}; "
                             "expected epoch or batch")
        if self.rp_source == "batch" and self.reward == "per_glimpse":
            raise ValueError("rp_source=batch needs reward paper or per_image (per_glimpse "
                             "does not use r_p). Received: reward='per_glimpse'")
        if self.rp_images < 1:
            raise ValueError(f"rp_images must be >= 1. Received: rp_images={self.rp_images}")
        w, h = self.image_size
        if self.patch_scale < 1:
            raise ValueError(f"patch_scale must be >= 1. Received: "
                             f"patch_scale={self.patch_scale}")
        if self.patch_size * self.patch_scale > min(w, h):
            raise ValueError(
                f"Patch larger than the image. Received: patch_size={self.patch_size} x "
                f"patch_scale={self.patch_scale} for image_size={w}x{h}"
            )
        if not 1 <= self.k <= self.max_steps:
            raise ValueError(f"Need 1 <= k <= max_steps. Received: k={self.k}, "
                             f"max_steps={self.max_steps}")
        if self.k_max < self.k:
            raise ValueError(f"Need k_max >= k. Received: k_max={self.k_max}, k={self.k}")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"lambda must be in [0, 1]. Received: lambda_={self.lambda_}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be two positive ints. Received: grid={self.grid}")
        for name, value, allowed in (("local_rule", self.local_rule, ("mean", "max")),
                                     ("optimizer", self.optimizer, ("adam", "sgd")),
                                     ("vote", self.vote, ("sum", "max")),
                                     ("lr_schedule", self.lr_schedule,
                                      ("exponential", "cosine")),
                                     ("keep_best", self.keep_best,
                                      ("val_balanced_accuracy", "last")),
                                     ("location_policy", self.location_policy,
                                      ("gaussian", "grid"))):
            if value not in allowed:
                raise ValueError(f"Unknown {name}. Received: {name}={value!r}; expected one "
                                 f"of {', '.join(allowed)}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1). Received: "
                             f"color_jitter={self.color_jitter}")
        if self.entropy_bonus < 0 or self.warmup_steps < 0:
            raise ValueError(f"entropy_bonus and warmup_steps must be >= 0. Received: "
                             f"entropy_bonus={self.entropy_bonus}, "
                             f"warmup_steps={self.warmup_steps}")
        if self.bagging < 1:
            raise ValueError(f"bagging must be >= 1. Received: bagging={self.bagging}")
        return self

    def to_dict(self) -> dict:
        """JSON form (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for key in ("image_size", "reward_terms", "grid"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        return cls(**d)


_PRESETS: dict[str, dict] = {
    # Seconds on 2 CPU cores, for tests: tiny images, tiny network.
    "tiny": dict(image_size=(140, 92), patch_size=32, k=3, k_max=3, max_steps=4, width=4,
                 batch_size=4, epochs=1, steps_per_epoch=3, augment="none", stain="none",
                 warmup_steps=1),
    # make demo: minutes on 2 CPU cores at full resolution. SaNet's Adam lr is 1e-3, not the
    # paper's 0.01: with a few hundred iterations 0.01 left DeNet+SaNet at chance (test IRR
    # 0.137 vs 0.295 on the same split; docs/benchmarks.md).
    "demo": dict(width=16, epochs=8, max_steps=8, batch_size=4, steps_per_epoch=40,
                 sanet_lr=1e-3),
    # Real H&E on 2 CPU cores (bench/real.py; docs/models.md "Training on real BreaKHis"):
    # class-balanced batches, HED stain jitter instead of in-model Reinhard (which turns
    # eosin-rich benign stroma purple: docs/img/real_stain.png), cosine learning rate, best
    # epoch by validation balanced accuracy, and ROIs that see 224x224 pixels of tissue
    # pooled to SaNet's 112 (patch_scale 2) rather than a 112-pixel window of a few nuclei.
    # 5 epochs of 30 steps: what bench/real.py measured (docs/benchmarks.md); the best epoch
    # by validation score is kept, so more epochs mostly cost time on 16 patients.
    "real": dict(width=16, epochs=5, max_steps=8, batch_size=8, steps_per_epoch=30,
                 sanet_lr=1e-3, stain="none", color_jitter=0.1, lr_schedule="cosine",
                 patch_scale=2),
    # Paper 000's hyper-parameters.
    # Paper 000's hyper-parameters, and its DeNet: Gaussian moves, the scalar reward, no
    # warm-up or entropy bonus.
    "paper": dict(width=64, epochs=60, max_steps=10, batch_size=4, sanet_lr=0.01,
                  init="paper", location_policy="gaussian", reward="paper", entropy_bonus=0.0,
                  warmup_steps=0),
}

# Per-model changes on top of a preset (paper 002's hybrid differs from paper 000's models).
_MODEL_PRESETS: dict[tuple[str, str], dict] = {
    # Tiny branches on a 3x2 grid of 32x32 patches.
    ("tiny", "hybrid"): dict(branch_size=32, grid=(3, 2), branch_width=0.125),
    # CPU budget: 112-pixel branches at half width (about 1/16 of the paper's MACs per
    # patch); the paper's 5x3 grid and 8x augmentation.
    ("demo", "hybrid"): dict(branch_size=112, branch_width=0.5, augment="zhu2019"),
    ("real", "hybrid"): dict(branch_size=112, branch_width=0.5, augment="zhu2019"),
    # Paper 002: SGD, batch 10, lr 4e-4 decayed every 10k iterations (factor not stated;
    # 0.1, Caffe's usual "step" gamma), momentum 0.9, weight decay 0.009, 40k iterations
    # (50 epochs is about 42k at BreaKHis 200X: 1057 training images x 8 views / 10).
    ("paper", "hybrid"): dict(optimizer="sgd", sanet_lr=4e-4, sanet_decay=0.1,
                              lr_decay_steps=10_000, momentum=0.9, weight_decay=0.009,
                              batch_size=10, epochs=50, augment="zhu2019", branch_size=224,
                              grid=(5, 3), branch_width=1.0),
}


def preset(name: str, model: str | None = None) -> TrainConfig:
    """The named preset as a TrainConfig, with ``model``'s own settings when it has some.

    Args:
        name: ``"tiny"``, ``"demo"``, ``"real"`` or ``"paper"``.
        model: optional model name; sets ``config.model`` and applies that model's
            overrides (``--config paper --model hybrid`` gets paper 002's SGD settings).

    Raises:
        ValueError: unknown preset name.

    Example:
        >>> preset("paper", "hybrid").optimizer
        'sgd'
    """
    if name not in _PRESETS:
        raise ValueError(
            f"Unknown config preset. Received: config={name!r}; expected one of "
            f"{', '.join(PRESETS)}."
        )
    if model is None:
        return TrainConfig(**_PRESETS[name])
    return TrainConfig(**{**_PRESETS[name], **_MODEL_PRESETS.get((name, model), {}),
                          "model": model})


def apply_overrides(config: TrainConfig, items: list[str] | tuple[str, ...]) -> TrainConfig:
    """``config`` with ``FIELD=VALUE`` strings applied (``fit --set``, tune's best command).

    Values are parsed as YAML scalars (``0.5``, ``true``, ``null``); a comma-separated value
    gives a tuple for tuple fields (``grid=5,3``).

    Raises:
        ValueError: an item without ``=`` or an unknown field.

    Example:
        >>> apply_overrides(preset("tiny"), ["gamma=0.5", "reward_terms=rp"]).reward_terms
        ('rp',)
    """
    import yaml

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    changes: dict = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise ValueError(f"--set needs FIELD=VALUE with a TrainConfig field. "
                             f"Received: {item!r}")
        if isinstance(getattr(config, name), tuple):
            changes[name] = tuple(yaml.safe_load(v) for v in text.split(",") if v.strip())
        else:
            changes[name] = yaml.safe_load(text) if text.strip() else None
    return dataclasses.replace(config, **changes)
