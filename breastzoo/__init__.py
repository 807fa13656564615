"""breastzoo: Keras 3 application and model zoo for breast-cancer histopathology.

Example:
    >>> import breastzoo
    >>> breastzoo.__version__
    '0.1.0'
"""

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real import is lazy: it pulls in TensorFlow on first use
    from breastzoo.zoo.loaded import LoadedModel

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries our own output;
# users can still set TF_CPP_MIN_LOG_LEVEL themselves. The CLI goes further (level 3, and absl's
# pre-initialisation lines filtered out): breastzoo.quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def load(name: str, version: int | None = None, *, root: str | None = None) -> "LoadedModel":
    """Load a published zoo model (verified against its SHA256SUMS) for inference.

    Lazy: TensorFlow is imported on the first call, not when ``breastzoo`` is imported.

    Args:
        name: model name, a plain identifier such as ``"denet_sanet_100x"``.
        version: integer version; ``None`` for the latest.
        root: zoo folder or http(s) URL; default ``$BREASTZOO_ZOO``, the checkout's ``zoo/``,
            then ``~/.cache/breastzoo/zoo``.

    Returns:
        A :class:`breastzoo.zoo.LoadedModel`: ``predict(uint8 [N, 460, 700, 3])`` gives class
        probabilities; ``infer`` adds class names and ROI boxes; ``card`` is the model card.

    Example:
        >>> m = load("denet_sanet_100x")  # doctest: +SKIP
        >>> m.predict(images).shape  # doctest: +SKIP
        (4, 8)
    """
    from breastzoo.zoo.loaded import load as _load

    return _load(name, version, root=root)
