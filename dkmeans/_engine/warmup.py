"""Load the compiled chunk kernels in the background while a fit reads its store.

The first call of any numba function in a process builds numba's typing context and
loads the function's cached machine code: 0.35-0.5 s on the 2-core benchmark machine,
which a fit used to pay inside its first data pass, after the store had been read.  A
fit that reads a store into this process starts ``in_background(dtype)`` first: one
thread runs every kernel of a fit once on a few rows of that dtype, so the loading
overlaps the read (whose decoding releases the GIL).  A kernel called while the thread
is still loading it waits on numba's compiler lock: never longer than loading it
itself.  The thread is not a daemon: a process that ends sooner waits for it (under a
second) rather than stopping it inside numba's compiler.  Workers of a cluster load
their kernels on their first task.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from . import kernels as K
from . import pruning as P
from . import reductions as R

logger = logging.getLogger(__name__)

_started: set[str] = set()
_lock = threading.Lock()


def in_background(dtype) -> threading.Thread | None:
    """Start loading the kernels for ``dtype`` blocks in a thread, once per
    process and dtype; the thread, or None when it was started before (or the dtype
    has no numba kernels)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        return None
    with _lock:
        if dtype.name in _started:
            return None
        _started.add(dtype.name)
    thread = threading.Thread(target=_load, args=(dtype,), name="dkmeans-warm-up", daemon=False)
    thread.start()
    return thread


def _load(dtype: np.dtype) -> None:
    try:
        run_kernels(dtype)
    except Exception:  # a warm-up must never fail a fit: the pass loads what is missing
        logger.debug("Loading the kernels in the background failed", exc_info=True)


def run_kernels(dtype, n_rows: int = 64, n_features: int = 3, k: int = 3) -> None:
    """Every chunk kernel of a k-means|| fit, once, on ``n_rows`` random rows."""
    rng = np.random.default_rng(0)
    X = rng.random((n_rows, n_features)).astype(dtype)
    shift = np.zeros(n_features)
    centers = X[:k].astype(np.float64)
    first = K.prepare_centers(centers[:1], shift, dtype)
    more = K.prepare_centers(centers[1:], shift, dtype)
    seed = np.random.SeedSequence(0)
    # k-means||: the first round (with the moments), a later round, the weights
    job = R.SeedingJob("round", first, shift, 0, scale=2.0, n_keep=4)
    (_, _), state = R.seeding_jobs_chunk(X, None, [job], [None], [seed], 0, True)
    job = R.SeedingJob("round", more, shift, 1, scale=2.0, n_keep=4)
    (_, _), state = R.seeding_jobs_chunk(X, None, [job], [state], [seed], 0, False)
    job = R.SeedingJob("weights", None, shift, n_candidates=k)
    R.seeding_jobs_chunk(X, None, [job], [state], [seed], 0, False)
    # Lloyd passes: plain, then pruned (a first step, and one that screens its bounds)
    center_set = K.prepare_centers(centers, shift, dtype)
    K.lloyd_step(X, [center_set], shift, None, n_far=k)
    K.farthest(X[:, 0], 2)  # far rows are combined in the data's dtype
    step = P.prepare_step(center_set, shift, None)
    (_, _), bounds = R.pruned_lloyd_chunk(X, None, [step], [None], k)
    moved = K.prepare_centers(centers + 1e-3, shift, dtype)
    R.pruned_lloyd_chunk(X, None, [P.prepare_step(moved, shift, center_set)], [bounds], k)
    # the final label pass
    R.label_chunk(X, None, centers.astype(dtype), center_set, shift)
