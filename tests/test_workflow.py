"""breastzoo.workflow: publishing composed after training, checked before it; no CLI import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from breastzoo import workflow
from breastzoo.configs import preset


@pytest.fixture
def stubbed(monkeypatch):
    """training.fit and publish_run replaced by recorders; returns the calls."""
    import breastzoo.training

    calls: list[tuple[str, object]] = []

    def fake_fit(dataset, **kwargs):
        calls.append(("fit", kwargs))
        return {"run_dir": "runs/x", "metrics": {"irr": 1.0}}

    def fake_publish(run_dir, name, root, log=print):
        calls.append(("publish", (run_dir, name, root)))
        return {"name": name, "version": 1, "path": f"{root}/{name}/1", "root": root}

    monkeypatch.setattr(breastzoo.training, "fit", fake_fit)
    monkeypatch.setattr(workflow, "publish_run", fake_publish)
    return calls


def test_fit_publishes_after_training(stubbed):
    result = workflow.fit("breakhis", config=preset("tiny"), preset="tiny", publish=True,
                          publish_name="tiny_denet", zoo_root="/zoo", log=lambda m: None)
    assert [c[0] for c in stubbed] == ["fit", "publish"]
    assert stubbed[0][1]["preset"] == "tiny" and "publish" not in stubbed[0][1]
    assert stubbed[1][1] == ("runs/x", "tiny_denet", "/zoo")
    assert result["published"]["version"] == 1 and result["metrics"] == {"irr": 1.0}


def test_fit_without_publish_only_trains(stubbed):
    result = workflow.fit("breakhis", config=preset("tiny"), log=lambda m: None)
    assert [c[0] for c in stubbed] == ["fit"] and "published" not in result


def test_publish_mistakes_are_refused_before_training(stubbed):
    with pytest.raises(ValueError, match="trials=2"):
        workflow.fit("breakhis", config=preset("tiny"), trials=2, publish=True)
    with pytest.raises(ValueError):
        workflow.fit("breakhis", config=preset("tiny"), publish=True,
                     publish_name="../../etc/passwd")
    assert stubbed == []


def test_library_modules_import_neither_the_cli_nor_upwards():
    """demo and workflow do not pull in the CLI; training does not pull in the zoo."""
    code = (
        "import sys\n"
        "import breastzoo.training, breastzoo.evaluation.reports\n"
        "assert not any(m.startswith('breastzoo.zoo') for m in sys.modules), 'training->zoo'\n"
        "assert 'breastzoo.workflow' not in sys.modules\n"
        "import breastzoo.demo\n"
        "from breastzoo.workflow import export_model, fit, predict_images, publish_new\n"
        "from breastzoo.zoo import load\n"
        "assert not any(m.startswith('breastzoo.commands') or m == 'breastzoo.cli'\n"
        "               for m in sys.modules), 'library -> CLI'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
