"""Export breastzoo models for serving: SavedModel (TF Serving), TFLite/LiteRT, ONNX.

Every format carries the same serving contract (:mod:`breastzoo.export.serving`): raw uint8
images in; probabilities, class and (ROI models) boxes out. Import the submodules directly;
this package imports nothing heavy.

Example:
    >>> from breastzoo.export.savedmodel import write_savedmodel  # doctest: +SKIP
"""
