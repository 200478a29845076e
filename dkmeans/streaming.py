"""A job on data it cannot keep in memory: one pass to summarize, one to label and profile.

A job's cost on a store it cannot keep is the number of reads times the store's size.
:func:`summarize` reads the records once for everything that needs only the raw rows
(column moments, the NaN/inf check, the covariance for PCA, a seeded row sample);
scaling and PCA are then algebra on those statistics, and the k sweep and the fit run
on the sample in memory (see ``fit_sample`` of :class:`KMeans`).
:func:`label_and_profile` is the last read: labels through the fitted model, written
beside the records, the archetype statistics in original units, the cluster sizes,
the exact inertia and the simplified silhouette, in one pass.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from functools import partial

import dask.array as da
import numpy as np
import zarr

from ._engine import driver as D
from ._engine import kernels as K
from ._engine import linalg as L
from ._engine import reductions as R
from ._engine import summary as SM
from ._engine.parallel import RowBlocks, active_client, single_threaded_blas
from ._engine.validation import (
    as_generator,
    as_input,
    as_sample_weight,
    check_fitted_input,
    unwrap,
)
from .alignment import split_model
from .archetypes import Archetypes, archetype_feature_names, archetypes_from_moments
from .changes import LabelChurn
from .decomposition import PCA
from .io import from_zarr
from .preprocessing import StandardScaler

__all__ = ["LabelPass", "Summary", "label_and_profile", "summarize"]


from ._engine.errors import InputError, InputTypeError, ParameterError


@dataclass(frozen=True, eq=False)
class Summary:
    """What :func:`summarize` gathered in one pass.

    Attributes
    ----------
    n_samples : int
    n_features : int
    count : float
        Rows, or their summed weight.
    mean, var : ndarray of shape (n_features,)
        Column means and population variances (weighted if weights were given).
    sample : ndarray of shape (n_sample, n_features)
        The seeded row sample, in row order, in the records' dtype.  The rows drawn
        depend on the seed and on the records' row chunks (each chunk draws from its
        own seed), not on the scheduler or on how chunks are grouped into tasks.
    sample_index : ndarray of shape (n_sample,)
        Their row numbers.
    sample_weight : ndarray of shape (n_sample,) or None
        With row weights, each sampled row's design weight ``w / π`` (π its inclusion
        probability): the weight that makes the sample stand for the data; fit the
        sample with it.  None without row weights.
    feature_names : ndarray of str or None
    n_passes : int
        Reads of the data (1).
    """

    n_samples: int
    n_features: int
    count: float
    mean: np.ndarray
    var: np.ndarray
    sample: np.ndarray
    sample_index: np.ndarray
    sample_weight: np.ndarray | None
    feature_names: np.ndarray | None
    dtype: np.dtype
    weighted: bool
    n_passes: int
    _moments: R.Moments
    _gram: L.Centred | None

    def standard_scaler(self, **params) -> StandardScaler:
        """A :class:`StandardScaler` fitted from the moments (no pass of its own)."""
        return StandardScaler(**params)._fit_moments(
            self._moments, self.n_features, self.feature_names, weighted=self.weighted
        )

    def pca(self, n_components=None, *, scaler: StandardScaler | None = None,
            **params) -> PCA:  # fmt: skip
        """A :class:`PCA` fitted from the covariance (no pass of its own).

        With ``scaler``, the PCA of the data ``scaler`` transforms: standardising a
        covariance is algebra on the moments (``C_ij / (s_i s_j)``, mean zero).  The
        solver is the covariance eigendecomposition.
        """
        if self._gram is None:
            raise ParameterError("This summary has no covariance; summarize with covariance=True.")
        res, names = self._gram, self.feature_names
        if scaler is not None:
            mean = scaler.mean_ if scaler.with_mean else np.zeros(self.n_features)
            scale = scaler.scale_ if scaler.with_std else np.ones(self.n_features)
            gram = res.payload / np.outer(scale, scale)
            res = L.Centred(res.count, (res.mean - mean) / scale, gram, float(np.trace(gram)))
            names = None  # PCA of scaled data: the scaler's output names
            if self.feature_names is not None:
                names = scaler.get_feature_names_out()
        params.setdefault("svd_solver", "covariance")
        return PCA(n_components, **params)._fit_centred(res, self.dtype, names)

    def check_coverage(self, model) -> np.ndarray:
        """Sampled rows nearest each centre of ``model`` (a KMeans, or a Pipeline ending
        in one, taking the records); warns when the smallest cluster holds fewer than
        100, with the numbers and a larger sample size.  Returns the counts."""
        steps, km = split_model(model)
        rows = self.sample
        for step in steps:
            rows = step.transform(rows)
        sizes = D.sampled_sizes(np.asarray(rows), km.cluster_centers_)
        D.warn_if_sparse(sizes, rows.shape[0], self.n_samples, stacklevel=3)
        return sizes


def summarize(X, *, sample_size="auto", n_clusters: int = 8, covariance: bool = False,
              sample_weight=None, random_state=None) -> Summary:  # fmt: skip
    """Everything that needs only the raw records, in ONE pass over them.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
    sample_size : "auto" or int, default="auto"
        Rows of the seeded sample: uniform without replacement, or weighted by
        ``sample_weight`` (Efraimidis-Spirakis).  ``"auto"``: the default of
        ``KMeans(fit_sample="auto")`` for ``n_clusters`` clusters; 0: no sample.
    n_clusters : int, default=8
        The largest number of clusters the sample must serve (for ``"auto"``).
    covariance : bool, default=False
        Also gather the centred Gram for :meth:`Summary.pca` (unweighted only).
    sample_weight : array-like or dask array of shape (n_samples,), optional
    random_state : int, Generator or None
        Seeds the sample; the same seed draws the same rows on any scheduler.

    Returns
    -------
    Summary

    Raises
    ------
    ValueError
        If X holds NaN or infinity (named with the count).
    """
    inp = as_input(X)
    w = as_sample_weight(sample_weight, inp.array)
    if covariance and w is not None:
        raise ParameterError(
            "covariance=True does not support sample_weight; summarize without it."
        )
    rows = RowBlocks(inp.array, w, active_client())
    if not (isinstance(n_clusters, numbers.Integral) and n_clusters >= 1):
        raise ParameterError(f"n_clusters={n_clusters!r} must be a positive int.")
    if sample_size == "auto":
        size = D.sample_size("auto", rows, True, int(n_clusters))
    elif isinstance(sample_size, numbers.Integral) and not isinstance(sample_size, bool) and (
        sample_size >= 0
    ):  # fmt: skip
        size = int(min(sample_size, inp.n_samples))
    else:
        raise ParameterError(f"sample_size={sample_size!r} must be 'auto' or an int >= 0.")
    with single_threaded_blas():
        out = D.gather(rows, size, as_generator(random_state), with_gram=covariance)
    mom = out.moments
    return Summary(
        inp.n_samples, inp.n_features, float(mom.count), mom.mean, mom.variance,
        out.sample.rows.reshape(-1, inp.n_features), out.sample.index, out.sample_weight,
        inp.feature_names,
        inp.array.dtype, w is not None, rows.n_passes, mom, out.gram,
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class LabelPass:
    """What :func:`label_and_profile` measured in its one pass.

    Attributes
    ----------
    archetypes : Archetypes
        Per-cluster statistics of X in its own units.
    inertia : float
        Exact (weighted) sum of squared distances to the nearest centre (cosine: the
        summed cosine distance), as ``KMeans.inertia_``.
    cluster_sizes : ndarray of shape (n_clusters,)
        Rows (or summed weight) labelled with each cluster.
    simplified_silhouette : float
    n_samples : int
    churn : LabelChurn or None
        With ``previous_labels``: how the records' archetype IDs changed.
    """

    archetypes: Archetypes
    inertia: float
    cluster_sizes: np.ndarray
    simplified_silhouette: float
    n_samples: int
    churn: LabelChurn | None = None


def label_and_profile(X, model, *, write=None, feature_names=None, score=None, top_n: int = 3,
                      sample_weight=None, update_model: bool = False,
                      previous_labels=None) -> LabelPass:  # fmt: skip
    """The final pass: label every record through ``model`` and profile the clusters.

    In ONE read of X: each block goes through the model's transformers, gets its
    nearest centres (as ``model.predict``), is handed to ``write`` and contributes
    to the per-cluster feature moments in X's own units and to the assignment's
    cost, sizes and simplified silhouette.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
        The records in their own units (what the model's first step takes).
    model : KMeans or Pipeline of dkmeans transformers ending in a KMeans
    write : callable, optional
        ``write(labels, start)`` per block, e.g. the :class:`dkmeans.io.LabelsWriter`
        of :func:`dkmeans.io.labels_writer`; labels are the model's cluster IDs.
    feature_names, score, top_n, sample_weight
        As :func:`dkmeans.profile_clusters`.
    update_model : bool, default=False
        Set the KMeans's ``inertia_``, ``cluster_sizes_`` and ``simplified_silhouette_``
        from this pass (X is its training data) and drop its ``labels_``, which would
        describe other rows.
    previous_labels : zarr.Array, dask array, array-like or path of shape (n_samples,), optional
        The same records' labels from an earlier run (cluster IDs; negative values,
        such as a labels array's ``-1`` fill, mean unlabelled).  Each block reads its
        slice of them in this same pass and counts the records whose ID changed,
        previous ID by new ID (``LabelPass.churn``); X is still read once.  A labels
        array that this pass's ``write`` replaces stays readable until the pass ends
        (:func:`dkmeans.io.labels_writer` switches to the new one after it).

    Returns
    -------
    LabelPass
    """
    steps, km = split_model(model)
    for step in steps:
        if not hasattr(step, "_block_function"):
            raise InputTypeError(
                f"{type(step).__name__} is not a dkmeans transformer; label_and_profile runs "
                "dkmeans.StandardScaler and dkmeans.PCA steps inside its pass."
            )
    inp = check_fitted_input(steps[0] if steps else km, X)
    names = archetype_feature_names(inp, feature_names)
    dtype = inp.array.dtype
    functions = tuple(step._block_function(dtype) for step in steps)
    transform = partial(SM.chain, functions=functions) if functions else None
    centers = km.cluster_centers_
    c64 = centers.astype(np.float64)
    shift = K.choose_shift(c64.mean(axis=0), c64.var(axis=0))  # as predict's
    ids = getattr(km, "cluster_ids_", None)
    k = centers.shape[0]
    rows = RowBlocks(inp.array, as_sample_weight(sample_weight, inp.array), active_client())
    offsets = rows.offsets
    previous = None
    if previous_labels is not None:
        previous = rows.aligned(_previous_labels(previous_labels, inp.n_samples))

    def per_block(i):
        return (int(offsets[i]),) if previous is None else (int(offsets[i]), previous[i])

    with single_threaded_blas():
        assignment, moments, counts = rows.reduce(
            SM.label_profile_chunk, SM.combine_label_profile, "label-profile", transform,
            centers, K.prepare_centers(centers, shift, dtype), shift, km._spherical,
            ids, write, per_block=per_block,
        )  # fmt: skip
    cluster_ids = np.arange(k) if ids is None else np.asarray(ids)
    arch = archetypes_from_moments(moments, names, cluster_ids, score=score, top_n=top_n)
    total = float(np.sum(assignment.weights))
    result = LabelPass(
        arch, km._inertia(float(assignment.cost)), assignment.weights,
        assignment.simplified / total if k > 1 else float("nan"), inp.n_samples,
        None if counts is None else _churn(counts, cluster_ids, inp.n_samples),
    )  # fmt: skip
    if update_model:
        vars(km).pop("labels_", None)
        km._set_label_pass(None, assignment.cost, assignment.weights, assignment.simplified)
    return result


def _previous_labels(labels, n_samples: int) -> da.Array:
    """Previous labels as a lazy 1-D integer dask array of the records' length."""
    if isinstance(labels, str | os.PathLike | zarr.Array):
        labels = from_zarr(labels)
    data = unwrap(labels)
    data = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    if data.ndim != 1 or data.shape[0] != n_samples:
        raise InputError(
            f"previous_labels have shape {data.shape} but the records have {n_samples} rows; "
            "pass the labels of the same records, one per row (e.g. the labels array an "
            "earlier run wrote beside them)."
        )
    if not np.issubdtype(data.dtype, np.integer):
        raise InputTypeError(
            f"previous_labels have dtype {data.dtype}; pass integer cluster IDs (-1: unlabelled)."
        )
    return data


def _churn(counts: SM.LabelCounts, ids: np.ndarray, n_samples: int) -> LabelChurn:
    import pandas as pd

    t = counts.transitions
    held = np.flatnonzero(t.sum(axis=1) > 0)  # previous IDs that label some record
    transitions = pd.DataFrame(
        t[held], index=pd.Index(held, name="previous"), columns=pd.Index(ids, name="now")
    )
    return LabelChurn(n_samples, counts.changed, counts.unlabelled, transitions)
