"""breastzoo: Keras 3 application and model zoo for breast-cancer histopathology.

Example:
    >>> import breastzoo
    >>> breastzoo.__version__
    '0.1.0'
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries our own output;
# users can still set TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
