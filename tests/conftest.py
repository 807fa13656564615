"""Shared fixtures: one tiny synthetic BreaKHis-format testbed per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_testbed(tmp_path_factory):
    """Root of a tiny synthetic testbed (140x92 images, 26 patients, masks included)."""
    from breastzoo.data.testbed import synthesize

    root = tmp_path_factory.mktemp("testbed") / "tiny"
    synthesize(root, size="tiny", seed=0, image_size=(140, 92))
    return root
