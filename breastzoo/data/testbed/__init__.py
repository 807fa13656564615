"""Synthetic BreaKHis-format testbed: the built-in demo data and a controlled test of paper 000.

No real dataset can be downloaded everywhere, so breastzoo writes one that has the exact
BreaKHis archive layout and file-name grammar (the one in :mod:`breastzoo.data.breakhis`)::

    OUT/BreaKHis_v1/histology_slides/breast/{benign,malignant}/SOB/<subtype folder>/
        SOB_<B|M>_<CODE>_<patient>/<MAG>/SOB_<B|M>_<CODE>-<patient>-<mag>-<seq>.png
    OUT/masks/BreaKHis_v1/...same relative path...png     ground-truth lesion masks (0/255)
    OUT/testbed.json                                      manifest (see read_manifest)

It is a *controlled* testbed for paper 000's premise (hard attention: a 112x112 crop at full
resolution in the right place beats resizing the whole image). Testbed v2
(:data:`TESTBED_VERSION`): the lesion covers only 3.5-9% of each image and is placed uniformly
wherever it fits; every subtype's lesion has one common low-pass colour, so the 8 subtypes
differ only in fine morphology on a scale set by the magnification; the normal tissue around
it is drawn alike for every subtype, with a halo (denser stroma, lymphocytes) that fades over
100-200 px from the lesion and tells where it is, not what it is.

Modules, one job each:

- :mod:`~breastzoo.data.testbed.plan`: the sizes (``tiny``, ``demo``, ``full``), patient ids
  and which files a testbed has;
- :mod:`~breastzoo.data.testbed.paint`: drawing primitives (noise, fibres, ellipses, paths);
- :mod:`~breastzoo.data.testbed.canvas`: patient appearance, stain densities, nuclei, RGB;
- :mod:`~breastzoo.data.testbed.tissue`: normal tissue around the lesion;
- :mod:`~breastzoo.data.testbed.subtypes`: the lesion of each subtype;
- :mod:`~breastzoo.data.testbed.render`: one image and its mask, from a seed;
- :mod:`~breastzoo.data.testbed.layout`: manifest and mask paths on disk;
- :mod:`~breastzoo.data.testbed.write`: :func:`synthesize`, workers and the atomic publish.

Everything is deterministic for a seed: the bytes do not depend on the number of workers.

Example:
    >>> from breastzoo.data.testbed import SIZES, synthesize
    >>> SIZES["tiny"].images
    208
    >>> synthesize("/tmp/tb", size="tiny", image_size=(96, 64))["images"]  # doctest: +SKIP
    208
"""

from __future__ import annotations

from breastzoo.data.breakhis import ARCHIVE_NAME
from breastzoo.data.testbed.canvas import PatientStyle, patient_style
from breastzoo.data.testbed.layout import (
    GENERATOR,
    MANIFEST_NAME,
    MASKS_NAME,
    SYNTH_VERSION,
    TESTBED_VERSION,
    mask_path,
    read_manifest,
)
from breastzoo.data.testbed.plan import SIZES, PlannedImage, SizeSpec, get_size, plan
from breastzoo.data.testbed.render import (
    LESION_FRACTION,
    MAG_SCALE,
    NUCLEUS_RADIUS_40X,
    Lesion,
    place_lesion,
    render_image,
    render_planned,
)
from breastzoo.data.testbed.subtypes import LESION_LEVEL
from breastzoo.data.testbed.tissue import HALO_SCALE, halo_density
from breastzoo.data.testbed.write import synthesize

__all__ = [
    "ARCHIVE_NAME",
    "GENERATOR",
    "HALO_SCALE",
    "LESION_FRACTION",
    "LESION_LEVEL",
    "MAG_SCALE",
    "MANIFEST_NAME",
    "MASKS_NAME",
    "NUCLEUS_RADIUS_40X",
    "SIZES",
    "SYNTH_VERSION",
    "TESTBED_VERSION",
    "PatientStyle",
    "PlannedImage",
    "Lesion",
    "SizeSpec",
    "get_size",
    "halo_density",
    "mask_path",
    "patient_style",
    "place_lesion",
    "plan",
    "read_manifest",
    "render_image",
    "render_planned",
    "synthesize",
]
