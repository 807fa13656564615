"""Models: SaNet (soft attention) and DeNet (decision LSTM) of paper 000, and the others.

Importing a model module registers its classes with Keras (package ``"breastzoo"``), which
``keras.saving.load_model(..., safe_mode=True)`` needs.

Example:
    >>> from breastzoo.models import SaNet
    >>> SaNet(num_classes=8, width=2, feature_dim=4).num_classes
    8
"""

from breastzoo.models.denet import DeNet, make_state
from breastzoo.models.sanet import ResidualUnit, SaNet

__all__ = ["DeNet", "ResidualUnit", "SaNet", "make_state"]
