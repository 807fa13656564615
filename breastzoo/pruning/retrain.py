"""Retraining after pruning: a warm-restart learning rate and optional distillation.

A freshly pruned Inception-SEP network has lost a share of its channels but keeps trained
weights for the rest, so it is retrained, not trained: the learning rate restarts low, climbs
over the first epoch and decays to zero (:func:`breastzoo.models.factory.warm_restart_schedule`),
and, optionally, the unpruned model teaches it (knowledge distillation, Hinton et al. 2015;
beyond paper 002, which retrains on the labels alone).

:class:`Distiller` wraps the pruned student and the frozen unpruned teacher in the Keras
"customizing fit()" pattern: its ``train_step`` mixes the student's own cross-entropy with the
Kullback-Leibler divergence from the teacher's softened probabilities, output by output. A
model's outputs are its probabilities, or for a :class:`~breastzoo.models.hybrid.Hybrid` both
branches' (``branch_probs``: the global branch's per image, the local branch's per patch,
each patch carrying its image's label), which is exactly the loss the hybrid trains on.
After training, the student is the model to keep (``distiller.student``).

Example:
    >>> import keras, numpy as np
    >>> def net():
    ...     out = keras.layers.Dense(2, activation="softmax")
    ...     return keras.Sequential([keras.Input((4,)), out])
    >>> d = Distiller(net(), net(), alpha=0.5, temperature=2.0)
    >>> d.compile(optimizer="adam")
    >>> x, y = np.ones((8, 4), "float32"), np.zeros(8, "int32")
    >>> sorted(d.fit(x, y, epochs=1, verbose=0).history)
    ['accuracy', 'distill_loss', 'label_loss', 'loss']
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["Distiller", "model_outputs"]

_EPS = 1e-7


def model_outputs(model: keras.Model, images: Any, training: bool) -> tuple[Any, ...]:
    """The probability tensors a model trains on: ``(probs,)``, or a hybrid's
    ``(global [B, C], local [B, P, C])``.

    Args:
        model: a classifier returning probabilities, or a model with ``branch_probs``.
        images: a batch.
        training: training mode (BatchNorm, dropout).

    Example:
        >>> import keras, numpy as np
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        >>> [tuple(p.shape) for p in model_outputs(m, np.ones((5, 3), "float32"), False)]
        [(5, 2)]
    """
    if hasattr(model, "branch_probs"):
        return tuple(model.branch_probs(images, training=training))
    return (model(images, training=training),)


def _per_image(values: Any) -> Any:
    """Mean over every axis but the first: one number per image (a hybrid's patches)."""
    while len(values.shape) > 1:
        values = ops.mean(values, axis=-1)
    return values


def _label_nll(probs: Any, true: Any) -> Any:
    """Per-image cross-entropy ``[B]`` of probabilities ``[B, ..., C]`` against one-hot
    ``[B, C]`` (averaged over a hybrid's patches)."""
    while len(true.shape) < len(probs.shape):
        true = ops.expand_dims(true, 1)
    return _per_image(-ops.log(ops.clip(ops.sum(probs * true, -1), _EPS, 1.0)))


def _soft(probs: Any, temperature: float) -> Any:
    """Probabilities softened at ``temperature``: softmax(log p / T)."""
    return ops.softmax(ops.log(ops.clip(probs, _EPS, 1.0)) / temperature, axis=-1)


def _kl(teacher: Any, student: Any) -> Any:
    """Per-image KL(teacher || student) ``[B]`` (averaged over a hybrid's patches)."""
    t = ops.clip(teacher, _EPS, 1.0)
    return _per_image(ops.sum(t * (ops.log(t) - ops.log(ops.clip(student, _EPS, 1.0))), -1))


@keras.saving.register_keras_serializable(package="breastzoo")
class Distiller(keras.Model):
    """Train ``student`` on ``(1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)``.

    Args:
        student: the pruned model being retrained (its weights are updated).
        teacher: the unpruned model (frozen, inference mode).
        alpha: weight of the teacher's term in [0, 1]; 0 is plain retraining.
        temperature: softening ``T`` of both distributions (the ``T^2`` keeps the gradient
            scale of the soft term independent of ``T``).

    Example:
        >>> Distiller.__name__
        'Distiller'
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, alpha: float = 0.5,
                 temperature: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
        if float(temperature) <= 0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("loss", "label_loss", "distill_loss")}
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self) -> list:
        return [*self.trackers.values(), self.accuracy]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.student(inputs, training=training)

    def _loss_terms(self, images: Any, labels: Any, weights: Any, training: bool
                    ) -> tuple[Any, Any, Any]:
        outs = model_outputs(self.student, images, training)
        teach = model_outputs(self.teacher, images, False)
        true = ops.one_hot(labels, outs[0].shape[-1])
        label = sum(_label_nll(p, true) for p in outs)
        distill = sum(_kl(_soft(ops.stop_gradient(t), self.temperature),
                          _soft(p, self.temperature)) for p, t in zip(outs, teach, strict=True))
        if weights is None:
            weights = ops.ones_like(label)
        # Sample weights (class balancing) weigh both terms, image by image.
        weights = ops.cast(ops.reshape(weights, (-1,)), label.dtype)
        total = ops.maximum(ops.sum(weights), _EPS)
        return (ops.sum(weights * label) / total,
                ops.sum(weights * distill) / total * self.temperature ** 2, outs[0])

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        images, labels, weights = keras.utils.unpack_x_y_sample_weight(data)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            label, distill, first = self._loss_terms(images, labels, weights, training=True)
            loss = ((1.0 - self.alpha) * label + self.alpha * distill) / replicas
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        # Training accuracy of the first output (a hybrid's global branch): no second pass.
        return self._record(labels, first, label, distill)

    def test_step(self, data: Any) -> dict[str, Any]:
        images, labels, weights = keras.utils.unpack_x_y_sample_weight(data)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        label, distill, _ = self._loss_terms(images, labels, weights, training=False)
        # Validation accuracy of what the student serves (a hybrid's fused vote).
        return self._record(labels, self.student(images, training=False), label, distill)

    def _record(self, labels: Any, probs: Any, label: Any, distill: Any) -> dict[str, Any]:
        self.trackers["loss"].update_state((1.0 - self.alpha) * label + self.alpha * distill)
        self.trackers["label_loss"].update_state(label)
        self.trackers["distill_loss"].update_state(distill)
        self.accuracy.update_state(labels, probs)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "temperature": self.temperature,
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Distiller:
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        return cls(student, teacher, **config)
