"""The CLI's layout and its quiet defaults: one module per command, every command's help,
Keras progress by terminal, TensorFlow's start-up logs filtered, one magnification parse."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from breastzoo.cli import app
from breastzoo.commands import COMMAND_MODULES
from breastzoo.commands.common import parse_mag
from breastzoo.data.constants import MAGNIFICATIONS
from breastzoo.data.records import Magnification, normalize_magnification
from breastzoo.quiet import is_noise, keras_verbosity

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796172224.275169     533 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1796172224.273668     533 port.cc:153] oneDNN custom operations are on.",
    "E0000 00:00:1796172233.649071     533 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
]


def _all_commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if hasattr(group, "list_commands"):
        for name in group.list_commands(None):  # type: ignore[attr-defined]
            found += _all_commands(group.get_command(None, name), (*path, name))  # type: ignore[attr-defined]
    return found


def test_every_command_module_registers_and_every_help_renders():
    for name in COMMAND_MODULES:
        assert callable(importlib.import_module(f"breastzoo.commands.{name}").register), name
    paths = _all_commands(typer.main.get_command(app))
    names = {p for p in paths if len(p) == 1}
    assert names == {("version",), ("data",), ("fit",), ("evaluate",), ("compare",),
                     ("models",), ("prune",), ("predict",), ("export",), ("zoo",), ("tune",)}
    assert {("data", "synth"), ("data", "index"), ("data", "split")} <= set(paths)
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: breastzoo" in result.output


def test_data_subcommands_keep_their_order():
    group = typer.main.get_command(app).get_command(None, "data")  # type: ignore[attr-defined]
    assert list(group.list_commands(None)) == ["synth", "index", "split"]


def test_importing_the_cli_imports_no_tensorflow():
    code = "import sys, breastzoo.cli; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_keras_verbosity_follows_the_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", _Stream(tty=True))
    assert keras_verbosity() == "auto"
    assert keras_verbosity(quiet=True) == 0
    monkeypatch.setattr(sys, "stdout", _Stream(tty=False))
    assert keras_verbosity() == 2  # one line per epoch in a log file or a pipe
    monkeypatch.setattr(sys, "stdout", object())  # no isatty at all
    assert keras_verbosity() == 2


def test_fit_and_prune_pass_the_verbosity_to_keras(monkeypatch, tmp_path):
    import breastzoo.pruning.run
    import breastzoo.workflow

    seen: dict[str, object] = {}

    def fake_fit(dataset, **kwargs):
        seen.update(kwargs)
        return {"run_dir": str(tmp_path)}

    def fake_prune(source, ratio, **kwargs):
        seen.update(kwargs)
        return {"metrics": {}, **{k: 0 for k in (
            "params_before", "params_after", "macs_before", "macs_after", "irr_before",
            "irr_after", "gzip_bytes_before", "gzip_bytes_after")}, "run_dir": str(tmp_path)}

    monkeypatch.setattr(breastzoo.workflow, "fit", fake_fit)
    monkeypatch.setattr(breastzoo.pruning.run, "prune_run", fake_prune)
    result = runner.invoke(app, ["fit", "breakhis", "--mag", "100x", "--data", "demo"])
    assert result.exit_code == 0, result.output
    assert seen["verbose"] == 2 and seen["mag"] == "100X"  # CliRunner's stdout is no terminal
    result = runner.invoke(app, ["fit", "breakhis", "--mag", "100", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["verbose"] == 0
    result = runner.invoke(app, ["prune", str(tmp_path), "--ratio", "0.5"])
    assert result.exit_code == 0, result.output
    assert seen["verbose"] == 2


@pytest.mark.parametrize("text", [100, "100", "100x", "100X", " 100X ", Magnification.M100])
def test_magnification_parses_every_spelling(text):
    assert Magnification.parse(text) is Magnification.M100
    assert normalize_magnification(text) == "100X" == parse_mag(str(text))
    assert type(normalize_magnification(text)) is str


@pytest.mark.parametrize("text", ["150", "100xx", "x100", "", "40.0", "hundred"])
def test_bad_magnification_is_one_line_naming_the_value(text):
    with pytest.raises(ValueError) as err:
        Magnification.parse(text)
    assert str(err.value) == (f"Unknown magnification. Received: mag={text!r}; expected one "
                              "of 40, 100, 200, 400.")


def test_magnification_members_are_the_dataset_constants():
    assert tuple(Magnification) == MAGNIFICATIONS
    assert [m.power for m in Magnification] == [40, 100, 200, 400]
    assert Magnification.M400.slug == "400x" and parse_mag(None) is None


def test_noise_lines_are_recognised_and_nothing_else():
    assert all(is_noise(line) for line in NOISE)
    assert not is_noise(NOISE[3], level=2)  # ERROR kept unless TF_CPP_MIN_LOG_LEVEL=3
    assert not is_noise("F0000 00:00:1796172233.649071 533 x.cc:1] Check failed: fatal")
    for real in ("Traceback (most recent call last):", "ValueError: bad",
                 "/x.py:3: UserWarning: careful", ""):
        assert not is_noise(real)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=REPO, env={**base, **env}, timeout=120)


def test_filtered_stderr_drops_noise_keeps_the_rest_and_survives_a_crash():
    written = "\n".join([*NOISE, "a real message", "F0000 00:00:1.5 7 x.cc:1] Check failed"])
    out = _run(f"""
        import os
        from breastzoo.quiet import filtered_stderr
        with filtered_stderr(3):
            os.write(2, {(written + chr(10)).encode()!r})
        os.write(2, b"after\\n")
        with filtered_stderr(3):
            os.write(2, b"last words\\n")
            os.abort()
    """)
    assert out.returncode != 0
    assert out.stderr.splitlines() == ["a real message", "F0000 00:00:1.5 7 x.cc:1] Check failed",
                                       "after", "last words"]


def fake_tensorflow(tmp_path: Path, tail: str) -> str:
    """A stand-in ``tensorflow`` package that prints what TensorFlow 2.21 prints while it
    loads, then a line ``kept``, then runs ``tail``; returns the PYTHONPATH that finds it."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        f"import os\nos.write(2, {(chr(10).join(NOISE) + chr(10)).encode()!r})\n"
        f"os.write(2, b'kept\\n')\n{tail}\n")
    return os.pathsep.join([str(tmp_path), str(REPO)])


def test_cli_filters_the_first_tensorflow_import(tmp_path):
    pythonpath = fake_tensorflow(tmp_path, "LEVEL = os.environ['TF_CPP_MIN_LOG_LEVEL']")
    code = """
        import breastzoo.cli, tensorflow, sys
        print(tensorflow.LEVEL, type(tensorflow.__loader__).__name__)
    """
    quiet = _run(code, PYTHONPATH=pythonpath)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines() == ["kept"]
    assert quiet.stdout.split() == ["3", "SourceFileLoader"]
    loud = _run(code, PYTHONPATH=pythonpath, TF_CPP_MIN_LOG_LEVEL="0")
    assert loud.stderr.splitlines() == [*NOISE[1:], "kept"]  # the user's level is kept
    assert loud.stdout.split()[0] == "0"


def test_demo_filters_the_first_tensorflow_import(tmp_path):
    # The demo is not a CLI command, so it installs the same filter itself. The stand-in
    # ``tensorflow`` prints TensorFlow's start-up noise, then stops the demo with an ImportError.
    pythonpath = fake_tensorflow(tmp_path, "raise ImportError('stand-in stops here')")
    out = _run("import breastzoo.demo as d; d.main()", PYTHONPATH=pythonpath)
    assert out.returncode != 0
    lines = out.stderr.splitlines()
    assert "kept" in lines and "stand-in stops here" in out.stderr
    assert not any(is_noise(line) for line in lines), lines
