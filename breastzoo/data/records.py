"""The one record type every dataset indexer produces, and the index that holds them.

Every dataset (BreaKHis, BACH, plain class folders, the synthetic testbed) is reduced to a list
of :class:`ImageRecord` plus a list of :class:`Skipped` files, so splits, pipelines and reports
never need to know which dataset they came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageRecord:
    """One usable image.

    Args:
        path: absolute path of the image file.
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        patient: patient id (BreaKHis: ``"14-22549AB"``); datasets without patients use the
            image's own id so that patient-wise splitting degrades to image-wise.
        label: binary class, ``"benign"`` or ``"malignant"``.
        subtype: fine class (BreaKHis code such as ``"DC"``, BACH ``"InSitu"``, folder name).
        magnification: ``"40X"`` .. ``"400X"`` for BreaKHis, else ``None``.
        note: why the file was kept despite an oddity (for example ``"grayscale, converted
            to RGB"``); empty for clean files.

    Example:
        >>> r = ImageRecord("/x.png", "breakhis", "14-22549AB", "benign", "A", "40X")
        >>> r.subtype
        'A'
    """

    path: str
    dataset: str
    patient: str
    label: str
    subtype: str
    magnification: str | None = None
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-dict form for JSON output."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Skipped:
    """A file that was looked at and not used, with the reason (shown to the user)."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        """Plain-dict form for JSON output."""
        return {"path": self.path, "reason": self.reason}


@dataclass
class DatasetIndex:
    """All records of one dataset root plus everything skipped while indexing it.

    Args:
        dataset: dataset kind (``"breakhis"``, ``"bach"``, ``"folder"``).
        root: the folder the user pointed at.
        records: usable images, sorted by path.
        skipped: files not used, each with a reason.

    Example:
        >>> idx = DatasetIndex("folder", "/data", [], [])
        >>> idx.patients()
        []
    """

    dataset: str
    root: str
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def patients(self) -> list[str]:
        """Sorted distinct patient ids."""
        return sorted({r.patient for r in self.records})

    def classes(self, task: str = "subtype") -> list[str]:
        """Class names for ``task`` (``"subtype"`` or ``"binary"``), in canonical order."""
        from breastzoo.data.constants import class_names

        return class_names(self.dataset, task, {r.subtype for r in self.records})

    def filter(self, magnification: str | None = None) -> DatasetIndex:
        """A new index restricted to one magnification (``None`` keeps all)."""
        if magnification is None:
            return self
        mag = normalize_magnification(magnification)
        keep = [r for r in self.records if r.magnification == mag]
        return DatasetIndex(self.dataset, self.root, keep, list(self.skipped))

    def summary(self) -> dict:
        """Counts for ``breastzoo data index --json``.

        Returns:
            ``{"dataset", "root", "images", "patients", "by_magnification", "by_subtype",
            "by_subtype_magnification", "converted", "skipped"}``.
        """
        return summarize(self.dataset, self.root, self.records, self.skipped)


def normalize_magnification(mag: str | int) -> str:
    """Canonical magnification string.

    Args:
        mag: ``100``, ``"100"``, ``"100x"`` or ``"100X"``.

    Returns:
        ``"100X"``.

    Raises:
        ValueError: for anything that is not one of 40, 100, 200, 400.

    Example:
        >>> normalize_magnification("200x")
        '200X'
    """
    from breastzoo.data.constants import MAGNIFICATIONS

    text = str(mag).strip().upper().rstrip("X")
    canon = f"{text}X"
    if canon not in MAGNIFICATIONS:
        raise ValueError(
            f"Unknown magnification. Received: mag={mag!r}; expected one of "
            f"{', '.join(m[:-1] for m in MAGNIFICATIONS)}."
        )
    return canon


def summarize(
    dataset: str, root: str, records: Sequence[ImageRecord], skipped: Iterable[Skipped]
) -> dict:
    """Counts of images and patients by magnification and subtype (see DatasetIndex.summary)."""
    from collections import defaultdict

    by_mag: dict[str, dict[str, set | int]] = defaultdict(lambda: {"images": 0, "patients": set()})
    by_sub: dict[str, dict[str, set | int]] = defaultdict(lambda: {"images": 0, "patients": set()})
    grid: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        mag = r.magnification or "-"
        for bucket in (by_mag[mag], by_sub[r.subtype]):
            bucket["images"] += 1
            bucket["patients"].add(r.patient)
        grid[r.subtype][mag] += 1

    def _freeze(d: dict) -> dict:
        return {k: {"images": v["images"], "patients": len(v["patients"])} for k, v in d.items()}

    from breastzoo.data.constants import MAGNIFICATIONS, SUBTYPES

    mag_order = {m: i for i, m in enumerate(MAGNIFICATIONS)}
    sub_order = {s: i for i, s in enumerate(SUBTYPES)}
    return {
        "dataset": dataset,
        "root": root,
        "images": len(records),
        "patients": len({r.patient for r in records}),
        "by_magnification": dict(
            sorted(_freeze(by_mag).items(), key=lambda kv: (mag_order.get(kv[0], 99), kv[0]))
        ),
        "by_subtype": dict(
            sorted(_freeze(by_sub).items(), key=lambda kv: (sub_order.get(kv[0], 99), kv[0]))
        ),
        "by_subtype_magnification": {s: dict(m) for s, m in grid.items()},
        "converted": [{"path": r.path, "note": r.note} for r in records if r.note],
        "skipped": [s.to_dict() for s in skipped],
    }
