"""Logging, ``verbose`` and progress bars.

Every module logs to its own logger under ``dkmeans`` (``logging.getLogger(__name__)``)
and the library never adds a handler or changes a level: that is the application's
choice (the CLI makes it).  ``verbose`` is scikit-learn's: for the duration of one
call, the fit's progress lines are also printed to stdout.  It lives in a context
variable, so concurrent fits in other threads keep their own setting.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys

_verbose = contextvars.ContextVar("dkmeans_verbose", default=0)
_progress_stream = contextvars.ContextVar("dkmeans_progress", default=None)


@contextlib.contextmanager
def verbosity(verbose: int):
    """Print the progress lines of level <= ``verbose`` for the duration (an enclosing
    call's higher level is kept)."""
    token = _verbose.set(max(int(verbose or 0), _verbose.get()))
    try:
        yield
    finally:
        _verbose.reset(token)


def report(logger: logging.Logger, msg: str, *args, verbose: int = 1) -> None:
    """A progress line: logged at INFO on ``logger``, and printed to stdout when the
    call runs with ``verbose >= verbose`` (1: scikit-learn's lines, 2: more detail)."""
    logger.info(msg, *args)
    if _verbose.get() >= verbose:
        print(msg % args if args else msg, flush=True)


@contextlib.contextmanager
def progress(stream=None, minimum: float = 0.5):
    """Show a progress bar, named after its pass, for every pass over the data made
    inside the block (on local schedulers, for passes longer than ``minimum`` seconds).

    Bars go to ``stream`` (default: stderr); the CLI turns them on unless ``--quiet``.
    """
    token = _progress_stream.set((stream or sys.stderr, minimum))
    try:
        yield
    finally:
        _progress_stream.reset(token)


def progress_stream():
    """Where progress bars go now, or None when they are off."""
    current = _progress_stream.get()
    return None if current is None else current[0]


_PASS_LABELS = (
    (re.compile(r"^lloyd-(\d+)$"), r"Lloyd \1"),
    (re.compile(r"^(\w+)-lloyd-(\d+)$"), r"\1 Lloyd \2"),
    (re.compile(r"^kmeans-plusplus-(\d+)$"), r"k-means++ centre \1"),
    (re.compile(r"^kmeans-parallel-gather-(\d+)$"), r"seeding round \1, gathering"),
    (re.compile(r"^kmeans-parallel-weights$"), "seeding weights"),
)


def pass_label(name: str) -> str:
    """The name a progress bar shows for a pass (``lloyd-7`` -> ``Lloyd 7``)."""
    for pattern, label in _PASS_LABELS:
        if pattern.match(name):
            return pattern.sub(label, name)
    return name.replace("-", " ")


def _line(label: str, frac: float, elapsed: str, width: int) -> str:
    bar = "#" * int(width * frac)
    return f"\r{label:<24} [{bar:<{width}}] {int(100 * frac):3d}% | {elapsed}"


def local_bar(label: str, stream):
    """dask's ProgressBar for the local schedulers, showing ``label``."""
    from dask.diagnostics import ProgressBar
    from dask.utils import format_time

    class _Bar(ProgressBar):
        def _draw_bar(self, frac, elapsed):
            with contextlib.suppress(ValueError):
                self._file.write(_line(label, frac, format_time(elapsed), self._width))
                self._file.flush()

    current = _progress_stream.get()
    return _Bar(out=stream, minimum=0.5 if current is None else current[1], width=30)


def cluster_bar(futures, label: str, stream) -> None:
    """distributed's text progress bar over ``futures`` (blocks until they finish),
    showing ``label``, written to ``stream``."""
    from dask.utils import format_time
    from distributed.diagnostics.progressbar import TextProgressBar

    class _Bar(TextProgressBar):
        def _draw_bar(self, remaining, all, **kwargs):
            frac = (1 - remaining / all) if all else 1.0
            with contextlib.suppress(ValueError):
                stream.write(_line(label, frac, format_time(self.elapsed), self.width))
                stream.flush()

        def _draw_stop(self, **kwargs):  # keep the finished bar on its line
            self._draw_bar(0, 1)
            stream.write("\n")

    with contextlib.redirect_stdout(stream):
        _Bar(futures, complete=True, width=30)
