"""A KerasTuner grid search that survives being resumed.

KerasTuner 1.4.8's ``GridSearchOracle`` keeps its walk through the grid (the trials sorted by
their values, and the queue of trials whose successor is still to be created) only in memory:
``get_state`` does not save it. After a resume the first finished trial asks for its successor
in an empty list and the search dies with ``KeyError: '<trial id>'``. :class:`ResumableGridOracle`
rebuilds both from the reloaded trials, which is all the grid walk depends on. Upstream:
keras-team/keras-tuner#1055 (open; fix proposed in #1056).

Example:
    >>> tuner = grid_search(hypermodel=hm, objective="val_accuracy",
    ...                     directory="runs/tune/x", project_name="keras_tuner")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import Any

import keras_tuner


class ResumableGridOracle(keras_tuner.oracles.GridSearchOracle):
    """``GridSearchOracle`` whose grid walk is rebuilt when a study is reloaded."""

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore the base state, then the sorted trial list and the successor queue."""
        super().set_state(state)
        ordered = self._sorted_trial_ids()
        # The list class is private to KerasTuner; reuse the type of the one __init__ made.
        self._ordered_ids = type(self._ordered_ids)()
        for trial_id in ordered:
            self._ordered_ids.insert(trial_id)  # appends at the rear
        # Every known trial may still have an untried successor; populate_space skips those
        # whose successor already exists (pushing an id twice is harmless, see end_trial).
        self._populate_next = list(ordered)

    def _sorted_trial_ids(self) -> list[str]:
        def compare(a: str, b: str) -> int:
            return self._compare(self.trials[a].hyperparameters.values,
                                 self.trials[b].hyperparameters.values)

        return sorted(self.trials, key=functools.cmp_to_key(compare))


def grid_search(hypermodel: Any, objective: Any, max_trials: int | None = None,
                seed: int | None = None, max_consecutive_failed_trials: int = 3,
                **tuner_kwargs: Any) -> keras_tuner.Tuner:
    """A ``keras_tuner.GridSearch`` equivalent that resumes (see module docstring).

    Args:
        hypermodel: the ``keras_tuner.HyperModel``.
        objective: objective name or ``keras_tuner.Objective``.
        max_trials: cap on trials; ``None`` walks the whole grid.
        seed: oracle seed.
        max_consecutive_failed_trials: stop after this many failed trials in a row.
        **tuner_kwargs: ``keras_tuner.Tuner`` arguments (directory, project_name, overwrite,
            executions_per_trial, ...).

    Example:
        >>> grid_search(hm, "val_accuracy", directory="out", project_name="kt")  # doctest: +SKIP
    """
    oracle = ResumableGridOracle(
        objective=objective, max_trials=max_trials, seed=seed,
        max_consecutive_failed_trials=max_consecutive_failed_trials)
    return keras_tuner.Tuner(oracle=oracle, hypermodel=hypermodel, **tuner_kwargs)
