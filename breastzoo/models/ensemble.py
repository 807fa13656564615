"""Paper 002's bagging ensemble as one Keras model: members vote with the Sum or Max rule.

``breastzoo fit ... --bagging 5`` trains five members on different 4-of-5 folds of the
training patients (:func:`breastzoo.training.train_bagging`) and saves them as one
:class:`Ensemble` in the run's ``model.keras``, which loads and predicts like any other model.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from breastzoo.models.shared_ops import image_boxes, vote

__all__ = ["VOTE_RULES", "Ensemble", "combine"]

VOTE_RULES: tuple[str, ...] = ("sum", "max")


def combine(member_probs: Any, rule: str = "sum", *, builtin_ops: bool = False) -> Any:
    """Combine ``[B, M, C]`` member probabilities into ``[B, C]``.

    Args:
        member_probs: each member's class probabilities, members along axis 1.
        rule: ``"sum"`` (the paper's Sum rule: average the probabilities) or ``"max"`` (the
            Max rule: majority vote of the members' arg-max classes). The Max rule returns
            ``(votes + mean probabilities) / (M + 1)``: a distribution whose arg-max is the
            majority class, ties broken by the average probability.
        builtin_ops: the Max rule's vote from TFLite builtin ops (same numbers; see
            :mod:`breastzoo.models.shared_ops`).

    Raises:
        ValueError: unknown rule.

    Example:
        >>> import numpy as np
        >>> p = np.array([[[0.6, 0.4], [0.6, 0.4], [0.0, 1.0]]], "float32")
        >>> np.asarray(combine(p, "sum"), "float64").round(2).tolist()
        [[0.4, 0.6]]
        >>> int(np.argmax(combine(p, "max")))  # two of three members say class 0
        0
    """
    if rule not in VOTE_RULES:
        raise ValueError(f"Unknown vote rule. Received: vote={rule!r}; expected one of "
                         f"{', '.join(VOTE_RULES)}")
    member_probs = ops.convert_to_tensor(member_probs, "float32")
    if rule == "sum":
        return ops.mean(member_probs, axis=1)
    return vote(member_probs, member_probs.shape[1], builtin_ops=builtin_ops)[0]


@keras.saving.register_keras_serializable(package="breastzoo")
class Ensemble(keras.Model):
    """Several trained models with the same inputs and classes, voting as one model.

    Members are stored inside the ensemble's config and weights, so one ``.keras`` file holds
    everything and reloads with ``safe_mode=True``. The input contract (``image_size``,
    ``class_names``, ``magnification``) is the first member's.

    Args:
        members: trained models taking the same images and returning ``[B, C]``
            probabilities (two or more).
        rule: ``"sum"`` or ``"max"`` (see :func:`combine`).
        **kwargs: passed to ``keras.Model``.

    Raises:
        ValueError: fewer than two members, unknown rule, or members whose class lists
            differ.

    Example:
        >>> import numpy as np
        >>> from breastzoo.models.baselines import WholeImageClassifier
        >>> ms = [WholeImageClassifier(2, image_size=(32, 32), input_size=16, width=2)
        ...       for _ in range(2)]
        >>> Ensemble(ms, rule="max")(np.zeros((1, 32, 32, 3), "uint8")).shape
        TensorShape([1, 2])
    """

    def __init__(self, members: list[keras.Model], rule: str = "sum", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"An ensemble needs at least 2 members. Received: "
                             f"{len(members)} member(s)")
        if rule not in VOTE_RULES:
            raise ValueError(f"Unknown vote rule. Received: rule={rule!r}; expected one of "
                             f"{', '.join(VOTE_RULES)}")
        names = {tuple(getattr(m, "class_names", None) or ()) for m in members}
        if len(names) > 1:
            raise ValueError(f"Ensemble members disagree on the classes. Received: "
                             f"{sorted(names)}")
        self.members = members
        self.rule = rule

    # The first member's input contract, so reports and the zoo read an ensemble like a model.
    @property
    def class_names(self) -> list[str] | None:
        return getattr(self.members[0], "class_names", None)

    @property
    def image_size(self) -> tuple[int, int] | None:
        return getattr(self.members[0], "image_size", None)

    @property
    def magnification(self) -> str | None:
        return getattr(self.members[0], "magnification", None)

    @property
    def num_classes(self) -> int | None:
        return getattr(self.members[0], "num_classes", None)

    def build(self, input_shape: Any) -> None:
        for member in self.members:
            if not member.built:
                member.build(input_shape)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            members=[keras.saving.serialize_keras_object(m) for m in self.members],
            rule=self.rule,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Ensemble:
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m) for m in config.pop("members")]
        return cls(members=members, **config)

    def member_probs(self, inputs: Any) -> Any:
        """``[B, M, C]``: every member's probabilities (inference mode)."""
        return ops.stack([m(inputs, training=False) for m in self.members], axis=1)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        # Members are trained separately (bagging); the ensemble only ever predicts.
        return combine(self.member_probs(inputs), self.rule)

    def infer(self, inputs: Any) -> dict[str, Any]:
        """``{"probs", "boxes", "n_rois", "member_probs"}``; boxes and ROI counts are the
        first member's (whole image when it reports none)."""
        first = self.members[0]
        if hasattr(first, "infer"):
            # Reuse the first member's forward pass for its probabilities.
            result = first.infer(inputs)
            rest = [m(inputs, training=False) for m in self.members[1:]]
            member_probs = ops.stack([result["probs"], *rest], axis=1)
            boxes, n_rois = result["boxes"], result["n_rois"]
        else:
            member_probs = self.member_probs(inputs)
            width, height = self.image_size or (0, 0)
            batch = ops.shape(member_probs)[0]
            boxes = image_boxes(batch, [[0.0, 0.0, float(height), float(width)]])
            n_rois = ops.ones((batch,), "int32")
        probs = combine(member_probs, self.rule)
        return {"probs": probs, "boxes": boxes, "n_rois": n_rois, "member_probs": member_probs}

    @property
    def spec_name(self) -> str | None:
        """The first member's ``fit --model`` name: a bagging ensemble serves and reports ROIs
        the way its members do (:func:`breastzoo.models.specs.spec_of`)."""
        return getattr(self.members[0], "spec_name", None)

    def serving_outputs(self, images: Any, *, builtin_ops: bool = False,
                        noise_rows: int = 1) -> dict[str, Any]:
        """The serving contract's outputs: every member's ``serving_outputs`` combined by
        the vote rule; ``boxes`` and ``n_rois`` are the first member's, when it has them.

        Args:
            images: uint8 ``[B, H, W, 3]`` at ``image_size``.
            builtin_ops: TFLite builtin ops only, in every member and in the Max rule.
            noise_rows: passed to the members (DeNet's location-noise table).

        Example:
            >>> import numpy as np
            >>> from breastzoo.models.baselines import WholeImageClassifier
            >>> ms = [WholeImageClassifier(2, image_size=(32, 32), input_size=16, width=2)
            ...       for _ in range(2)]
            >>> out = Ensemble(ms).serving_outputs(np.zeros((1, 32, 32, 3), "uint8"))
            >>> sorted(out)
            ['probabilities']
        """
        outs = [m.serving_outputs(images, builtin_ops=builtin_ops, noise_rows=noise_rows)
                for m in self.members]
        stacked = ops.stack([ops.cast(o["probabilities"], "float32") for o in outs], axis=1)
        result = {"probabilities": combine(stacked, self.rule, builtin_ops=builtin_ops)}
        if "boxes" in outs[0]:
            result.update(boxes=outs[0]["boxes"], n_rois=outs[0]["n_rois"])
        return result
