"""The ``dkmeans`` logger; ``verbose`` turns on INFO lines to stderr for one call."""

from __future__ import annotations

import contextlib
import logging

logger = logging.getLogger("dkmeans")


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
