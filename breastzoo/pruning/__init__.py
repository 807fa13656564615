"""Model compression: SEP channel pruning (paper 002) and TF-MOT magnitude pruning.

``breastzoo.pruning.sep`` removes whole channels (the model gets narrower and faster);
``breastzoo.pruning.magnitude`` zeroes individual kernel weights during retraining with
TF-MOT's schedule and mask engine (the model compresses better). ``breastzoo prune`` chains
them. Both import TensorFlow lazily through Keras.

Example:
    >>> from breastzoo.pruning.sep import loop_fraction
    >>> loop_fraction(0.5, 1)
    0.5
"""
