"""Which files a testbed has: its sizes (tiny, demo, full), patient ids and per-patient counts.

A *size* says how many patients and images per subtype and magnification a testbed has; the
``full`` size has BreaKHis's exact counts (paper 000's Table II). :func:`plan` turns a size and
a seed into the list of files, named by the one BreaKHis grammar in
:mod:`breastzoo.data.breakhis`, without rendering anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from breastzoo.data.breakhis import archive_relpath
from breastzoo.data.constants import BREAKHIS_COUNTS, MAGNIFICATIONS, SUBTYPES


@dataclass(frozen=True)
class SizeSpec:
    """How many patients and images a testbed has.

    Args:
        name: size name (``"tiny"``, ``"demo"``, ``"full"``).
        description: one line for ``--help`` and the docs.
        counts: subtype -> (patients, images per magnification 40X/100X/200X/400X).
        spread: log-normal sigma of per-patient image weights (0 = every patient equal).
        group_rate: chance that a patient beyond the third of a subtype joins another
            patient's numeric core (``14-22549AB`` / ``14-22549CD``).
        min_share: each patient gets at least this share of the mean images per patient.

    Example:
        >>> SIZES["tiny"].images, SIZES["tiny"].patients
        (208, 26)
    """

    name: str
    description: str
    counts: dict[str, tuple[int, tuple[int, int, int, int]]]
    spread: float = 0.5
    group_rate: float = 0.25
    min_share: float = 0.35

    @property
    def images(self) -> int:
        """Total number of images."""
        return sum(sum(per_mag) for _, per_mag in self.counts.values())

    @property
    def patients(self) -> int:
        """Total number of patients."""
        return sum(n for n, _ in self.counts.values())


def _full_counts() -> dict[str, tuple[int, tuple[int, int, int, int]]]:
    return {s: (int(c["patients"]), tuple(c["images"])) for s, c in BREAKHIS_COUNTS.items()}


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(
        "tiny",
        "for tests: 3-4 patients per subtype, 2 images per patient and magnification",
        # A and DC get a fourth patient sharing a numeric core with another one, so the
        # grouping of related slides is exercised while every subtype keeps 3 groups.
        {s: ((4, (8, 8, 8, 8)) if s in ("A", "DC") else (3, (6, 6, 6, 6))) for s in SUBTYPES},
        spread=0.0,
        group_rate=1.0,
        min_share=1.0,
    ),
    "demo": SizeSpec(
        "demo",
        "what `make demo` trains on: 6 patients per subtype, 304 images per magnification",
        {s: (6, (38, 38, 38, 38)) for s in SUBTYPES},
        spread=0.4,
        group_rate=0.25,
        min_share=0.4,
    ),
    "full": SizeSpec(
        "full",
        "the exact BreaKHis counts: 82 patients, 7909 images (1995/2081/2013/1820)",
        _full_counts(),
        spread=0.5,
        group_rate=0.25,
        min_share=0.35,
    ),
}


@dataclass(frozen=True)
class PlannedImage:
    """One file of a testbed (what :func:`plan` returns).

    Args:
        subtype: subtype code (``"DC"``).
        patient: patient id (``"14-22549AB"``).
        magnification: ``"40X"`` .. ``"400X"``.
        seq: sequence number within the patient and magnification (1-based).
        relpath: path relative to the testbed root, starting with ``BreaKHis_v1/``.
    """

    subtype: str
    patient: str
    magnification: str
    seq: int
    relpath: str


def get_size(size: str) -> SizeSpec:
    """The :class:`SizeSpec` called ``size``.

    Args:
        size: ``"tiny"``, ``"demo"`` or ``"full"``.

    Raises:
        ValueError: unknown size.

    Example:
        >>> get_size("demo").images
        1216
    """
    if size not in SIZES:
        raise ValueError(
            f"Unknown testbed size. Received: size={size!r}; expected one of {', '.join(SIZES)}"
        )
    return SIZES[size]


# Suffix patterns seen in real BreaKHis ids (14-22549AB / 14-22549CD / 14-22549G, 14-14134 /
# 14-14134E, ...). Members of a group share year and numeric core.
_GROUP_SUFFIXES = (("AB", "CD", "G"), ("", "E", "F"), ("A", "B", "C"), ("CD", "EF", "GH"))
_SINGLE_SUFFIXES = ("", "", "", "", "", "AB", "CD", "E", "F", "G", "D")


def _patient_ids(spec: SizeSpec, rng: np.random.Generator) -> dict[str, list[str]]:
    """Patient ids per subtype, with some groups sharing a numeric core within a subtype."""
    used_cores: set[int] = set()
    out: dict[str, list[str]] = {}
    for subtype in SUBTYPES:
        n = spec.counts[subtype][0]
        base = min(n, 3)  # at least 3 independent groups, so train/val/test all get one
        extra = int(rng.binomial(n - base, spec.group_rate)) if n > base else 0
        n_groups = n - extra
        sizes = [1] * n_groups
        for _ in range(extra):
            # Groups of at most 3 related slides, as in the real archive.
            candidates = [i for i, k in enumerate(sizes) if k < 3]
            sizes[int(rng.choice(candidates))] += 1
        ids: list[str] = []
        for size in sizes:
            while True:
                digits = int(rng.integers(3, 6))
                core = int(rng.integers(10 ** (digits - 1), 10**digits))
                if core not in used_cores:
                    used_cores.add(core)
                    break
            year = str(rng.choice(["13", "14", "14", "14", "15"]))
            if size == 1:
                suffixes: tuple[str, ...] = (str(rng.choice(_SINGLE_SUFFIXES)),)
            else:
                pattern = _GROUP_SUFFIXES[int(rng.integers(len(_GROUP_SUFFIXES)))]
                suffixes = pattern[:size]
            ids.extend(f"{year}-{core}{suffix}" for suffix in suffixes)
        out[subtype] = ids
    return out


def _allocate(total: int, weights: np.ndarray, minimum: int) -> list[int]:
    """Split ``total`` into integer parts >= ``minimum`` proportional to ``weights``."""
    n = len(weights)
    minimum = min(minimum, total // n)
    rest = total - minimum * n
    share = weights / weights.sum() * rest
    parts = np.floor(share).astype(int)
    # Largest remainders get the leftover images (ties broken by index: deterministic).
    order = np.argsort(-(share - parts), kind="stable")
    parts[order[: rest - int(parts.sum())]] += 1
    return [int(p) + minimum for p in parts]


def plan(size: str = "demo", seed: int = 0) -> list[PlannedImage]:
    """Every file a testbed will contain, without rendering anything.

    Args:
        size: ``"tiny"``, ``"demo"`` or ``"full"`` (see :data:`SIZES`).
        seed: generator seed (patient ids and per-patient counts depend on it).

    Returns:
        Planned images sorted by path. Counts per subtype and magnification are exactly the
        size's; images are spread unevenly over a subtype's patients (except ``tiny``).

    Raises:
        ValueError: unknown size.

    Example:
        >>> len(plan("full"))
        7909
    """
    spec = get_size(size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    ids = _patient_ids(spec, rng)
    out: list[PlannedImage] = []
    for subtype in SUBTYPES:
        patients = ids[subtype]
        n, per_mag = spec.counts[subtype]
        weights = np.exp(rng.normal(0.0, spec.spread, n)) if spec.spread > 0 else np.ones(n)
        for m, mag in enumerate(MAGNIFICATIONS):
            # The same patients are large everywhere, with a little per-magnification jitter.
            w = weights * (np.exp(rng.normal(0.0, 0.15, n)) if spec.spread > 0 else 1.0)
            minimum = max(1, int(spec.min_share * per_mag[m] / n))
            for patient, count in zip(patients, _allocate(per_mag[m], w, minimum), strict=True):
                for seq in range(1, count + 1):
                    out.append(
                        PlannedImage(
                            subtype, patient, mag, seq, archive_relpath(subtype, patient, mag, seq)
                        )
                    )
    out.sort(key=lambda p: p.relpath)
    return out

