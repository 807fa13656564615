"""What :func:`breastzoo.load` returns: a verified zoo model with its card and input contract.

``LoadedModel.predict(images)`` takes raw uint8 ``[N, H, W, 3]`` images at the card's size
(700x460 for BreaKHis models) and returns class probabilities ``[N, C]``; normalisation and
ROI cropping happen inside the Keras model. ``infer`` adds class names and ROI boxes, and
``fit_image`` brings an image of another size to the contract the way the card says.

Example:
    >>> import breastzoo
    >>> m = breastzoo.load("denet_sanet_100x")  # doctest: +SKIP
    >>> m.predict(images).shape  # doctest: +SKIP
    (4, 8)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from breastzoo.zoo import registry


@dataclass
class LoadedModel:
    """A published (or local) model ready for inference.

    Attributes:
        name: zoo name (or the file name for a local path).
        version: published version, ``None`` for a run folder or ``.keras`` file.
        path: the version folder (or run folder / file) it came from.
        keras_model: the Keras model, loaded with ``safe_mode=True``.
        card: ``card.json`` (``{}`` for an unpublished model).
        metadata: ``metadata.json`` (``{}`` for an unpublished model).
    """

    name: str
    version: int | None
    path: Path
    keras_model: Any
    card: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    _compiled: Any = field(default=None, init=False, repr=False)

    #: From this many images on, ``infer`` traces the model once into a graph: tracing costs
    #: tens of seconds, then each batch runs much faster than eagerly, since DeNet's rollout is
    #: many small ops (demo model, batch of 8, busy 2-core machine: 1.0 s vs 11 s).
    COMPILE_FROM = 64

    # ------------------------------------------------------------------ contract

    @property
    def class_names(self) -> list[str]:
        """Class names in output order."""
        names = (self.card.get("input") or {}).get("class_names")
        names = names or getattr(self.keras_model, "class_names", None)
        return list(names) if names else [str(i) for i in range(self.num_classes)]

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        n = getattr(self.keras_model, "num_classes", None)
        if n is None:
            n = len((self.card.get("input") or {}).get("class_names") or [])
        return int(n)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` the model takes (the model's own record, else the card's)."""
        size = getattr(self.keras_model, "image_size", None) or (
            self.card.get("input") or {}).get("image_size")
        if not size:
            raise ValueError(f"{self.name} records no input image size.")
        w, h = size
        return int(w), int(h)

    @property
    def magnification(self) -> str | None:
        """Magnification the model was trained at (``None`` when not per magnification)."""
        return getattr(self.keras_model, "magnification", None)

    @property
    def size_policy(self) -> str:
        """How :meth:`fit_image` handles wrong-size images: ``pad``, ``resize`` or ``error``."""
        return (self.card.get("input") or {}).get("on_size_mismatch", "pad")

    @property
    def has_rois(self) -> bool:
        """Whether the model reports regions it looked at: DeNet's ROIs, random/oracle crops,
        the hybrid's local grid cells. A whole-image model's one "ROI" is the image itself,
        so it reports none (an ensemble reports its first member's). The model table says
        (:mod:`breastzoo.models.specs`); a model outside it has ROIs if it has ``infer``."""
        from breastzoo.models.specs import find_spec

        spec = find_spec(self.keras_model)
        return spec.has_rois if spec else hasattr(self.keras_model, "infer")

    def __repr__(self) -> str:
        v = f" v{self.version}" if self.version is not None else ""
        w, h = self.image_size
        return (f"LoadedModel({self.name}{v}: {type(self.keras_model).__name__}, "
                f"{self.num_classes} classes, {w}x{h} uint8 input, from {self.path})")

    # ------------------------------------------------------------------ inputs

    def check_images(self, images: Any) -> np.ndarray:
        """Validate a batch against the contract and return it as a uint8 array.

        Raises:
            ValueError: wrong rank, size, channels or dtype (the message names the shape).
        """
        arr = np.asarray(images)
        w, h = self.image_size
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (h, w, 3):
            raise ValueError(
                f"{self.name} takes uint8 images [N, {h}, {w}, 3]. Received: shape={arr.shape};"
                " use fit_image() (or `breastzoo predict`) for other sizes."
            )
        if arr.dtype != np.uint8:
            raise ValueError(
                f"{self.name} takes raw uint8 images (0-255; it normalises them itself). "
                f"Received: dtype={arr.dtype}"
            )
        return arr

    def fit_image(self, image: Any) -> tuple[np.ndarray, str | None]:
        """Bring one ``[H, W, 3]`` uint8 image to the model's size as the card says.

        Returns:
            ``(image, note)``; ``note`` says what was done (``None`` when nothing was).

        Raises:
            ValueError: wrong size and the card's policy is ``error``, or not an RGB image.

        Example:
            >>> m.fit_image(np.zeros((456, 700, 3), np.uint8))[1]  # doctest: +SKIP
            'padded 700x456 to 700x460'
        """
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"Expected an [H, W, 3] uint8 RGB image. Received: shape="
                             f"{arr.shape}, dtype={arr.dtype}")
        w, h = self.image_size
        ih, iw = arr.shape[:2]
        if (ih, iw) == (h, w):
            return arr, None
        policy = self.size_policy
        if policy == "error":
            raise ValueError(
                f"{self.name} takes {w}x{h} images (its card refuses other sizes). "
                f"Received: {iw}x{ih}"
            )
        if policy == "resize":
            from PIL import Image

            out = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR))
            return out, f"resized {iw}x{ih} to {w}x{h}"
        # pad: centre-crop what is too large, pad what is too small, exactly as the training
        # pipeline does (white, like slide background); the pixel scale, which is what the
        # magnification means, is kept, where resizing would change it.
        from breastzoo.data.pipeline import fit_to_size

        out = np.asarray(fit_to_size(arr, (w, h)))
        verb = "padded" if ih <= h and iw <= w else ("cropped" if ih >= h and iw >= w
                                                     else "padded/cropped")
        return out, f"{verb} {iw}x{ih} to {w}x{h}"

    # ------------------------------------------------------------------ inference

    def _infer_fn(self, compiled: bool) -> Any:
        model = self.keras_model
        if not compiled:
            return model.infer
        if self._compiled is None:
            import tensorflow as tf

            w, h = self.image_size
            # One trace for every batch size: the signature leaves the batch dimension open.
            self._compiled = tf.function(
                model.infer, input_signature=[tf.TensorSpec((None, h, w, 3), tf.uint8)])
        return self._compiled

    def infer(
        self, images: Any, batch_size: int = 8, compiled: bool | None = None
    ) -> dict[str, Any]:
        """Probabilities, predicted classes and ROIs for a batch.

        Args:
            images: uint8 ``[N, H, W, 3]`` at :attr:`image_size`.
            batch_size: images per model call.
            compiled: run the model as a traced graph (``None``: when there are at least
                :attr:`COMPILE_FROM` images). Same outputs either way.

        Returns:
            ``{"probs" [N, C], "class_index" [N], "class_names" [N], "boxes" (list of
            ``[n_i, 4]`` pixel (y0, x0, y1, x1) arrays, the ROIs that voted; empty for
            whole-image models), "n_rois" [N], "patch_probs" (list or ``None``)}``.

        Example:
            >>> m.infer(np.zeros((1, 460, 700, 3), np.uint8))["class_names"]  # doctest: +SKIP
            ['F']
        """
        arr = self.check_images(images)
        probs, boxes, n_rois, patch_probs = [], [], [], []
        model = self.keras_model
        if compiled is None:
            compiled = len(arr) >= self.COMPILE_FROM
        infer_fn = self._infer_fn(compiled) if hasattr(model, "infer") else None
        for start in range(0, len(arr), max(1, int(batch_size))):
            chunk = arr[start:start + batch_size]
            if infer_fn is not None:
                out = infer_fn(chunk)
                p = np.asarray(out["probs"])
                n = np.asarray(out.get("n_rois", np.zeros(len(chunk), "int32")))
                b = np.asarray(out.get("boxes", np.zeros((len(chunk), 0, 4))))
                pp = out.get("patch_probs")
                pp = None if pp is None else np.asarray(pp)
            else:
                p = np.asarray(model(chunk, training=False))
                n, b, pp = np.zeros(len(chunk), "int32"), np.zeros((len(chunk), 0, 4)), None
            if not self.has_rois:
                n, b, pp = np.zeros(len(chunk), "int32"), np.zeros((len(chunk), 0, 4)), None
            probs.append(p)
            n_rois.extend(int(v) for v in n)
            boxes.extend(b[i, : int(n[i])].astype("float32") for i in range(len(chunk)))
            patch_probs.extend([None] * len(chunk) if pp is None
                               else [pp[i, : int(n[i])] for i in range(len(chunk))])
        p_all = np.concatenate(probs) if probs else np.zeros((0, self.num_classes), "float32")
        idx = p_all.argmax(axis=-1) if len(p_all) else np.zeros(0, "int64")
        names = self.class_names
        return {
            "probs": p_all,
            "class_index": idx,
            "class_names": [names[i] for i in idx],
            "boxes": boxes,
            "n_rois": np.asarray(n_rois, "int32"),
            "patch_probs": patch_probs if self.has_rois else None,
        }

    def predict(
        self, images: Any, batch_size: int = 8, compiled: bool | None = None
    ) -> np.ndarray:
        """Class probabilities ``[N, C]`` for raw uint8 images ``[N, H, W, 3]``.

        Example:
            >>> m.predict(np.zeros((2, 460, 700, 3), np.uint8)).shape  # doctest: +SKIP
            (2, 8)
        """
        return self.infer(images, batch_size=batch_size, compiled=compiled)["probs"]

    def attention(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray | None:
        """SaNet's soft-attention masks of ``boxes`` pasted into an image-sized canvas.

        ``None`` for models without a soft-attention classifier or without boxes.
        """
        from breastzoo.viz import attention_canvas as _attention_canvas

        return _attention_canvas(self.keras_model, np.asarray(image),
                                 np.asarray(boxes).astype(int))


def _from_version_dir(directory: Path, name: str, version: int | None) -> LoadedModel:
    from breastzoo.io import read_json
    from breastzoo.zoo.publish import load_keras_model

    registry.check_dir(directory)  # before anything is deserialised
    card = registry.read_card(directory)
    meta_path = directory / "metadata.json"
    metadata = read_json(meta_path) if meta_path.is_file() else {}
    model = load_keras_model(directory / "model.keras")
    return LoadedModel(name, version, directory, model, card, metadata)


def load(
    name: str, version: int | None = None, *, root: str | Path | None = None
) -> LoadedModel:
    """Load a published model from the zoo after verifying its SHA256SUMS.

    Args:
        name: plain-identifier model name, e.g. ``"denet_sanet_100x"``.
        version: integer version; ``None`` for the latest.
        root: zoo root (folder or URL); default: ``$BREASTZOO_ZOO``, the checkout's ``zoo/``,
            then the cache.

    Raises:
        ValueError: bad name (e.g. ``"../../etc/passwd"``), unknown name (close names
            suggested), no such version, or a tampered/truncated file (named).

    Example:
        >>> load("denet_sanet_100x").class_names  # doctest: +SKIP
        ['A', 'F', 'PT', 'TA', 'DC', 'LC', 'MC', 'PC']
    """
    directory = registry.locate(name, version, root)
    return _from_version_dir(directory, name, int(directory.name))


def load_path(path: str | Path) -> LoadedModel:
    """Load from a path: a version folder (verified), a run folder or a ``.keras`` file.

    Example:
        >>> load_path("zoo/denet_sanet_100x/1")  # doctest: +SKIP
    """
    from breastzoo.zoo.publish import load_keras_model

    p = Path(path)
    if p.is_dir() and (p / registry.SUMS_FILE).is_file():
        version = int(p.name) if p.name.isdigit() else None
        name = p.parent.name if version is not None else p.name
        return _from_version_dir(p, name, version)
    if p.is_dir() and (p / "model.keras").is_file():
        return LoadedModel(p.name, None, p, load_keras_model(p / "model.keras"))
    if p.is_file() and p.suffix == ".keras":
        return LoadedModel(p.stem, None, p, load_keras_model(p))
    raise ValueError(
        "Expected a published version folder (with SHA256SUMS), a run folder (with "
        f"model.keras) or a .keras file. Received: path={str(path)!r}"
    )
