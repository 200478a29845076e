"""Clustering quality metrics that scale: silhouette, Davies-Bouldin, Calinski-Harabasz.

Every function takes X as KMeans does (NumPy, pandas, dask, xarray, a Zarr array or
store path) and labels of the same length (NumPy, dask, pandas or xarray).  Where
scikit-learn defines the metric, the result agrees with it on in-memory data.

Data passes (a persisted or NumPy array makes them free):

===============================================  ====================================
``calinski_harabasz_score``                      1
``davies_bouldin_score``                         2 (centroids, then distances to them)
``silhouette_score(sample_size=m)``              1 to draw the sample, then O(m²·d)
``silhouette_score(method="sqeuclidean-exact")`` 2, O(n·k·d) arithmetic
``silhouette_score()`` (exact, Euclidean)        O(n²·d) arithmetic; blockwise on dask
``simplified_silhouette_score``                  1
===============================================  ====================================
"""

from __future__ import annotations

import numbers
from functools import partial
from typing import NamedTuple

import dask.array as da
import numpy as np

from ._engine import backend as B
from ._engine import cluster_stats as S
from ._engine import kernels as K
from ._engine import reductions as R
from ._engine.errors import InputError, ParameterError
from ._engine.parallel import RowBlocks, active_client, block_seed, map_rows, single_threaded_blas
from ._engine.validation import Input, as_generator, as_input, nonfinite_error, unwrap

__all__ = [
    "SampledSilhouette",
    "calinski_harabasz_score",
    "davies_bouldin_score",
    "silhouette_samples",
    "silhouette_score",
    "simplified_silhouette_score",
]

_STAGE_SAMPLE = 7


class _Labelled(NamedTuple):
    inp: Input
    codes: np.ndarray | da.Array  # int64 codes 0..k-1
    n_clusters: int
    rows: RowBlocks


def _check_labels(X, labels) -> _Labelled:
    """X and labels in one form: labels encoded 0..k-1, 2 <= k <= n - 1 checked."""
    inp = as_input(X)
    n = inp.n_samples
    labels = unwrap(labels)
    if hasattr(labels, "to_numpy"):  # pandas
        labels = labels.to_numpy()
    if not isinstance(labels, da.Array):
        labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(
            f"labels have shape {labels.shape}, but X has {n} samples; pass one label per "
            "row of X (for example model.labels_)."
        )
    if isinstance(labels, da.Array):
        labels = labels.persist()  # encoded and read more than once: never recompute it
        classes = np.unique(da.unique(labels).compute())
        codes = labels.map_blocks(
            lambda b: np.searchsorted(classes, b).astype(np.int64), dtype=np.int64
        )
    else:
        classes, codes = np.unique(labels, return_inverse=True)
        codes = codes.astype(np.int64)
    k = classes.shape[0]
    if not 1 < k < n:
        raise InputError(
            f"Number of labels is {k}. Valid values are 2 to n_samples - 1 (inclusive); "
            "these metrics compare clusters, so at least two are needed."
        )
    return _Labelled(inp, codes, k, RowBlocks(inp.array, None, active_client()))


def _label_blocks(lab: _Labelled) -> list:
    codes = lab.codes
    if isinstance(codes, np.ndarray):
        codes = da.from_array(codes, chunks=(lab.inp.array.chunks[0],))
    return lab.rows.aligned(codes)


def _cluster_moments(lab: _Labelled) -> S.ClusterMoments:
    blocks = _label_blocks(lab)
    mom = lab.rows.reduce(
        partial(S.cluster_moments_chunk, n_clusters=lab.n_clusters), S.combine_cluster_moments,
        "cluster-moments", per_block=lambda i: (blocks[i],),
    )  # fmt: skip
    if not (np.all(np.isfinite(mom.means)) and np.all(np.isfinite(mom.m2))):
        raise nonfinite_error()
    return mom


# --------------------------------------------------------------------------- CH and DB


def calinski_harabasz_score(X, labels) -> float:
    """Calinski-Harabasz index (variance ratio criterion); higher is better.

    One pass over X: per-cluster counts, means and within sums of squares, merged
    exactly in float64.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
    labels : array-like or dask array of shape (n_samples,)

    Returns
    -------
    score : float

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans.metrics import calinski_harabasz_score
    >>> X = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> round(calinski_harabasz_score(X, [0, 0, 1, 1]), 6)
    200.0
    """
    lab = _check_labels(X, labels)
    with single_threaded_blas():
        mom = _cluster_moments(lab)
    return S.calinski_harabasz(mom, lab.inp.n_samples)


def davies_bouldin_score(X, labels) -> float:
    """Davies-Bouldin index (average worst-case cluster similarity); lower is better.

    Two passes over X: centroids, then each row's Euclidean distance to its centroid.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
    labels : array-like or dask array of shape (n_samples,)

    Returns
    -------
    score : float
    """
    lab = _check_labels(X, labels)
    blocks = _label_blocks(lab)
    with single_threaded_blas():
        mom = _cluster_moments(lab)
        spread = lab.rows.reduce(
            S.spread_chunk,
            R.combine_sum,
            "cluster-spread",
            mom.means,
            per_block=lambda i: (blocks[i],),
        )
    return S.davies_bouldin(mom.means, spread / mom.counts)


# --------------------------------------------------------------------------- silhouettes

_METHODS = ("euclidean", "sqeuclidean-exact")


def _check_method(method):
    if method not in _METHODS:
        raise ParameterError(f"method={method!r} is not valid: expected one of {_METHODS}.")


def silhouette_samples(X, labels, *, method="euclidean"):
    """Silhouette coefficient of every sample.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
    labels : array-like or dask array of shape (n_samples,)
    method : {"euclidean", "sqeuclidean-exact"}, default="euclidean"
        ``"euclidean"``: scikit-learn's silhouette, O(n²·d) work computed in blocks of
        rows (memory stays bounded; on dask input every block is compared with every
        other, so persist X or use :func:`silhouette_score` with ``sample_size``).
        ``"sqeuclidean-exact"``: the silhouette for SQUARED Euclidean distance — a
        different metric — exactly, in O(n·k·d) from per-cluster moments (two passes).

    Returns
    -------
    silhouette : ndarray (NumPy input) or dask array of shape (n_samples,)
    """
    _check_method(method)
    lab = _check_labels(X, labels)
    with single_threaded_blas():
        if method == "sqeuclidean-exact":
            out = _sq_silhouette(lab)
        elif lab.inp.in_memory:
            X = lab.inp.array.compute()  # NumPy, or CSR for sparse input
            X = X if B.is_sparse(X) else np.asarray(B.to_host(X))
            out = S.silhouette_values(X, [lab.codes], [lab.n_clusters])[0]
        else:
            out = _blockwise_silhouette(lab)
        if lab.inp.in_memory and isinstance(out, da.Array):
            out = out.compute()
    return lab.inp.wrap_samples(out, "silhouette")


def _sq_silhouette(lab: _Labelled) -> da.Array:
    mom = _cluster_moments(lab)
    shift = mom.total.means[0]
    codes = lab.codes
    if isinstance(codes, np.ndarray):
        codes = da.from_array(codes, chunks=(lab.inp.array.chunks[0],))
    X = lab.inp.array
    codes = codes.rechunk({0: X.chunks[0]})
    return map_rows(
        lambda x, c: S.sq_silhouette_chunk(x, c, mom, shift), X, codes,
        dtype=np.float64, name="dkmeans-sq-silhouette",
    )  # fmt: skip


def _blockwise_silhouette(lab: _Labelled) -> da.Array:
    blocks = _label_blocks(lab)
    codes = lab.codes.compute() if isinstance(lab.codes, da.Array) else lab.codes
    sizes = np.bincount(codes, minlength=lab.n_clusters).astype(np.float64)
    k = lab.n_clusters

    def pair(xi, xj, lj, offset):
        return S.pairwise_cluster_sums(xi, xj, lj, k, offset)

    def finalize(total, li):
        return S.silhouette_from_sums(total, np.asarray(li), sizes)

    return lab.rows.block_pairs(
        pair, R.combine_sum, finalize, "silhouette", per_block=lambda i: (blocks[i],)
    )


class SampledSilhouette(NamedTuple):
    """Silhouettes of a row sample.

    values : (m,) silhouette of each sampled row (computed within the sample).
    labels : (m,) their cluster codes; index : (m,) their row numbers in X.
    weights : (m,) each row's share of the population it stands for (sums to 1):
        uniform for a uniform sample, cluster size / rows drawn from it when stratified.
    """

    values: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    weights: np.ndarray

    @property
    def score(self) -> float:
        return float(self.values @ self.weights)


def sample_silhouette(X, labels, sample_size, *, stratify=False, random_state=None):
    """Exact Euclidean silhouettes of a row sample drawn in one pass.

    With ``stratify=True`` each cluster gets an equal share of the sample (small
    clusters are taken whole), and the score weights each cluster by its true size,
    so small clusters are measured without biasing the overall score.

    Returns
    -------
    SampledSilhouette
    """
    lab = _check_labels(X, labels)
    n = lab.inp.n_samples
    if not isinstance(sample_size, numbers.Integral) or not 1 < sample_size <= n:
        raise ParameterError(
            f"sample_size={sample_size!r} is not valid: use an int from 2 to the number of "
            f"samples ({n}), or None for all of them."
        )
    rng = as_generator(random_state)
    entropy = int(rng.integers(2**63))
    blocks = _label_blocks(lab)
    rows = lab.rows
    size, k = int(sample_size), lab.n_clusters

    def per_block(i):
        return (blocks[i], block_seed(entropy, _STAGE_SAMPLE, i), int(rows.offsets[i]))

    def chunk(x, w, labels_i, seed, offset):
        return S.sample_chunk(x, labels_i, seed, size, k, stratify, offset)

    with single_threaded_blas():
        drawn = rows.reduce(
            chunk, partial(S.combine_samples, size=size, stratify=stratify), "sample",
            per_block=per_block,
        )  # fmt: skip
        sample = S.finalize_sample(drawn, size, stratify)
        present, codes = np.unique(sample.labels, return_inverse=True)
        if present.shape[0] < 2:
            raise InputError(
                f"The sample of {sample.index.shape[0]} rows holds one cluster only; draw a "
                "larger sample_size or use stratify=True."
            )
        values = S.silhouette_values(sample.rows, [codes], [present.shape[0]])[0]
    if stratify:
        drawn_per = np.bincount(sample.labels, minlength=k)
        share = sample.counts / sample.counts.sum()
        weights = share[sample.labels] / drawn_per[sample.labels]
    else:
        weights = np.full(values.shape[0], 1.0 / values.shape[0])
    return SampledSilhouette(values, sample.labels, sample.index, weights)


def silhouette_score(
    X, labels, *, sample_size=None, stratify=False, method="euclidean", random_state=None
) -> float:
    """Mean silhouette coefficient; higher is better (in [-1, 1]).

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
    labels : array-like or dask array of shape (n_samples,)
    sample_size : int or None, default=None
        Score a sample of this many rows (drawn in one pass) instead of all rows:
        O(sample_size²·d) work, as scikit-learn's ``sample_size``.
    stratify : bool, default=False
        Draw the sample per cluster (equal shares, small clusters whole) and weight
        clusters by their true size.
    method : {"euclidean", "sqeuclidean-exact"}, default="euclidean"
        ``"sqeuclidean-exact"`` is the silhouette of SQUARED Euclidean distance,
        exact over all rows in O(n·k·d); it is a different number from the
        Euclidean silhouette (typically larger), so compare like with like.
    random_state : int, Generator or None
        Seeds the sample.

    Returns
    -------
    score : float

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans.metrics import silhouette_score
    >>> X = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> round(silhouette_score(X, [0, 0, 1, 1]), 4)
    0.8997
    """
    _check_method(method)
    if sample_size is not None:
        if method != "euclidean":
            raise ParameterError("sample_size applies to method='euclidean' only.")
        return sample_silhouette(
            X, labels, sample_size, stratify=stratify, random_state=random_state
        ).score
    values = silhouette_samples(X, labels, method=method)
    values = unwrap(values)
    return float(values.mean().compute() if isinstance(values, da.Array) else values.mean())


def simplified_silhouette_score(X, centers) -> float:
    """Centroid-based ("simplified") silhouette of the nearest-centre assignment.

    Each row's a is its distance to the nearest centre and b to the second nearest;
    the score is the mean of (b - a) / max(a, b).  One pass, O(n·k·d): a cheap proxy
    for the silhouette, not equal to it.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
    centers : ndarray of shape (n_clusters, n_features)

    Returns
    -------
    score : float
    """
    inp = as_input(X)
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != inp.n_features or centers.shape[0] < 2:
        raise InputError(
            f"centers have shape {centers.shape}; pass at least two centres with "
            f"{inp.n_features} features each."
        )
    rows = RowBlocks(inp.array, None, active_client())
    shift = K.choose_shift(centers.mean(axis=0), centers.var(axis=0))
    cs = K.prepare_centers(centers, shift, inp.array.dtype)
    with single_threaded_blas():
        total = rows.reduce(
            _simplified_chunk, R.combine_sum, "simplified-silhouette", (centers, cs, shift)
        )
    return float(total / inp.n_samples)


def _simplified_chunk(X, w, shared):
    centers, cs, shift = shared
    return S.simplified_silhouette_chunk(X, centers, cs, shift)[0].sum()
