"""breastzoo."""
