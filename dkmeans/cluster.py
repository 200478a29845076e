"""Estimators: :class:`KMeans` (scikit-learn API over NumPy, dask, xarray and Zarr)."""

from __future__ import annotations

import hashlib
import logging
import numbers
import os
import time
import warnings
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from dask.base import tokenize
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning

from ._engine import backend as B
from ._engine import driver as D
from ._engine import kernels as K
from ._engine.checkpoint import Checkpoint
from ._engine.errors import NotEnoughDataError, ParameterError
from ._engine.lloyd import skip_rates
from ._engine.log import report, verbosity
from ._engine.model_io import SaveMixin
from ._engine.parallel import (
    RowBlocks,
    active_client,
    map_features,
    map_rows,
    single_threaded_blas,
)
from ._engine.seeding import INITIALIZERS, CallableInit, check_init_array
from ._engine.selection import select_into
from ._engine.validation import (
    RANDOM_STATE,
    Input,
    Interval,
    IsInstance,
    OneOf,
    as_generator,
    as_input,
    as_sample_weight,
    check_fitted_input,
    validate_params,
)

logger = logging.getLogger(__name__)

__all__ = ["KMeans"]

# set by the final label pass (absent after a fit with compute_labels=False)
_LABEL_PASS_ATTRIBUTES = ("labels_", "inertia_", "simplified_silhouette_", "cluster_sizes_")


class _BaseKMeans(
    SaveMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator
):
    """What KMeans and MiniBatchKMeans share: parameter validation into a fit spec, the
    fitted attributes, and inference (predict, transform, score)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # KMeans and MiniBatchKMeans take scipy.sparse X
        return tags

    @property
    def _spherical(self) -> bool:
        """metric="cosine" (a model saved before the parameter existed is Euclidean)."""
        return getattr(self, "metric", "euclidean") == "cosine"

    def _inertia(self, cost: float) -> float:
        """Inertia from the summed squared distance: for cosine, Σ||u - c||² over unit
        vectors is 2·Σ(1 - cos)."""
        return cost / 2.0 if self._spherical else cost

    def _fit_spec(self, inp: Input, n_clusters: int, n_init="auto") -> D.FitSpec:
        """Validate the parameters (once, at the start of fit) into a ``FitSpec``."""
        validate_params(self, self._constraints)
        if n_clusters > inp.n_samples:
            raise NotEnoughDataError(
                f"n_clusters={n_clusters} is larger than the number of samples "
                f"({inp.n_samples}); use at most {inp.n_samples} clusters."
            )
        init = self.init
        if callable(init):
            init = CallableInit(init, inp.in_memory)
            n_init = 10 if n_init == "auto" else n_init
        elif not isinstance(init, str):
            init = check_init_array(init, n_clusters, inp.n_features)
            if n_init not in ("auto", 1):
                warnings.warn(
                    "Explicit initial centres given: performing only one init (n_init=1).",
                    RuntimeWarning,
                    stacklevel=4,
                )
            n_init = 1
        elif n_init == "auto":
            n_init = 10 if init == "random" else 1
        # bound-pruned passes ("auto" or "elkan"); the bounds are NumPy beside NumPy
        # blocks, so in-memory device arrays run plain passes
        algorithm = getattr(self, "algorithm", "lloyd")  # MiniBatchKMeans has none
        prune = algorithm if algorithm != "lloyd" and inp.kind != "device" else False
        return D.FitSpec(
            init, n_init, self.max_iter, self.tol, self.oversampling_factor, self.init_rounds,
            spherical=self._spherical, persist=self.persist,
            resume=bool(getattr(self, "resume", False)),
            prune=prune,
        )  # fmt: skip

    def _set_fitted(self, inp: Input, rows: RowBlocks, best, labels, assignment, *,
                    persisted: bool, n_seeding_passes: int, stacklevel: int = 4,
                    also=None, warn: bool = True, sample_size: int | None = None,
                    ) -> None:  # fmt: skip
        """Fitted attributes from the kept run and its final label pass (None without
        one: ``compute_labels=False``), on self and on ``also`` if given (the same fit on
        a second model, which does not warn again); ``stacklevel`` of the user's call
        for the warning."""
        if also is not None:
            also._set_fitted(inp, rows, best, labels, assignment, persisted=persisted,
                             n_seeding_passes=n_seeding_passes, warn=False,
                             sample_size=sample_size)  # fmt: skip
        # a refit starts from positional labels, and drops what described the last model
        for stale in ("cluster_ids_", "k_selection_", "k_table_", "k_confidence_",
                      "fingerprint_", "metadata_", *_LABEL_PASS_ATTRIBUTES):  # fmt: skip
            vars(self).pop(stale, None)
        self.persisted_ = persisted
        self.n_seeding_passes_ = n_seeding_passes
        self.fit_sample_size_ = sample_size
        self.cluster_centers_ = best.centers
        self.n_clusters_ = best.centers.shape[0]
        k = best.centers.shape[0]
        if assignment is not None:
            self._set_label_pass(inp.wrap_samples(labels, "cluster"), assignment.cost,
                                 assignment.weights, assignment.simplified)  # fmt: skip
        self.n_iter_ = best.n_iter
        seconds = [h[2] for h in best.history]
        self.iteration_seconds_ = float(np.median(seconds)) if seconds else 0.0
        if hasattr(self, "algorithm"):  # KMeans (MiniBatchKMeans makes no Lloyd passes)
            self.skip_rate_ = skip_rates(best)
        self.n_passes_ = rows.n_passes
        self.n_features_in_ = inp.n_features
        if inp.feature_names is not None:
            self.feature_names_in_ = inp.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if not best.converged:
            logger.info("did not converge in %d iterations", self.max_iter)
        n_distinct = k if assignment is None else int(np.count_nonzero(assignment.weights > 0))
        if warn and n_distinct < k:
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters "
                f"({k}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )

    def _set_label_pass(self, labels, cost: float, sizes, simplified: float) -> None:
        """What a final label pass measures: labels (None if not kept), inertia from
        the summed squared distance, cluster sizes, Σ w·simplified silhouette."""
        if labels is not None:
            self.labels_ = labels
        self.inertia_ = self._inertia(float(cost))
        total = float(np.sum(sizes))
        k = self.cluster_centers_.shape[0]
        self.simplified_silhouette_ = simplified / total if k > 1 else float("nan")
        self.cluster_sizes_ = np.asarray(sizes)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then the label of each sample (``labels_``; with ``compute_labels=False``,
        :meth:`predict`, which reads X once more).

        Returns
        -------
        labels : ndarray, dask array or xarray.DataArray of shape (n_samples,)
        """
        self.fit(X, sample_weight=sample_weight)
        return self.labels_ if hasattr(self, "labels_") else self.predict(X)

    @property
    def _n_features_out(self):
        """Number of transformed output features (for ``get_feature_names_out``)."""
        return self.cluster_centers_.shape[0]

    # ------------------------------------------------------------------ inference
    def _map_rows(self, inp: Input, fn, extra_shape, dtype, name, center_dtype=None):
        centers = self.cluster_centers_
        shift = K.choose_shift(centers.mean(axis=0), centers.var(axis=0))
        cs = K.prepare_centers(centers, shift, center_dtype or inp.array.dtype)
        cosine = self._spherical

        def block(x):
            x = K.finite_block(x)
            return fn(K.unit_rows(x) if cosine else x, cs, shift)

        X = inp.array
        token = tokenize(X.name, centers, name, getattr(self, "cluster_ids_", None))
        if extra_shape:  # distances stay in X's array library
            out = map_features(block, X, centers.shape[0], dtype=dtype,
                               name=f"dkmeans-{name}-{token}")  # fmt: skip
        else:  # labels come back as NumPy (see _engine.backend)
            out = map_rows(block, X, dtype=dtype, name=f"dkmeans-{name}-{token}")
        if inp.in_memory:
            with single_threaded_blas():
                out = out.compute()
        return inp.wrap_samples(out, name, ("cluster",) if extra_shape else ())

    def predict(self, X):
        """Index of the nearest centre for each sample.

        After :func:`dkmeans.align_labels`, the stable ID of that centre
        (``cluster_ids_[index]``).

        Parameters
        ----------
        X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)

        Returns
        -------
        labels : ndarray, dask array (lazy) or xarray.DataArray of shape (n_samples,)
        """
        inp = check_fitted_input(self, X)
        ids = getattr(self, "cluster_ids_", None)

        def nearest(x, cs, shift):
            labels = K.assign_labels(x, cs, shift)[0]
            return labels if ids is None else ids[labels].astype(np.int32)

        return self._map_rows(inp, nearest, (), np.int32, "predict")

    def transform(self, X):
        """Distance from each sample to each centre: Euclidean, or ``1 - cos`` for
        ``metric="cosine"``.

        Returns
        -------
        distances : ndarray, dask array or xarray.DataArray of shape (n_samples, n_clusters)
        """
        inp = check_fitted_input(self, X)
        k = self.cluster_centers_.shape[0]
        # scikit-learn's dtype: float64 unless both X and the centres are float32
        out = np.result_type(inp.array.dtype, self.cluster_centers_.dtype)
        cosine = self._spherical

        def fn(x, cs, shift):  # in float64; for unit vectors 1 - cos = ||u - c||² / 2
            d = K.distances(x, cs, shift)  # in x's library (NumPy for sparse x)
            xp = B.namespace(d)
            return xp.astype(d**2 / 2 if cosine else d, B.xp_dtype(xp, out))

        return self._map_rows(inp, fn, ((k,),), out, "transform", center_dtype=np.float64)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) sum of squared distances of X to its nearest centres.

        Returns
        -------
        score : float
        """
        inp = check_fitted_input(self, X)
        X = D.rows_for_metric(inp.array, self._spherical)
        rows = RowBlocks(X, as_sample_weight(sample_weight, X), active_client())
        c = self.cluster_centers_.astype(np.float64)
        shift = K.choose_shift(c.mean(axis=0), c.var(axis=0))
        with single_threaded_blas():
            cost = rows.cost_pass([self.cluster_centers_], shift, "score")
        return -self._inertia(float(cost[0]))


class KMeans(_BaseKMeans):
    """K-means clustering for data larger than memory (Lloyd's algorithm, k-means|| seeding).

    Every Lloyd iteration is one pass over the data: each block computes its
    nearest centres, per-cluster sums, counts and cost in one fused kernel, the
    small partials are tree-reduced, and the new centres travel with the next
    pass.  Data that fits in memory (the cluster's, or this machine's for the local
    schedulers) is read once and kept; otherwise it is streamed from its store on
    every pass.

    Parameters
    ----------
    n_clusters : int or "auto", default=8
        Number of clusters.  ``"auto"`` chooses it from ``k_range`` by
        ``k_criterion`` with :func:`dkmeans.select_k` (one lockstep sweep).
    init : {"k-means||", "k-means++", "random"}, callable or ndarray of shape \
(n_clusters, n_features)
        ``"k-means||"`` (default): scalable k-means++ (Bahmani et al. 2012) in
        ``init_rounds + 1`` data passes.  ``"k-means++"``: D² sampling, one pass per
        centre (fine in memory, slow out of core).  ``"random"``: distinct rows drawn
        at random.  An array gives the initial centres.  A callable is called as in
        scikit-learn, ``init(X, n_clusters, random_state=RandomState)``, once per
        run, and returns the centres; X is a NumPy array for in-memory data and the
        dask array otherwise.
    n_init : "auto" or int, default="auto"
        Number of initialisations; the run with the lowest inertia is kept.  Runs
        share every Lloyd pass over the data.  ``"auto"`` is 10 for ``"random"`` and a
        callable, and 1 otherwise, as in scikit-learn.
    max_iter : int, default=300
        Maximum number of Lloyd iterations of a run.
    tol : float, default=1e-4
        Convergence when the summed squared centre shift is at most ``tol`` times the
        mean feature variance (scikit-learn's rule).
    oversampling_factor : float, default=2.0
        k-means|| draws about ``oversampling_factor * n_clusters`` candidates a round.
    init_rounds : int, default=5
        k-means|| rounds (data passes) before the candidates are reduced.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds every random draw; the same value gives the same centres on any
        scheduler and any number of workers.
    persist : "auto" or bool, default="auto"
        Keep the data in memory after the first read.  ``"auto"`` does so when it
        takes at most half of the available memory.
    verbose : int, default=0
        Print progress to stdout for this call, as scikit-learn does (1: its
        "Initialization complete" and "Iteration i, inertia x." lines, 2: more
        detail).  The lines are also logged at INFO on the module's logger (under
        ``dkmeans``) whatever ``verbose`` is; no handler or level is ever set.
    k_range : iterable of int or None, default=None
        Candidate numbers of clusters when ``n_clusters="auto"``; None is
        ``range(2, 16)``.
    k_criterion : str, default="silhouette"
        Criterion of :func:`dkmeans.select_k` when ``n_clusters="auto"``: one of
        ``"silhouette"``, ``"stratified_silhouette"``, ``"simplified_silhouette"``,
        ``"davies_bouldin"``, ``"calinski_harabasz"`` or ``"elbow"``.
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``"cosine"``: spherical k-means.  Rows are scaled to unit length (lazily; an
        all-zero row is an error), centres are scaled back to unit length after every
        update, and ``inertia_`` is the summed cosine distance ``Σ w·(1 - cos)``;
        ``predict`` picks the most similar centre and ``transform`` gives cosine
        distances.  The k-selection metrics are computed on the unit rows.
    checkpoint : str, path-like or None, default=None
        Directory where the fit saves its state after seeding and after every Lloyd
        iteration (one file, replaced atomically).
    resume : bool, default=False
        Continue from the state in ``checkpoint`` if there is one: the result is the
        same as that of an uninterrupted fit.  A checkpoint of another fit (other
        data shape or parameters) is refused.
    fit_sample : "auto", int or None, default="auto"
        Seed and fit on an in-memory row sample first, then polish on all rows.  One
        pass draws the sample (uniform, or weighted by ``sample_weight``) with the
        data's moments; the sample gets the whole fit (seeding, ``n_init`` runs, Lloyd
        to convergence) in memory; full-data Lloyd passes from its centres then run
        until the usual convergence rule holds, so the result is a Lloyd fixed point
        of all rows, typically in 1 to 3 passes instead of the seeding passes and
        every iteration.  An int is the sample's size; ``"auto"`` samples 200,000 rows
        (at most 256 MiB, at least 200 a cluster) when the data is streamed from its
        store (not kept in memory) and fits on all rows otherwise; None always fits
        on all rows.  ``max_iter`` and ``tol`` apply to the sample's fit and to the
        polish each; ``n_iter_`` counts the polish's passes.  A sample holding fewer
        than 100 rows of its smallest cluster warns with the numbers.
    compute_labels : bool, default=True
        Make the final label pass (``labels_``, ``inertia_``, ``cluster_sizes_``,
        ``simplified_silhouette_``).  False skips that read of the data, for a caller
        that labels the data in a pass of its own.
    algorithm : {"auto", "lloyd", "elkan"}, default="auto"
        ``"lloyd"``: every pass computes the distances of every row to every centre
        (one fused GEMM kernel).  ``"elkan"``: bound-based pruning (Hamerly's bounds,
        the one-lower-bound form of Elkan's): each row keeps an upper bound on the
        distance to its centre and a lower bound on the distance to the others,
        beside its block in memory (12 bytes a row per run) while the block itself
        may be held or streamed; a row whose bounds prove that its label did not
        change skips its distance computations, and per-cluster sums are updated by
        the rows that moved.  The same iterations as ``"lloyd"`` (the same labels and
        ``n_iter_``, centres to float rounding; ``skip_rate_`` says how much was
        skipped); late passes cost a fraction of a GEMM pass (on a 4M x 32 fit from
        one init: median iteration 0.49x oneDAL's, against 1.0x for ``"lloyd"``; a
        streamed pass close to its read).  Blocks that are not NumPy (CuPy), or bounds
        that would not fit in a quarter of the memory budget, run plain passes.  The
        per-iteration inertia of the ``verbose`` lines comes from the cluster sums,
        and an iteration that empties a cluster is made again with every distance, so
        that its relocation is scikit-learn's.  ``"auto"`` (default) is ``"elkan"``,
        which measured faster on the local schedulers and on a distributed cluster.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres, in the dtype of X (float32 stays float32).
    labels_ : ndarray, dask array or xarray.DataArray of shape (n_samples,)
        Index of each sample's cluster, in the form of X: NumPy for NumPy input,
        a dask array held in memory for dask or Zarr input (touching it does not
        re-read the data), a DataArray on the sample coordinate for xarray input.
    inertia_ : float
        Sum of (weighted) SQUARED distances of samples to their nearest centre.
    simplified_silhouette_ : float
        Centroid-based silhouette of the final assignment (distance to the nearest vs
        the second-nearest centre), computed in the final label pass; NaN for k = 1.
    n_iter_ : int
        Lloyd iterations of the kept run.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has feature names (pandas columns, an xarray coordinate, or a
        ``feature_names`` attribute of the Zarr array).
    cluster_sizes_ : ndarray of shape (n_clusters,)
        Summed sample weight of each cluster.
    n_passes_ : int
        Passes the fit made over the data (seeding, iterations, final labels).
    n_seeding_passes_ : int
        Those of ``n_passes_`` spent choosing the initial centres (1 with a fit
        sample: the pass that drew it).
    fit_sample_size_ : int or None
        Rows of the fit sample (see ``fit_sample``), None for a fit on all rows.
    persisted_ : bool
        Whether the data was kept in memory after its first read.
    iteration_seconds_ : float
        Median wall time of one Lloyd pass.
    skip_rate_ : ndarray of shape (n_iter_,)
        Per iteration of the kept run, the share of rows whose distance computations
        the bounds of ``algorithm="elkan"`` skipped (rows that needed no distance to
        any other centre than their own); zeros for plain Lloyd passes.
    n_clusters_ : int
        The number of clusters fitted (the chosen one for ``n_clusters="auto"``).
    k_selection_ : KSelection
        Only for ``n_clusters="auto"``: the table of every k, the criterion, and how
        confident the choice is (``k_selection_.confidence``).
    cluster_ids_ : ndarray of shape (n_clusters,)
        Only after :func:`dkmeans.align_labels`: the stable ID of each centre
        (ascending); ``labels_`` and ``predict`` then give these IDs.

    See Also
    --------
    sklearn.cluster.KMeans : the in-memory estimator whose semantics this follows.

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], dtype=float)
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> int(km.predict(np.array([[0.0, 0.0]]))[0]) == int(km.labels_[0])
    True
    >>> float(km.inertia_)
    16.0
    """

    _constraints: ClassVar[dict] = {
        "n_clusters": [Interval(numbers.Integral, 1, None), OneOf("auto")],
        "init": [
            OneOf(*INITIALIZERS),
            IsInstance(np.ndarray, list, label="an array"),
            IsInstance(Callable, label="a callable (X, n_clusters, random_state) -> centres"),
        ],
        "n_init": [OneOf("auto"), Interval(numbers.Integral, 1, None)],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "tol": [Interval(numbers.Real, 0, None)],
        "oversampling_factor": [Interval(numbers.Real, 0, None, closed="neither")],
        "init_rounds": [Interval(numbers.Integral, 1, None)],
        "random_state": [RANDOM_STATE],
        "persist": [OneOf("auto", True, False)],
        "verbose": [Interval(numbers.Integral, 0, None)],
        "metric": [OneOf("euclidean", "cosine")],
        "checkpoint": [IsInstance(type(None), str, os.PathLike, label="None or a directory")],
        "resume": [OneOf(True, False)],
        "fit_sample": [
            OneOf("auto"),
            IsInstance(type(None), label="None"),
            Interval(numbers.Integral, 2, None),
        ],
        "compute_labels": [OneOf(True, False)],
        "algorithm": [OneOf("auto", "lloyd", "elkan")],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means||",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        oversampling_factor=2.0,
        init_rounds=5,
        random_state=None,
        persist="auto",
        verbose=0,
        k_range=None,
        k_criterion="silhouette",
        metric="euclidean",
        checkpoint=None,
        resume=False,
        fit_sample="auto",
        compute_labels=True,
        algorithm="auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.random_state = random_state
        self.persist = persist
        self.verbose = verbose
        self.k_range = k_range
        self.k_criterion = k_criterion
        self.metric = metric
        self.checkpoint = checkpoint
        self.resume = resume
        self.fit_sample = fit_sample
        self.compute_labels = compute_labels
        self.algorithm = algorithm

    def _fit_auto(self, inp: Input, sample_weight):
        """n_clusters="auto": select_k's lockstep sweep, its chosen k fitted into self."""
        params = self.get_params()
        for name in ("n_clusters", "k_range", "k_criterion", "n_init", "random_state"):
            params.pop(name)
        self.k_selection_ = select_into(
            self, inp, range(2, 16) if self.k_range is None else self.k_range,
            estimator=type(self), criterion=self.k_criterion,
            n_init=self.n_init, random_state=self.random_state, sample_weight=sample_weight,
            kmeans_params=params, depth=1,
        )  # fmt: skip
        return self

    def _checkpoint(self, inp: Input, sample_weight, spec: D.FitSpec):
        """The fit's Checkpoint, or None; the key ties it to this data and these params."""
        if self.checkpoint is None:
            if self.resume:
                raise ParameterError(
                    "resume=True needs checkpoint=DIR (where the state was saved)."
                )
            return None
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("verbose", "persist", "checkpoint", "resume", "k_range",
                               "k_criterion", "max_iter", "compute_labels",
                               "algorithm")}  # fmt: skip
        if not isinstance(self.random_state, numbers.Integral | type(None)):
            raise ParameterError(
                "checkpoint needs an int random_state (a Generator cannot be restored)."
            )
        if isinstance(spec.init, CallableInit):
            params["init"] = spec.init.name
        elif not isinstance(spec.init, str):
            params["init"] = hashlib.sha1(np.ascontiguousarray(spec.init).tobytes()).hexdigest()
        key = {"shape": list(inp.array.shape), "dtype": str(inp.array.dtype),
               "weighted": sample_weight is not None, **params}  # fmt: skip
        return Checkpoint(self.checkpoint, key)

    def _fit_with(self, inp: Input, sample_weight, settings: KMeans, also=None,
                  depth: int = 0) -> None:  # fmt: skip
        """Fit ``settings.n_clusters`` clusters with ``settings``' parameters into self,
        and into ``also`` if given (self is ``settings`` for a plain fit; select_k's
        sampled sweep fits its chosen k so, for KMeans("auto") into that model too).
        ``depth``: calls between the user's and this one, less one (for warnings)."""
        k = settings.n_clusters
        spec = settings._fit_spec(inp, k, settings.n_init)
        checkpoint = settings._checkpoint(inp, sample_weight, spec)
        rng = as_generator(settings.random_state)
        with verbosity(settings.verbose), single_threaded_blas():
            rows, persisted = D.prepare(inp, sample_weight, spec, active_client())
            streamed = not (persisted or inp.in_memory)
            size = settings._sample_size(rows, streamed=streamed)
            if size is None and streamed:
                D.warn_if_seeding_streams(spec, k, stacklevel=4 + depth)
            if size is None:
                res = D.fit(rows, spec, [k], [rng], checkpoint)
            else:
                res = D.fit_on_sample(rows, spec, k, rng, size, checkpoint,
                                      stacklevel=4 + depth)  # fmt: skip
            labels = assignment = None
            if settings.compute_labels:
                labels, assignment = D.final_labels(inp, rows, res.best[0].centers, res.shift)
        self._set_fitted(inp, rows, res.best[0], labels, assignment, persisted=persisted,
                         n_seeding_passes=res.n_seeding_passes, stacklevel=4 + depth,
                         also=also, sample_size=size)  # fmt: skip

    def _sample_size(self, rows: RowBlocks, *, streamed: bool) -> int | None:
        """Rows of the fit sample, or None (explicit centres need no sample for "auto")."""
        fit_sample = self.fit_sample
        if fit_sample == "auto" and not isinstance(self.init, str):
            fit_sample = None
        return D.sample_size(fit_sample, rows, streamed, self.n_clusters)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
            Training data.  Integer data is converted to float64.
        y : Ignored
        sample_weight : array-like or dask array of shape (n_samples,), default=None
            Weight of each sample (non-negative).

        Returns
        -------
        self : KMeans
        """
        with verbosity(self.verbose):
            return self._fit(X, sample_weight)

    def _fit(self, X, sample_weight):
        t_start = time.perf_counter()
        inp = as_input(X)
        validate_params(self, self._constraints)
        if self.n_clusters == "auto":
            return self._fit_auto(inp, sample_weight)
        self._fit_with(inp, sample_weight, self)
        report(
            logger, "fit: k=%d, %d iterations, inertia %.6g, %d data passes, %.3fs",
            self.n_clusters, self.n_iter_, getattr(self, "inertia_", np.nan), self.n_passes_,
            time.perf_counter() - t_start, verbose=2,
        )  # fmt: skip
        return self
