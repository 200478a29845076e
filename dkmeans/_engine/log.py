"""The ``dkmeans`` logger; ``verbose`` turns on INFO lines to stderr for one call."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys

logger = logging.getLogger("dkmeans")
_progress_stream = contextvars.ContextVar("dkmeans_progress", default=None)


@contextlib.contextmanager
def verbosity(verbose: int):
    """Log at INFO (verbose=1) or DEBUG (verbose>=2) for the duration, to stderr if unset."""
    if not verbose:
        yield
        return
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    old_level = logger.level
    handler = None
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[dkmeans] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old_level)
        if handler is not None:
            logger.removeHandler(handler)


@contextlib.contextmanager
def progress(stream=None):
    """Show a progress bar for every pass over the data made inside the block.

    Bars go to ``stream`` (default: stderr); the CLI turns them on unless ``--quiet``.
    """
    token = _progress_stream.set(stream or sys.stderr)
    try:
        yield
    finally:
        _progress_stream.reset(token)


def progress_stream():
    """Where progress bars go now, or None when they are off."""
    return _progress_stream.get()
