"""Zoo fixtures: one tiny DeNet+SaNet run trained and published (via `fit --publish`) per
session; tests copy its version folder instead of publishing again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

NAME = "tiny_denet"


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
