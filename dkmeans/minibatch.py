"""Mini-batch k-means: ``partial_fit`` over a stream of chunks, and ``fit`` over a store."""

from __future__ import annotations

import logging
import numbers
import os
import time
import warnings
from typing import ClassVar

import numpy as np
from sklearn.cluster import KMeans as _SkKMeans
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning

from ._engine import backend as B
from ._engine import driver as D
from ._engine import kernels as K
from ._engine import reductions as R
from ._engine.errors import NotEnoughDataError
from ._engine.lloyd import Run, tolerance
from ._engine.log import report, verbosity
from ._engine.parallel import RowBlocks, active_client, single_threaded_blas
from ._engine.seeding import check_finite
from ._engine.validation import (
    Interval,
    IsInstance,
    OneOf,
    as_generator,
    as_input,
    as_sample_weight,
    check_fitted_input,
    validate_params,
)
from .cluster import _LABEL_PASS_ATTRIBUTES, KMeans, _BaseKMeans

__all__ = ["MiniBatchKMeans"]

logger = logging.getLogger(__name__)

_NONE = IsInstance(type(None), label="None")


class _EarlyStop:
    """scikit-learn's stop on the smoothed batch inertia, for ``fit``.

    The mean inertia of each batch (before its update, per unit of weight) feeds an
    exponentially weighted average with ``alpha = 2·batch_rows / (n_samples + 1)``; the
    first batch is skipped (its inertia is the seeding's).  ``stale`` counts the
    batches since the average last reached a new minimum.
    """

    def __init__(self, n_samples: int, patience: int | None):
        self.n_samples, self.patience = n_samples, patience
        self.steps, self.stale = 0, 0
        self.ewa = self.ewa_min = self.last = None
        self.armed = False  # fit arms it at the end of the first epoch

    def update(self, cost: float, weight: float, n_rows: int) -> None:
        self.steps += 1
        if weight <= 0:
            return
        self.last = mean = cost / weight
        if self.steps == 1:
            return
        alpha = min(2.0 * n_rows / (self.n_samples + 1), 1.0)
        self.ewa = mean if self.ewa is None else self.ewa * (1 - alpha) + mean * alpha
        if self.ewa_min is None or self.ewa < self.ewa_min:
            self.ewa_min, self.stale = self.ewa, 0
        else:
            self.stale += 1

    @property
    def done(self) -> bool:
        return self.patience is not None and self.stale >= self.patience

    @property
    def mean_inertia(self) -> float:
        """The smoothed mean batch inertia (the last batch's before there is one)."""
        value = self.ewa if self.ewa is not None else self.last
        return float("nan") if value is None else float(value)


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means over chunks: one sequential sweep of small batches per epoch.

    Each batch moves its centres to the running mean of every row they have
    attracted so far (scikit-learn's update), and, as scikit-learn does, centres that
    have attracted too little weight are moved to rows of the current batch
    (``reassignment_ratio``).  ``partial_fit`` takes one chunk of a stream at a time
    (NumPy, or a dask array whose blocks are read one after another); ``fit`` seeds
    with k-means|| over the whole store, then makes up to ``max_iter`` epochs, each
    reading every block once in a seeded random order, and ends with one label pass.
    The update order and every random draw depend only on ``random_state``, not on
    the number of workers.

    Differences from :class:`sklearn.cluster.MiniBatchKMeans`: ``fit`` reads the
    data as epochs over blocks (each block cut into batches in a random order)
    instead of drawing every batch from all rows, so the data need not be in
    memory, and neither reassignment nor ``max_no_improvement`` acts before its
    first epoch has read every block; ``partial_fit`` cuts its chunk into batches
    of ``batch_size`` rows instead of taking it as one batch; reassigned centres go
    to rows drawn by squared distance, not uniformly; each string init is refined
    by Lloyd on its ``init_size`` rows; ``tol`` compares whole epochs.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {"k-means||", "k-means++", "random"} or ndarray of shape \
(n_clusters, n_features), default="k-means||"
        ``fit`` with ``"k-means||"`` seeds over all rows (``init_rounds + 1`` data
        passes).  Otherwise, and in the first ``partial_fit``, each of the ``n_init``
        inits seeds on ``init_size`` rows drawn at random: ``"k-means++"`` (also what
        ``"k-means||"`` does on rows in memory) or ``"random"`` rows (drawn ∝
        ``sample_weight``), then Lloyd on those rows.  An array gives the initial
        centres as they are.
    n_init : "auto" or int, default="auto"
        Number of inits; the one with the lowest inertia on ``init_size`` other rows
        drawn at random is kept, and only it is run (as scikit-learn's).  ``"auto"``
        is 3 for ``init="random"`` and 1 otherwise: ``"k-means++"`` and an array as
        in scikit-learn, and ``"k-means||"``, which already draws many candidates
        from all rows.  In ``fit`` the ``"k-means||"`` inits share their data passes.
        An array with ``n_init`` above 1 warns and is used once.
    batch_size : int, default=4096
        Rows per update.
    max_iter : int, default=10
        Epochs of ``fit`` (passes over the data).
    tol : float, default=1e-4
        ``fit`` stops when an epoch moves the centres by at most ``tol`` times the
        mean feature variance (summed squared shift).  0 disables this test.
    max_no_improvement : int or None, default=10
        ``fit`` stops when the smoothed batch inertia (an exponentially weighted
        average of each batch's mean inertia per unit of weight, as scikit-learn's)
        has not reached a new minimum for this many consecutive batches.  The stop
        waits for the end of the first epoch, so every block is seen at least once;
        if centres are then due for reassignment (see ``reassignment_ratio``), neither
        this nor ``tol`` ends the fit before the second epoch has moved them.  None
        disables it.
    init_size : int or None, default=None
        Rows each init seeds on (and rows that compare the ``n_init`` inits):
        ``3 * batch_size`` if None (at least ``3 * n_clusters``), at most the rows
        available: all rows in ``fit``, the first block of the first ``partial_fit``.
        A value below ``n_clusters`` warns and is replaced by ``3 * n_clusters``.
    reassignment_ratio : float, default=0.01
        Centres that attract too little weight are moved, as in scikit-learn: after
        the update of a batch, every ``10 * n_clusters`` rows (and at every batch
        while some centre has attracted nothing), the centres whose accumulated
        weight (``counts_``) is below ``reassignment_ratio`` times the largest move to
        rows of that batch, at most half as many as the batch has rows (the lightest
        first), and their weight is set to the smallest weight of the centres kept.
        The rows are drawn one by one with probability ∝ weight × squared distance
        to the nearest kept centre (before the batch's update) or row drawn so far,
        at most one among the rows of each kept centre while others are left.  In
        ``fit`` reassignment begins with the second epoch: blocks come in order, and
        a centre of rows that only later blocks hold would look unused.  Higher
        values reassign more readily; 0 never reassigns.
    compute_labels : bool, default=True
        ``fit``: make the final label pass (``labels_``, ``inertia_``,
        ``cluster_sizes_``, ``simplified_silhouette_``); without it ``inertia_`` is the
        smoothed batch inertia times the total weight.  ``partial_fit``: ``labels_``
        and ``inertia_`` of the data of the call, from the centres after it (one more
        read of a dask chunk).
    random_state : int, numpy.random.Generator or None, default=None
        Seeds every random draw (inits, batch order, reassignment).
    persist : "auto" or bool, default="auto"
        Keep the data in memory after the first read (``fit``).
    verbose : int, default=0
        Print progress to stdout for this call, as scikit-learn does (1: a line per
        epoch, 2: more detail).  The lines are also logged at INFO on the module's
        logger whatever ``verbose`` is; no logger is configured.
    oversampling_factor : float, default=2.0
        k-means|| draws about ``oversampling_factor * n_clusters`` candidates a round.
    init_rounds : int, default=5
        k-means|| rounds (data passes).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray or dask array of shape (n_samples,)
        ``fit``: of every row; ``partial_fit``: of the rows of the last call (with
        ``compute_labels``).
    inertia_ : float
        Sum of (weighted) squared distances to the nearest centre, of the same rows
        as ``labels_`` (after ``fit`` with ``compute_labels=False``: estimated from
        the smoothed batch inertia).
    n_iter_ : int
        Epochs ``fit`` began (an epoch cut short by ``max_no_improvement`` counts).
    n_steps_ : int
        Batches processed (by ``fit``, or by every ``partial_fit`` so far).
    counts_ : ndarray of shape (n_clusters,)
        Weight each centre has absorbed (reset on reassignment, see above).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has feature names.
    n_passes_ : int
        ``fit``: passes over the data (seeding, a fetch of init rows, epochs, labels).
    n_seeding_passes_ : int
        ``fit``: those of ``n_passes_`` spent choosing the initial centres.

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans import MiniBatchKMeans
    >>> rng = np.random.default_rng(0)
    >>> mbk = MiniBatchKMeans(2, batch_size=50, random_state=0)
    >>> for _ in range(3):
    ...     chunk = np.r_[rng.normal(0, 1, (100, 2)), rng.normal(10, 1, (100, 2))]
    ...     mbk = mbk.partial_fit(chunk)
    >>> sorted(round(float(c)) for c in mbk.cluster_centers_[:, 0])
    [0, 10]
    >>> bool((mbk.labels_ == mbk.predict(chunk)).all())
    True
    """

    _constraints: ClassVar[dict] = {
        "n_clusters": [Interval(numbers.Integral, 1, None)],
        "init": KMeans._constraints["init"],
        "n_init": KMeans._constraints["n_init"],
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "tol": [Interval(numbers.Real, 0, None)],
        "max_no_improvement": [_NONE, Interval(numbers.Integral, 0, None)],
        "init_size": [_NONE, Interval(numbers.Integral, 1, None)],
        "reassignment_ratio": [Interval(numbers.Real, 0, None)],
        "compute_labels": [OneOf(True, False)],
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
        n_init="auto",
        batch_size=4096,
        max_iter=10,
        tol=1e-4,
        max_no_improvement=10,
        init_size=None,
        reassignment_ratio=0.01,
        compute_labels=True,
        random_state=None,
        persist="auto",
        verbose=0,
        oversampling_factor=2.0,
        init_rounds=5,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.reassignment_ratio = reassignment_ratio
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.persist = persist
        self.verbose = verbose
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds

    # ------------------------------------------------------------------ parameters
    def _spec(self, inp) -> D.FitSpec:
        """Validated parameters; ``n_init="auto"`` is 3 for init="random" (scikit-learn's
        MiniBatchKMeans), and ``_fit_spec`` makes every other "auto" (and an array) 1."""
        validate_params(self, self._constraints)
        random = isinstance(self.init, str) and self.init == "random"
        n_init = 3 if self.n_init == "auto" and random else self.n_init
        return self._fit_spec(inp, self.n_clusters, n_init)

    def _init_size(self, n_rows: int) -> int:
        """Rows an init seeds on (scikit-learn's rule), at most ``n_rows``."""
        k = self.n_clusters
        size = self.init_size
        if size is None:
            size = max(3 * min(self.batch_size, n_rows), 3 * k)
        elif size < k:
            warnings.warn(
                f"init_size={size} should be larger than n_clusters={k}; using init_size={3 * k}.",
                RuntimeWarning,
                stacklevel=4,
            )
            size = 3 * k
        return int(min(size, n_rows))

    # ------------------------------------------------------------------ seeding
    def _seed_on_rows(self, X, w, init: str, rng) -> np.ndarray:
        """One init on rows in memory (NumPy): k-means++ or random rows, then Lloyd."""
        k = self.n_clusters
        seed = int(rng.integers(2**31 - 1))
        if init == "random":
            p = None if w is None else w / w.sum()
            centers = _dense(X[rng.choice(X.shape[0], size=k, replace=False, p=p)])
        else:  # k-means|| is k-means++ without its data passes: on rows in memory, ++
            centers, _ = kmeans_plusplus(X, k, sample_weight=w, random_state=seed)
        with warnings.catch_warnings():
            # few distinct rows: duplicate centres, which reassignment moves later
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = _SkKMeans(k, init=centers, n_init=1, random_state=seed)
            centers = model.fit(X, sample_weight=w).cluster_centers_
        return centers.astype(X.dtype)

    def _best_init(self, candidates: list, held_out) -> np.ndarray:
        """The init with the lowest inertia on the held-out rows ``(X, w)``."""
        if len(candidates) == 1:
            return candidates[0]
        costs = [_cost(*held_out, c) for c in candidates]
        report(logger, "init inertias on %d rows: %s", held_out[0].shape[0], costs, verbose=2)
        return candidates[int(np.argmin(costs))]

    def _start(self, block, weight, inp, spec: D.FitSpec) -> None:
        """The first partial_fit: initial centres from the first block, empty counts."""
        if not isinstance(spec.init, str):
            centers = spec.init.astype(B.host_dtype(block))
        else:
            n = block.shape[0]
            if n < self.n_clusters:
                raise NotEnoughDataError(
                    f"The first block of the chunk has {n} rows; the first partial_fit seeds "
                    f"the centres on it and needs at least n_clusters={self.n_clusters}."
                )
            X, w = _host(block), B.to_host(weight)  # scikit-learn: on the host
            size = self._init_size(n)

            def draw():
                index = np.sort(self._rng.choice(n, size=size, replace=False))
                return X[index], None if w is None else np.asarray(w[index], np.float64)

            inits = [self._seed_on_rows(*draw(), spec.init, self._rng)
                     for _ in range(spec.n_init)]  # fmt: skip
            centers = self._best_init(inits, draw() if spec.n_init > 1 else None)
        self._reset(centers)
        self.n_iter_ = 0
        self.n_features_in_ = inp.n_features
        if inp.feature_names is not None:
            self.feature_names_in_ = inp.feature_names

    def _reset(self, centers) -> None:
        self.cluster_centers_ = centers
        self.counts_ = np.zeros(self.n_clusters)
        self.n_steps_ = 0
        self._since_reassign = 0

    def _seed_fit(self, rows: RowBlocks, spec: D.FitSpec, rng):
        """``fit``'s initial centres and the data's moments (NaN/inf checked)."""
        if isinstance(spec.init, str) and spec.init == "k-means||":
            runs, moments = D.seed(rows, spec, [self.n_clusters], [rng])
            candidates = [r.centers for r in runs]
        else:
            moments = None
        if moments is None:
            moments = rows.moments_pass("minibatch-moments")
            check_finite(moments)
        if not isinstance(spec.init, str):
            return spec.init.astype(rows.dtype), moments
        n, size = rows.n_samples, self._init_size(rows.n_samples)
        n_draws = (0 if spec.init == "k-means||" else spec.n_init) + (spec.n_init > 1)
        if n_draws == 0:
            return candidates[0], moments
        # every init's rows and the held-out rows in one read (of the blocks holding them)
        index = [np.sort(rng.choice(n, size=size, replace=False)) for _ in range(n_draws)]
        X, w = _fetch(rows, np.concatenate(index))
        rows.n_passes += 1
        bounds = np.cumsum([len(i) for i in index])[:-1]
        drawn = list(zip(np.split(X, bounds), [None] * n_draws if w is None
                         else np.split(w, bounds), strict=True))  # fmt: skip
        if spec.init != "k-means||":
            candidates = [self._seed_on_rows(x, wi, spec.init, rng)
                          for x, wi in drawn[: spec.n_init]]  # fmt: skip
        return self._best_init(candidates, drawn[-1]), moments

    # ------------------------------------------------------------------ updates
    def _batches(self, block, weight, rng, stop: _EarlyStop | None = None, *,
                 reassign: bool = True) -> bool:  # fmt: skip
        """Update the centres with ``block`` cut into batches in a seeded random order,
        reassigning centres (if ``reassign``) on scikit-learn's schedule.

        Returns True when ``stop`` says the fit may end (checked after every batch)."""
        n = block.shape[0]
        order = rng.permutation(n)
        for start in range(0, n, self.batch_size):
            take = np.sort(order[start : start + self.batch_size])
            w = None if weight is None else B.take(weight, take)
            batch = B.take(block, take)  # a copy, contiguous, in the block's library
            due = reassign and self._reassignment_due(take.shape[0])
            seen, assigned_with = float(self.counts_.sum()), self.cluster_centers_
            self.cluster_centers_, self.counts_, cost = R.minibatch_update(
                batch, w, self.cluster_centers_, self.counts_
            )
            batch_weight = float(self.counts_.sum()) - seen
            if due:
                self._reassign(batch, w, assigned_with, rng)
            self.n_steps_ += 1
            if stop is not None:
                stop.update(cost, batch_weight, take.shape[0])
                if stop.done and stop.armed:
                    return True
        return False

    def _reassignment_due(self, n_rows: int) -> bool:
        """scikit-learn's schedule: every ``10 * n_clusters`` rows, or while a centre has
        attracted nothing (checked before the batch's update)."""
        if self.reassignment_ratio == 0:
            return False
        self._since_reassign = getattr(self, "_since_reassign", 0) + n_rows
        if (self.counts_ == 0).any() or self._since_reassign >= 10 * self.n_clusters:
            self._since_reassign = 0
            return True
        return False

    def _too_light(self) -> np.ndarray:
        """Which centres have less weight than ``reassignment_ratio`` times the most."""
        return self.counts_ < self.reassignment_ratio * self.counts_.max()

    def _reassign(self, batch, weight, assigned_with, rng) -> None:
        """Move the centres with too little weight to rows of ``batch`` (see
        ``reassignment_ratio``), drawn ∝ squared distance to the centres the batch was
        assigned with (``assigned_with``, those kept); on the host.

        scikit-learn draws the rows uniformly.  Distances to the centres before the
        update find the rows those centres serve badly: after it, a centre that took
        two blobs sits between them and every row of both looks equally far."""
        counts, low = self.counts_, self._too_light()
        n = batch.shape[0]
        if low.sum() > n // 2:  # at most half the batch: keep the heaviest of them
            low[np.argsort(counts, kind="stable")[n // 2 :]] = False
        if low.all():  # reassignment_ratio > 1 with equal counts: keep the heaviest
            low[np.argmax(counts)] = False
        n_low = int(low.sum())
        if n_low == 0:
            return
        X = _host(batch)
        w = None if weight is None else np.asarray(B.to_host(weight), dtype=np.float64)
        centers = np.array(self.cluster_centers_, copy=True)
        picked = _dsquared_rows(X, w, assigned_with[~low], n_low, rng)
        centers[low] = _dense(X[picked])
        self.cluster_centers_ = centers
        counts = counts.copy()
        counts[low] = counts[~low].min()
        self.counts_ = counts
        report(logger, "Minibatch step %d: reassigned %d centres.", self.n_steps_ + 1, n_low,
               verbose=2)  # fmt: skip

    def _blocks(self, rows: RowBlocks, order):
        """Blocks in ``order``, read a few at a time (reads overlap; updates stay in order)."""
        cores = sum(rows.client.nthreads().values()) if rows.client else os.cpu_count() or 1
        ahead = 2 * cores
        for start in range(0, len(order), ahead):
            group = order[start : start + ahead]
            yield from rows.fetch_blocks(group)

    # ------------------------------------------------------------------ partial_fit
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centres with one chunk of a stream.

        The first call seeds the centres on ``init_size`` rows of the chunk's first
        block (the best of ``n_init`` inits; it needs at least ``n_clusters`` rows).
        The chunk is then cut into batches of ``batch_size`` rows in a random order.

        Parameters
        ----------
        X : array-like or dask array of shape (n_rows, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_rows,), optional

        Returns
        -------
        self
        """
        first = not hasattr(self, "cluster_centers_")
        if first:
            inp = as_input(X)
            spec = self._spec(inp)  # validates the parameters
        else:
            validate_params(self, self._constraints)
            inp, spec = check_fitted_input(self, X), None
        rows = RowBlocks(inp.array, as_sample_weight(sample_weight, inp.array), active_client())
        if not hasattr(self, "_rng"):
            self._rng = as_generator(self.random_state)
        with verbosity(self.verbose), single_threaded_blas():
            for block, weight in self._blocks(rows, range(rows.n_blocks)):
                K.finite_block(block)
                if first:
                    self._start(block, weight, inp, spec)
                    first = False
                self._batches(block, weight, self._rng)
            for stale in _LABEL_PASS_ATTRIBUTES:  # they described other rows
                vars(self).pop(stale, None)
            if self.compute_labels:
                c = self.cluster_centers_.astype(np.float64)
                shift = K.choose_shift(c.mean(axis=0), c.var(axis=0))  # as predict's
                labels, assignment = D.final_labels(inp, rows, self.cluster_centers_, shift)
                self.labels_ = inp.wrap_samples(labels, "cluster")
                self.inertia_ = float(assignment.cost)
        return self

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, sample_weight=None):
        """Seed, then up to ``max_iter`` epochs of mini-batches, then labels.

        Parameters
        ----------
        X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
        y : Ignored
        sample_weight : array-like or dask array of shape (n_samples,), optional

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        inp = as_input(X)
        spec = self._spec(inp)
        rng = as_generator(self.random_state)
        with verbosity(self.verbose), single_threaded_blas():
            rows, persisted = D.prepare(inp, sample_weight, spec, active_client())
            centers, moments = self._seed_fit(rows, spec, rng)
            n_seeding = rows.n_passes
            tol = tolerance(self.tol, moments)
            self._reset(centers)
            # neither the stop nor reassignment acts before the first epoch has read
            # every block: blocks come in order, and a cluster only later blocks hold
            # would look unused (or a block's easy rows look like convergence)
            stop = _EarlyStop(rows.n_samples, self.max_no_improvement)
            epoch_rng = rng.spawn(1)[0]
            best = Run(centers)
            for epoch in range(1, self.max_iter + 1):
                start = self.cluster_centers_.astype(np.float64)
                stopped = False
                for block, weight in self._blocks(rows, epoch_rng.permutation(rows.n_blocks)):
                    if self._batches(block, weight, epoch_rng, stop, reassign=epoch > 1):
                        stopped = True
                        break
                rows.n_passes += 1
                shift = float(((self.cluster_centers_ - start) ** 2).sum())
                # centres due for reassignment, which has not acted yet: no stop before
                pending = epoch == 1 and bool(self._too_light().any())
                if pending:
                    stop.stale = 0
                stop.armed = True
                converged = not pending and (shift <= tol or stopped or stop.done)
                best = Run(self.cluster_centers_, epoch, converged,
                           [*best.history, (np.nan, shift, 0.0)])  # fmt: skip
                report(
                    logger, "Epoch %d: centre shift %.3g, smoothed batch inertia %.6g%s.",
                    epoch, shift, stop.mean_inertia, ", no improvement" if stop.done else "",
                )  # fmt: skip
                if converged:
                    break
            labels = assignment = None
            if self.compute_labels:
                data_shift = K.choose_shift(moments.mean, moments.variance)
                labels, assignment = D.final_labels(inp, rows, best.centers, data_shift)
        counts, n_steps = self.counts_, self.n_steps_
        self._set_fitted(inp, rows, best, labels, assignment, persisted=persisted,
                         n_seeding_passes=n_seeding, stacklevel=3)  # fmt: skip
        self.counts_, self.n_steps_ = counts, n_steps
        if not self.compute_labels:
            self.inertia_ = stop.mean_inertia * float(moments.count)
        report(
            logger, "mini-batch fit: %d epochs, %d batches, %.3fs", self.n_iter_, self.n_steps_,
            time.perf_counter() - t0, verbose=2,
        )  # fmt: skip
        return self


def _host(x):
    """A block on the host: NumPy, or scipy.sparse as it is."""
    return x if B.is_sparse(x) else B.to_host(x)


def _dense(rows) -> np.ndarray:
    """Rows as a dense NumPy array (centres are dense, as in scikit-learn)."""
    return rows.toarray() if B.is_sparse(rows) else np.asarray(rows)


def _fetch(rows: RowBlocks, index):
    """Rows ``index`` (sorted) and their weights (None when unweighted), as NumPy."""
    X = rows.fetch_rows(index)
    if rows.sample_weight is None:
        return X, None
    w = rows.sample_weight[index].compute()
    return X, np.asarray(B.to_host(w), dtype=np.float64)


def _cost(X, w, centers) -> float:
    """Weighted summed squared distance of rows ``X`` to their nearest centre."""
    c = np.asarray(centers, dtype=np.float64)
    shift = K.choose_shift(c.mean(axis=0), c.var(axis=0))
    _, dist = K.assign_labels(X, K.prepare_centers(c, shift, X.dtype), shift)
    dist = np.maximum(dist.astype(np.float64), 0.0)
    return float(dist.sum() if w is None else dist @ w)


def _dsquared_rows(X, w, kept, m: int, rng) -> np.ndarray:
    """``m`` distinct row indices of ``X``, drawn one by one with probability ∝ weight ×
    squared distance to the nearest of ``kept`` and of the rows drawn before (k-means++
    continued on the batch).

    At most one row is drawn from the rows of each kept centre while rows of other
    kept centres are left: a kept centre that took two blobs sits between them, and
    once a new centre takes one blob it slides to the other, where a second new
    centre would leave it with nothing.  Uniform among the rows left once no row has
    any probability.
    """
    c = np.asarray(kept, dtype=np.float64)
    shift = K.choose_shift(c.mean(axis=0), c.var(axis=0))
    cell, d2 = K.assign_labels(X, K.prepare_centers(c, shift, X.dtype), shift)
    d2 = np.maximum(d2.astype(np.float64), 0.0)
    weight = np.ones(X.shape[0]) if w is None else w
    sparse = B.is_sparse(X)
    X64 = X.astype(np.float64)
    sq_norms = np.asarray(X64.multiply(X64).sum(axis=1)).ravel() if sparse else None
    taken = np.zeros(X.shape[0], dtype=bool)
    cell_taken = np.zeros(c.shape[0], dtype=bool)
    picked = []
    for _ in range(m):
        p = np.where(taken, 0.0, weight * d2)
        fresh = np.where(cell_taken[cell], 0.0, p)
        p = fresh if fresh.sum() > 0 else p
        total = p.sum()
        if total > 0:
            i = int(rng.choice(p.shape[0], p=p / total))
        else:
            left = np.flatnonzero(~taken)
            i = int(left[rng.integers(left.shape[0])])
        picked.append(i)
        taken[i], cell_taken[cell[i]] = True, True
        if sparse:  # ||x||² - 2 x·xᵢ + ||xᵢ||², CSR kept
            d_i = sq_norms - 2 * (X64 @ X64[i].toarray().ravel()) + sq_norms[i]
        else:
            diff = X64 - X64[i]
            d_i = np.einsum("ij,ij->i", diff, diff)
        d2 = np.minimum(d2, np.maximum(d_i, 0.0))
    return np.array(picked, dtype=np.int64)
