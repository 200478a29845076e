"""Mini-batch k-means: ``partial_fit`` over a stream of chunks, and ``fit`` over a store."""

from __future__ import annotations

import logging
import numbers
import os
import time
from typing import ClassVar

import numpy as np
from sklearn.cluster import KMeans as _SkKMeans

from ._engine import backend as B
from ._engine import driver as D
from ._engine import kernels as K
from ._engine import reductions as R
from ._engine.lloyd import Run, tolerance
from ._engine.parallel import RowBlocks, active_client, single_threaded_blas
from ._engine.validation import (
    Interval,
    OneOf,
    as_generator,
    as_input,
    as_sample_weight,
    check_fitted_input,
    nonfinite_error,
    validate_params,
)
from .cluster import KMeans, _BaseKMeans

__all__ = ["MiniBatchKMeans"]

logger = logging.getLogger("dkmeans")


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means over chunks: one sequential sweep of small batches per epoch.

    Each batch moves its centres to the running mean of every row they have
    attracted so far (scikit-learn's update).  ``partial_fit`` takes one chunk of a
    stream at a time (NumPy, or a dask array whose blocks are read one after
    another); ``fit`` seeds with k-means|| over the whole store, then makes up to
    ``max_iter`` epochs, each reading every block once in a seeded random order, and
    ends with one label pass.  The update order depends only on ``random_state``,
    not on the number of workers.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means||", "k-means++", "random"} or array, default="k-means||"
        For ``fit``; ``partial_fit`` seeds on its first chunk (k-means++ and Lloyd).
    batch_size : int, default=4096
        Rows per update.
    max_iter : int, default=10
        Epochs of ``fit`` (passes over the data).
    tol : float, default=1e-4
        ``fit`` stops when an epoch moves the centres by at most ``tol`` times the
        mean feature variance (summed squared shift).
    random_state : int, Generator or None
    persist : "auto" or bool, default="auto"
    verbose : int, default=0

    Attributes
    ----------
    cluster_centers_, labels_ (``fit`` only), inertia_ (``fit`` only), n_iter_,
    n_steps_ : int, batches seen.
    counts_ : ndarray of shape (n_clusters,), weight each centre has absorbed.
    n_passes_ : int (``fit``)

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans import MiniBatchKMeans
    >>> rng = np.random.default_rng(0)
    >>> mbk = MiniBatchKMeans(2, batch_size=50, random_state=0)
    >>> for _ in range(3):
    ...     chunk = np.r_[rng.normal(0, 1, (100, 2)), rng.normal(10, 1, (100, 2))]
    ...     mbk = mbk.partial_fit(chunk)
    >>> sorted(np.round(mbk.cluster_centers_[:, 0]).tolist())
    [0.0, 10.0]
    """

    _constraints: ClassVar[dict] = {
        "n_clusters": [Interval(numbers.Integral, 1, None)],
        "init": KMeans._constraints["init"],
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "tol": [Interval(numbers.Real, 0, None)],
        "random_state": KMeans._constraints["random_state"],
        "persist": [OneOf("auto", True, False)],
        "verbose": [Interval(numbers.Integral, 0, None)],
        "oversampling_factor": KMeans._constraints["oversampling_factor"],
        "init_rounds": KMeans._constraints["init_rounds"],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means||",
        batch_size=4096,
        max_iter=10,
        tol=1e-4,
        random_state=None,
        persist="auto",
        verbose=0,
        oversampling_factor=2.0,
        init_rounds=5,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.persist = persist
        self.verbose = verbose
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds

    # ------------------------------------------------------------------ updates
    def _batches(self, block, weight, rng):
        """Update the centres with ``block`` cut into batches in a seeded random order."""
        n = block.shape[0]
        order = rng.permutation(n)
        for start in range(0, n, self.batch_size):
            take = np.sort(order[start : start + self.batch_size])
            w = None if weight is None else B.take(weight, take)
            batch = B.take(block, take)  # a copy, contiguous, in the block's library
            self.cluster_centers_, self.counts_, _ = R.minibatch_update(
                batch, w, self.cluster_centers_, self.counts_
            )
            self.n_steps_ += 1

    def _blocks(self, rows: RowBlocks, order):
        """Blocks in ``order``, read a few at a time (reads overlap; updates stay in order)."""
        cores = sum(rows.client.nthreads().values()) if rows.client else os.cpu_count() or 1
        ahead = 2 * cores
        for start in range(0, len(order), ahead):
            group = order[start : start + ahead]
            yield from rows.fetch_blocks(group)

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centres with one chunk of a stream.

        The first call seeds the centres with the best of three k-means++ + Lloyd
        runs on this chunk (it needs at least ``n_clusters`` rows).

        Parameters
        ----------
        X : array-like or dask array of shape (n_rows, n_features)
        sample_weight : array-like of shape (n_rows,), optional

        Returns
        -------
        self
        """
        validate_params(self, self._constraints)
        first = not hasattr(self, "cluster_centers_")
        inp = as_input(X) if first else check_fitted_input(self, X)
        rows = RowBlocks(inp.array, as_sample_weight(sample_weight, inp.array), active_client())
        if not hasattr(self, "_rng"):
            self._rng = as_generator(self.random_state)
        with single_threaded_blas():
            for block, weight in self._blocks(rows, range(rows.n_blocks)):
                xp = B.namespace(block)
                if not bool(xp.all(xp.isfinite(block))):
                    raise nonfinite_error()
                if first:
                    self._start(block, weight, inp)
                    first = False
                self._batches(block, weight, self._rng)
        return self

    def _start(self, block, weight, inp) -> None:
        if block.shape[0] < self.n_clusters:
            raise ValueError(
                f"The first chunk has {block.shape[0]} rows; partial_fit needs at least "
                f"n_clusters={self.n_clusters} to seed the centres."
            )
        seed = int(self._rng.integers(2**31 - 1))
        # k-means++ restarts refined by Lloyd on the first chunk: mini-batch updates
        # cannot leave a poor start, so it pays to begin well.
        start = _SkKMeans(self.n_clusters, n_init=3, random_state=seed)
        block, weight = B.to_host(block), B.to_host(weight)  # scikit-learn: on the host
        centers = start.fit(block, sample_weight=weight).cluster_centers_
        self.cluster_centers_ = centers.astype(block.dtype)
        self.counts_ = np.zeros(self.n_clusters)
        self.n_steps_ = 0
        self.n_iter_ = 0
        self.n_features_in_ = inp.n_features
        if inp.feature_names is not None:
            self.feature_names_in_ = inp.feature_names

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, sample_weight=None):
        """Seed over the store, then up to ``max_iter`` epochs of mini-batches, then labels.

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        inp = as_input(X)
        spec = self._fit_spec(inp, self.n_clusters, n_init=1)
        rng = as_generator(self.random_state)
        with single_threaded_blas():
            rows, persisted = D.prepare(inp, sample_weight, spec, active_client())
            if not (persisted or inp.in_memory):
                D.warn_if_seeding_streams(spec, self.n_clusters, stacklevel=3)
            (run,), moments = D.seed(rows, spec, [self.n_clusters], [rng])
            n_seeding = rows.n_passes
            if moments is None:
                moments = rows.moments_pass("minibatch-moments")
            tol = tolerance(self.tol, moments)
            self.cluster_centers_ = run.centers
            self.counts_ = np.zeros(self.n_clusters)
            self.n_steps_ = 0
            epoch_rng = rng.spawn(1)[0]
            best = Run(run.centers)
            for epoch in range(1, self.max_iter + 1):
                start = self.cluster_centers_.astype(np.float64)
                for block, weight in self._blocks(rows, epoch_rng.permutation(rows.n_blocks)):
                    self._batches(block, weight, epoch_rng)
                rows.n_passes += 1
                shift = float(((self.cluster_centers_ - start) ** 2).sum())
                best = Run(self.cluster_centers_, epoch, shift <= tol,
                           [*best.history, (np.nan, shift, 0.0)])  # fmt: skip
                logger.info("mini-batch epoch %d: centre shift %.3g", epoch, shift)
                if best.converged:
                    break
            data_shift = K.choose_shift(moments.mean, moments.variance)
            labels, assignment = D.final_labels(inp, rows, best.centers, data_shift)
        counts = self.counts_
        self._set_fitted(inp, rows, best, labels, assignment, persisted=persisted,
                         n_seeding_passes=n_seeding, stacklevel=3)  # fmt: skip
        self.counts_ = counts
        logger.info("mini-batch fit: %d epochs, %.3fs", self.n_iter_, time.perf_counter() - t0)
        return self
