"""Shared fixtures, one per test session: a tiny synthetic BreaKHis-format testbed, and one
tiny DeNet+SaNet run trained and published with ``fit --publish`` (the zoo tests copy its
version folder; the training tests check its run folder)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

NAME = "tiny_denet"


@pytest.fixture(scope="session")
def tiny_testbed(tmp_path_factory):
    """Root of a tiny synthetic testbed (140x92 images, 26 patients, masks included)."""
    from breastzoo.data.testbed import synthesize

    root = tmp_path_factory.mktemp("testbed") / "tiny"
    synthesize(root, size="tiny", seed=0, image_size=(140, 92))
    return root


@pytest.fixture(scope="session")
def published(tiny_testbed, tmp_path_factory):
    """``(zoo root, run folder)``: ``breastzoo fit ... --config tiny --publish`` on the tiny
    testbed, publishing version 1 of ``tiny_denet`` with the real SavedModel writer."""
    from breastzoo.cli import app

    base = tmp_path_factory.mktemp("published")
    root, run = base / "zoo", base / "run"
    result = CliRunner().invoke(app, [
        "fit", "breakhis", "--mag", "100", "--data", str(tiny_testbed), "--config", "tiny",
        "--out", str(run), "--publish", "--name", NAME, "--json",
    ], env={"BREASTZOO_ZOO": str(root)})
    assert result.exit_code == 0, result.output
    assert (root / NAME / "1" / "SHA256SUMS").is_file()
    return root, run
