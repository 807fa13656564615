"""Export fixtures: small untrained models (export does not depend on the weights) and
demo-format uint8 images at the tiny preset's 140x92."""

from __future__ import annotations

import numpy as np
import pytest

CLASSES = ["A", "B", "C"]


def small_config(model: str = "denet_sanet"):
    """The tiny preset with a short DeNet rollout (4 glimpses), so conversions stay quick."""
    from breastzoo.configs import preset

    return preset("tiny").replace(model=model, k=1, k_max=2, max_steps=2)


@pytest.fixture(scope="session")
def selective_model():
    """Untrained tiny DeNet+SaNet (3 classes, 4 unrolled glimpses)."""
    from breastzoo.models.factory import build_model

    return build_model(small_config(), CLASSES, "100X")


@pytest.fixture(scope="session")
def images():
    """Five uint8 images ``[5, 92, 140, 3]`` (the tiny preset's size), seeded."""
    return np.random.default_rng(0).integers(0, 256, (5, 92, 140, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def keras_outputs(selective_model, images):
    """The reference: the Keras model's own ``infer`` on ``images``."""
    out = selective_model.infer(images)
    return {"probabilities": np.asarray(out["probs"]), "boxes": np.asarray(out["boxes"]),
            "n_rois": np.asarray(out["n_rois"])}
