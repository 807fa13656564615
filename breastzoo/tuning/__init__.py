"""Hyperparameter studies with KerasTuner: study files, HyperModels, the study runner.

``breastzoo tune tuning/roi_patch.yaml --data demo --config demo`` runs paper 000's
ROI-count x patch-size grid; see :mod:`breastzoo.tuning.runner` for the output folder and
docs/tuning.md for the studies. The HyperModels import KerasTuner and TensorFlow, so they are
imported from their module, not here.
"""

from breastzoo.tuning.studies import Study, load_study, parse_study

__all__ = ["Study", "load_study", "parse_study"]
