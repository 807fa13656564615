"""Clean output for the CLI and the demo: no TensorFlow start-up chatter (CUDA probing,
oneDNN notes), and no Keras progress bars in log files (:func:`keras_verbosity`).

On a machine without a GPU every command used to start with lines such as::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796172224.275169  533 cudart_stub.cc:31] Could not find cuda drivers on ...
    E0000 00:00:1796172233.649071  533 cuda_platform.cc:52] failed call to cuInit: ...

Two things silence them, for the CLI and `make demo` (the library itself only sets level 2):

- ``TF_CPP_MIN_LOG_LEVEL`` is raised from breastzoo's library default ``2`` to ``3``, so
  TensorFlow's C++ INFO, WARNING and ERROR logs (the ``cuInit`` failure) are dropped. A value
  the user set to 0 or 1 is kept (set ``TF_CPP_MIN_LOG_LEVEL=0`` to see everything again).
- While ``tensorflow`` is first imported, file descriptor 2 goes through a small filter
  process: TensorFlow 2.21 writes some lines through absl before absl is initialised, and
  those ignore ``TF_CPP_MIN_LOG_LEVEL``. The filter drops the absl preamble and absl-format
  lines below that level; FATAL lines and every other line (Python warnings, messages of
  other libraries) pass through unchanged, and nothing is lost if the import crashes.

Python exceptions are untouched: a failing import still prints its traceback.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from types import ModuleType

#: The log level the CLI runs TensorFlow at unless the user chose 0 or 1.
CLI_TF_CPP_MIN_LOG_LEVEL = "3"

#: absl's log-line header: severity letter, MMDD, time, thread id, file:line].
ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s:\]]+:\d+\] ")

#: absl's one-time notice that it logs to stderr until initialised.
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written"

# Runs in the filter process (``python -I -S -c``): stdin is what TensorFlow wrote to fd 2,
# stdout is the real stderr. argv[1] is the lowest absl severity kept (0 I, 1 W, 2 E, 3 F).
_FILTER_SOURCE = f"""
import re, sys
keep_from = int(sys.argv[1])
line_re = re.compile({ABSL_LINE.pattern!r}.encode())
preamble = {ABSL_PREAMBLE!r}.encode()
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    m = line_re.match(line)
    if line.startswith(preamble) or (m and "IWEF".index(m.group(1).decode()) < keep_from):
        continue
    out.write(line)
    out.flush()
"""


def is_noise(line: str, level: int = 3) -> bool:
    """Whether the filter drops ``line`` written to stderr during the TensorFlow import.

    Args:
        line: one line of stderr.
        level: ``TF_CPP_MIN_LOG_LEVEL``: absl lines of a lower severity (INFO 0, WARNING 1,
            ERROR 2) are dropped; FATAL is always kept.

    Returns:
        ``True`` for absl's preamble and absl-format lines below ``level``.

    Example:
        >>> is_noise("I0000 00:00:1796172224.275169     533 cudart_stub.cc:31] Could not find")
        True
        >>> is_noise("Traceback (most recent call last):")
        False
    """
    if line.startswith(ABSL_PREAMBLE):
        return True
    match = ABSL_LINE.match(line)
    return bool(match) and "IWEF".index(match.group(1)) < min(level, 3)


def tf_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as a number (``0`` when unset or unreadable).

    Example:
        >>> isinstance(tf_log_level(), int)
        True
    """
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


@contextlib.contextmanager
def filtered_stderr(level: int) -> Iterator[None]:
    """Route file descriptor 2 through the absl-noise filter for the duration of the block.

    Falls back to doing nothing when fd 2 or the interpreter cannot be used that way.

    Args:
        level: absl lines below this severity are dropped (see :func:`is_noise`).

    Example:
        >>> with filtered_stderr(3):
        ...     pass
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER_SOURCE, str(level)],
            stdin=subprocess.PIPE, stdout=saved, stderr=saved, close_fds=True,
        )
    except OSError:
        os.close(saved)
        yield
        return
    assert proc.stdin is not None
    try:
        os.dup2(proc.stdin.fileno(), 2)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        proc.stdin.close()
        proc.wait()


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as usual, and runs its first import inside :func:`filtered_stderr`."""

    def find_spec(self, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # once: later imports find the cached module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader
        level = tf_log_level()

        class QuietLoader(importlib.abc.Loader):
            def create_module(self, spec: ModuleSpec) -> ModuleType | None:
                return original.create_module(spec)

            def exec_module(self, module: ModuleType) -> None:
                # The module keeps its real loader (importlib.resources and pkgutil use it).
                module.__loader__ = original
                if module.__spec__ is not None:
                    module.__spec__.loader = original
                with filtered_stderr(level):
                    original.exec_module(module)

        spec.loader = QuietLoader()
        return spec


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up logs for this process; call before TF is imported.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` to 3 unless the user chose 0 or 1, and filters absl's
    pre-initialisation lines out of stderr during the first ``import tensorflow`` (see the
    module docstring). Does nothing more when TensorFlow is already imported.

    Example:
        >>> quiet_tensorflow()  # doctest: +SKIP
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") in ("2", ""):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = CLI_TF_CPP_MIN_LOG_LEVEL
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def keras_verbosity(quiet: bool = False) -> int | str:
    """Keras ``verbose=`` for ``fit``, ``prune`` and the like, chosen by where stdout goes.

    Keras' progress bar rewrites one line with backspaces and colour codes; in a log file or a
    pipe that is a mess, so there we ask for one line per epoch (``2``) instead.

    Args:
        quiet: print nothing from Keras (for example ``--json``).

    Returns:
        ``0`` when ``quiet``; ``"auto"`` (the progress bar) when stdout is a terminal; else ``2``.

    Example:
        >>> keras_verbosity(quiet=True)
        0
    """
    if quiet:
        return 0
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return "auto" if isatty is not None and isatty() else 2
    except (ValueError, OSError):  # a closed or detached stream is not a terminal
        return 2
