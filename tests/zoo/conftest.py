"""Zoo fixtures: tests copy the version folder of the session's published tiny DeNet+SaNet
run (``published``, tests/conftest.py) instead of publishing again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import NAME  # noqa: F401  (the published model's name)


@pytest.fixture
def zoo_copy(published, tmp_path):
    """A private copy of the published zoo (tests may tamper with it)."""
    root, run = published
    dest = tmp_path / "zoo"
    shutil.copytree(root, dest)
    for path in dest.rglob("*"):  # published files are read-only; tests modify copies
        if path.is_file():
            path.chmod(0o644)
    return dest


@pytest.fixture
def fast_export(monkeypatch):
    """Replace the (slow) SavedModel writer with a stub that writes a placeholder file."""
    from breastzoo.zoo import publish

    def stub(model, directory: Path) -> str:
        (Path(directory) / "saved_model.pb").write_bytes(b"stub savedmodel")
        return "stub"

    monkeypatch.setattr(publish, "export_savedmodel", stub)
    return stub
