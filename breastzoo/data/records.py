"""The one record type every dataset indexer produces, and the index that holds them.

Every dataset (BreaKHis, BACH, plain class folders, the synthetic testbed) is reduced to a list
of :class:`ImageRecord` plus a list of :class:`Skipped` files, so splits, pipelines and reports
never need to know which dataset they came from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


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


class Magnification(StrEnum):
    """A BreaKHis magnification, the one parse of every ``--mag`` spelling.

    The value is the canonical spelling used in records, manifests and split files
    (``"100X"``); :meth:`parse` accepts ``100``, ``"100"``, ``"100x"`` and ``"100X"``.

    Example:
        >>> Magnification.parse("100x")
        <Magnification.M100: '100X'>
        >>> Magnification.parse(40).slug, Magnification.parse("200").power
        ('40x', 200)
    """

    M40 = "40X"
    M100 = "100X"
    M200 = "200X"
    M400 = "400X"

    @classmethod
    def parse(cls, text: str | int) -> Magnification:
        """The magnification ``text`` names, in any of its spellings.

        Args:
            text: ``100``, ``"100"``, ``"100x"``, ``"100X"`` (surrounding spaces ignored), or a
                :class:`Magnification`.

        Returns:
            The member, e.g. ``Magnification.M100`` (``== "100X"``).

        Raises:
            ValueError: one line naming the bad value and the accepted ones, for anything but
                40, 100, 200 or 400 with an optional ``x``/``X``.

        Example:
            >>> Magnification.parse(" 400X ") == "400X"
            True
        """
        match = _MAG_TEXT.fullmatch(str(text).strip())
        if match is not None:
            try:
                return cls(f"{int(match[1])}X")
            except ValueError:
                pass
        raise ValueError(
            f"Unknown magnification. Received: mag={text!r}; expected one of "
            f"{', '.join(str(m.power) for m in cls)}."
        )

    @property
    def power(self) -> int:
        """The objective's power as a number: ``40`` for ``"40X"``."""
        return int(self.value[:-1])

    @property
    def slug(self) -> str:
        """Lower-case spelling for folder and zoo names: ``"100x"``."""
        return self.value.lower()


_MAG_TEXT = re.compile(r"(\d+)[xX]?")


def normalize_magnification(mag: str | int) -> str:
    """Canonical magnification string (kept for callers; see :meth:`Magnification.parse`).

    Args:
        mag: ``100``, ``"100"``, ``"100x"`` or ``"100X"``.

    Returns:
        ``"100X"`` (a plain ``str``).

    Raises:
        ValueError: for anything that is not one of 40, 100, 200, 400.

    Example:
        >>> normalize_magnification("200x")
        '200X'
    """
    return Magnification.parse(mag).value


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
