"""Out-of-core principal component analysis (:class:`PCA`) and truncated SVD
(:class:`TruncatedSVD`, no centring: for sparse data such as TF-IDF)."""

from __future__ import annotations

import numbers
from dataclasses import replace
from functools import partial
from typing import ClassVar

import numpy as np
from dask.base import tokenize
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.extmath import svd_flip

from ._engine import backend as B
from ._engine import kernels as K
from ._engine import linalg as L
from ._engine.errors import InputError, InputTypeError, NotEnoughDataError, ParameterError
from ._engine.model_io import SaveMixin
from ._engine.parallel import (
    RowBlocks,
    active_client,
    map_features,
    memory_budget,
    single_threaded_blas,
)
from ._engine.validation import (
    RANDOM_STATE,
    Interval,
    IsInstance,
    OneOf,
    as_generator,
    as_input,
    check_fitted_input,
    nonfinite_error,
    validate_params,
)

__all__ = ["PCA", "TruncatedSVD"]

COVARIANCE_MAX_FEATURES = 4096  # "auto" eigendecomposes d × d up to this width


def _gram(res: L.Centred, basis=None, *, uncentred: bool = False) -> np.ndarray:
    """The centred Gram (times ``basis``), or, ``uncentred``, ``XᵀX`` (times ``basis``)
    from it and the mean: ``XᵀX = Xcᵀ Xc + n μ μᵀ`` (TruncatedSVD does not centre)."""
    if not uncentred:
        return res.payload
    mean = res.mean if basis is None else res.mean @ basis
    return res.payload + res.count * np.outer(res.mean, mean)


def _covariance(rows: RowBlocks, opts) -> tuple[L.Centred, np.ndarray, np.ndarray]:
    """One pass: the centred Gram, then its eigendecomposition (all components)."""
    res = rows.reduce(_gram_chunk, L.combine_gram, f"{opts.get('stage', 'pca')}-gram")
    _check_finite(res)
    eigvals, eigvecs = np.linalg.eigh(_gram(res, uncentred=opts.get("uncentred", False)))
    return res, np.maximum(eigvals[::-1], 0.0), eigvecs[:, ::-1].T


def _tsqr(rows: RowBlocks, opts) -> tuple[L.Centred, np.ndarray, np.ndarray]:
    """One pass: R of the centred data's QR (blocks centred on their own means), then SVD(R)."""
    res = rows.reduce(_tsqr_chunk, L.combine_tsqr, "pca-tsqr")
    _check_finite(res)
    _, s, vt = np.linalg.svd(res.payload, full_matrices=False)
    return res, s**2, vt


def _randomized(rows: RowBlocks, opts) -> tuple[L.Centred, np.ndarray, np.ndarray]:
    """Subspace iteration on the covariance, one pass per application (n_power_iter + 1).

    The covariance is never formed: each pass computes ``Xcᵀ(Xc Q)`` block by block.
    The last pass's product gives the Rayleigh-Ritz projection onto the subspace.
    """
    d = rows.X.shape[1]
    ell = min(d, opts["n_components"] + opts["n_oversamples"])
    q = opts["rng"].standard_normal((d, ell))
    uncentred, stage = opts.get("uncentred", False), opts.get("stage", "pca")
    product = None
    for it in range(opts["n_power_iter"] + 1):
        if it:
            q, _ = np.linalg.qr(product)
        res = rows.reduce(
            _gram_times_chunk, partial(L.combine_gram_times, basis=q), f"{stage}-power-{it}", q
        )
        _check_finite(res)
        product = _gram(res, q, uncentred=uncentred)
    small = q.T @ product
    eigvals, w = np.linalg.eigh((small + small.T) / 2)
    return res, np.maximum(eigvals[::-1], 0.0), (q @ w[:, ::-1]).T


def _gram_chunk(X, w):
    return L.gram_chunk(X)


def _tsqr_chunk(X, w):
    return L.tsqr_chunk(X)


def _gram_times_chunk(X, w, basis):
    return L.gram_times_chunk(X, basis)


def _check_finite(res: L.Centred) -> None:
    if not (np.all(np.isfinite(res.payload)) and np.isfinite(res.trace)):
        raise nonfinite_error()


SOLVERS = {"covariance": _covariance, "tsqr": _tsqr, "randomized": _randomized}


class PCA(SaveMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis for data larger than memory.

    Solvers (all centre the data; none forms the n × d centred copy):

    - ``"covariance"``: ONE pass accumulating the centred Gram Xcᵀ Xc in float64
      (blocks centred on their own mean, merged exactly), then a d × d
      eigendecomposition.  Exact; for d up to a few thousand.
    - ``"tsqr"``: ONE pass computing R of the QR of the centred data (tall-skinny QR,
      merged in a tree), then the SVD of R.  Exact and more accurate than the Gram
      for ill-conditioned data (singular values are not squared before the SVD).
    - ``"randomized"``: subspace iteration with ``n_power_iter`` power steps,
      ``n_power_iter + 1`` passes, memory ``d × (n_components + n_oversamples)``; for
      wide data.
    - ``"auto"``: ``"covariance"`` up to 4096 features, else ``"randomized"``.

    Sparse X (scipy.sparse CSR, or dask arrays of CSR blocks) takes ``"covariance"``
    and ``"randomized"``: a block's centred Gram is ``XᵀX - n μ μᵀ`` from the sparse
    product, and ``transform`` computes ``X P - μ P``, so X is never made dense.
    ``"tsqr"`` raises for it.  :class:`TruncatedSVD` does not centre at all.

    Parameters
    ----------
    n_components : int, float in (0, 1) or None, default=None
        Components to keep; a float keeps the fewest components whose explained
        variance ratio reaches it (exact solvers only); None keeps min(n_samples,
        n_features).
    svd_solver : {"auto", "covariance", "tsqr", "randomized"}, default="auto"
    whiten : bool, default=False
        Scale the projections to unit variance.
    n_power_iter : int, default=4
    n_oversamples : int, default=10
    random_state : int, Generator or None
        Seeds the randomized solver's starting basis.

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_features)
        Principal axes, signs as scikit-learn's (each row's largest entry positive).
    explained_variance_ : ndarray of shape (n_components_,)
    explained_variance_ratio_ : ndarray of shape (n_components_,)
    singular_values_ : ndarray of shape (n_components_,)
    mean_ : ndarray of shape (n_features,)
    n_components_ : int
    noise_variance_ : float
    n_samples_ : int
    n_passes_ : int
        Passes made over the data by ``fit``.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans import PCA
    >>> X = np.array([[-1, -1], [-2, -1], [-3, -2], [1, 1], [2, 1], [3, 2]], dtype=float)
    >>> pca = PCA(n_components=2).fit(X)
    >>> pca.explained_variance_ratio_.round(5).tolist()
    [0.99244, 0.00756]
    >>> PCA(n_components=0.9).fit(X).n_components_
    1
    """

    _constraints: ClassVar[dict] = {
        "n_components": [
            IsInstance(type(None), label="None"),
            Interval(numbers.Integral, 1, None),
            Interval(numbers.Real, 0, 1, closed="neither"),
        ],
        "svd_solver": [OneOf("auto", *SOLVERS)],
        "whiten": [OneOf(True, False)],
        "n_power_iter": [Interval(numbers.Integral, 0, None)],
        "n_oversamples": [Interval(numbers.Integral, 0, None)],
        "random_state": [RANDOM_STATE],
    }

    def __init__(
        self,
        n_components=None,
        *,
        svd_solver="auto",
        whiten=False,
        n_power_iter=4,
        n_oversamples=10,
        random_state=None,
    ):
        self.n_components = n_components
        self.svd_solver = svd_solver
        self.whiten = whiten
        self.n_power_iter = n_power_iter
        self.n_oversamples = n_oversamples
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self.svd_solver != "tsqr"
        return tags

    def _resolve(self, n: int, d: int) -> tuple[str, int | float]:
        validate_params(self, self._constraints)
        rank = min(n, d)
        nc = self.n_components
        if isinstance(nc, numbers.Integral) and nc > rank:
            raise ParameterError(
                f"n_components={nc} must be at most min(n_samples, n_features) = {rank}; "
                "ask for fewer components or a float variance ratio such as 0.95."
            )
        solver = self.svd_solver
        if solver == "auto":
            solver = "covariance" if d <= COVARIANCE_MAX_FEATURES else "randomized"
            if solver == "randomized" and not isinstance(nc, numbers.Integral):
                solver = "covariance"
        if solver == "randomized" and not isinstance(nc, numbers.Integral):
            raise ParameterError(
                "svd_solver='randomized' needs an int n_components (it does not compute "
                "the whole spectrum); use svd_solver='covariance' or 'tsqr' for a float or None."
            )
        return solver, rank if nc is None else nc

    def fit(self, X, y=None):
        """Fit the model on X.

        Parameters
        ----------
        X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
        y : Ignored

        Returns
        -------
        self : PCA
        """
        inp = as_input(X)
        n, d = inp.n_samples, inp.n_features
        solver, nc = self._resolve(n, d)
        if n < 2:
            raise NotEnoughDataError(f"PCA needs at least 2 samples; got n_samples={n}.")
        if inp.sparse and solver == "tsqr":
            raise InputTypeError(
                "PCA(svd_solver='tsqr') factors the centred data, which would make sparse X "
                "dense; use svd_solver='covariance' or 'randomized' (they centre through the "
                "Gram matrix, never forming the centred data), or dkmeans.TruncatedSVD "
                "(no centring, as sklearn.decomposition.TruncatedSVD)."
            )
        client = active_client()
        arr = inp.array
        multi_pass = solver == "randomized" and self.n_power_iter > 0
        if multi_pass and not inp.in_memory and arr.nbytes <= memory_budget(client, arr._meta):
            arr = arr.persist()
        rows = RowBlocks(arr, None, client)
        opts = {
            "n_components": nc if isinstance(nc, numbers.Integral) else min(n, d),
            "n_oversamples": self.n_oversamples,
            "n_power_iter": self.n_power_iter,
            "rng": as_generator(self.random_state),
        }
        with single_threaded_blas():
            res, sq_sv, vt = SOLVERS[solver](rows, opts)
        self.svd_solver_ = solver
        return self._set_spectrum(res, sq_sv, vt, nc, inp.array.dtype, inp.feature_names,
                                  rows.n_passes)  # fmt: skip

    def _fit_centred(self, res: L.Centred, dtype, feature_names=None):
        """Fit from the centred Gram of the data (a pass that gathered it already):
        the covariance solver's eigendecomposition, no pass of its own."""
        n, d = int(res.count), res.payload.shape[0]
        _, nc = self._resolve(n, d)
        if n < 2:
            raise NotEnoughDataError(f"PCA needs at least 2 samples; got n_samples={n}.")
        _check_finite(res)
        eigvals, eigvecs = np.linalg.eigh(res.payload)
        self.svd_solver_ = "covariance"
        return self._set_spectrum(res, np.maximum(eigvals[::-1], 0.0), eigvecs[:, ::-1].T, nc,
                                  dtype, feature_names, 0)  # fmt: skip

    def _set_spectrum(self, res, sq_sv, vt, nc, dtype, feature_names, n_passes: int):
        """Fitted attributes from a solver's squared singular values and axes."""
        n, d = int(res.count), vt.shape[1]
        _, vt = svd_flip(None, vt, u_based_decision=False)
        ev = sq_sv / (n - 1)
        total_var = res.trace / (n - 1)
        ratio = ev / total_var if total_var > 0 else np.zeros_like(ev)
        if not isinstance(nc, numbers.Integral):
            nc = int(np.searchsorted(np.cumsum(ratio), nc, side="right") + 1)
            nc = min(nc, ev.shape[0])
        self.n_components_ = int(nc)
        self.components_ = vt[:nc].astype(dtype)
        self.explained_variance_ = ev[:nc].astype(dtype)
        self.explained_variance_ratio_ = ratio[:nc].astype(dtype)
        self.singular_values_ = np.sqrt(sq_sv[:nc]).astype(dtype)
        self.mean_ = res.mean.astype(dtype)
        rank = min(n, d)
        if nc < rank:
            kept = float(ev[:nc].sum())
            self.noise_variance_ = float(max(total_var - kept, 0.0) / (rank - nc))
        else:
            self.noise_variance_ = 0.0
        self.n_samples_ = n
        self.n_passes_ = n_passes
        self.n_features_in_ = d
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def _block_function(self, dtype):
        """The projection of one block of ``dtype`` (what ``transform`` maps over blocks)."""
        proj = self.components_.T.astype(dtype)
        if self.whiten:
            proj = proj / np.sqrt(self.explained_variance_).astype(dtype)
        return partial(_project, mean=self.mean_.astype(dtype), proj=proj)

    @property
    def _n_features_out(self):
        return self.n_components_

    def transform(self, X):
        """Project X on the principal axes (lazy for dask input).

        Returns
        -------
        X_new : ndarray, dask array or xarray.DataArray of shape (n_samples, n_components_)
        """
        inp = check_fitted_input(self, X)
        arr = inp.array
        block = self._block_function(arr.dtype)
        token = tokenize(arr.name, block.keywords["proj"], block.keywords["mean"])
        out = map_features(block, arr, self.n_components_, dtype=arr.dtype,
                           name=f"dkmeans-pca-{token}")  # fmt: skip
        return _finish(inp, out, self.get_feature_names_out())

    def inverse_transform(self, X):
        """Map projections back to feature space.

        Returns
        -------
        X_original : ndarray, dask array or xarray.DataArray of shape (n_samples, n_features)
        """
        scale = np.sqrt(self.explained_variance_) if self.whiten else None
        return _inverse_transform(self, X, self.mean_, scale, "pca")


def _finish(inp, out, names):
    """A projection in the caller's form: computed for in-memory input, and for xarray
    on the new feature axis ``names``."""
    if inp.in_memory:
        out = out.compute()
    return replace(inp, feature_names=None).wrap_features(out, names)


def _inverse_transform(est, X, mean, scale, name: str):
    """``Z V (· scale) + mean`` back in feature space (PCA's and TruncatedSVD's)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "components_")
    inp = as_input(X)
    nc = est.components_.shape[0]
    if inp.n_features != nc:
        raise InputError(
            f"X has {inp.n_features} columns, but this {type(est).__name__} has {nc} "
            "components; pass the output of transform."
        )
    arr = inp.array
    dtype = arr.dtype
    back = est.components_.astype(dtype)
    if scale is not None:
        back = back * np.asarray(scale).astype(dtype)[:, None]
    mean = np.asarray(mean).astype(dtype)
    token = tokenize(arr.name, back, mean)
    out = map_features(_unproject, arr, back.shape[1], back, mean, dtype=dtype,
                       name=f"dkmeans-{name}-inverse-{token}")  # fmt: skip
    return _finish(inp, out, getattr(est, "feature_names_in_", None))


def _project(x, mean, proj):
    if B.is_sparse(x):  # (x - μ) P as x P - μ P: the centred rows are never formed
        return np.asarray(K.finite_block(x) @ proj) - mean @ proj
    return (K.finite_block(x) - B.like(x, mean)) @ B.like(x, proj)


def _unproject(z, back, mean):
    return z @ B.like(z, back) + B.like(z, mean)


class TruncatedSVD(SaveMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Dimensionality reduction by truncated SVD, out of core (no centring: sparse X,
    such as TF-IDF vectors, stays sparse).

    The right singular vectors of X are the eigenvectors of ``XᵀX``, which the PCA
    solvers' one-pass reductions give without centring the rows: each block's centred
    Gram and mean are merged exactly, and ``XᵀX = Xcᵀ Xc + n μ μᵀ``.

    - ``"covariance"``: ONE pass, then a d × d eigendecomposition: exact (as
      scikit-learn's ``algorithm="arpack"`` to its tolerance); for d up to a few
      thousand.
    - ``"randomized"``: subspace iteration on ``XᵀX``, ``n_iter + 1`` passes, memory
      ``d × (n_components + n_oversamples)``; for wide data (a large vocabulary).
    - ``"auto"``: ``"covariance"`` up to 4096 features, else ``"randomized"``.

    Parameters
    ----------
    n_components : int, default=2
        Number of components (at most ``n_features``).
    algorithm : {"auto", "covariance", "randomized"}, default="auto"
    n_iter : int, default=5
        Power iterations of the randomized solver.
    n_oversamples : int, default=10
    random_state : int, Generator or None
        Seeds the randomized solver's starting basis.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Right singular vectors, signs as scikit-learn's (each row's largest entry
        positive).
    explained_variance_ : ndarray of shape (n_components,)
        Variance of each column of ``transform(X)``.
    explained_variance_ratio_ : ndarray of shape (n_components,)
    singular_values_ : ndarray of shape (n_components,)
    algorithm_ : str
    n_passes_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    See Also
    --------
    sklearn.decomposition.TruncatedSVD : the in-memory estimator this follows.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from dkmeans import TruncatedSVD
    >>> X = sp.random(100, 8, density=0.3, random_state=0, format="csr")
    >>> TruncatedSVD(n_components=2).fit_transform(X).shape
    (100, 2)
    """

    _constraints: ClassVar[dict] = {
        "n_components": [Interval(numbers.Integral, 1, None)],
        "algorithm": [OneOf("auto", "covariance", "randomized")],
        "n_iter": [Interval(numbers.Integral, 0, None)],
        "n_oversamples": [Interval(numbers.Integral, 0, None)],
        "random_state": [RANDOM_STATE],
    }

    def __init__(self, n_components=2, *, algorithm="auto", n_iter=5, n_oversamples=10,
                 random_state=None):  # fmt: skip
        self.n_components = n_components
        self.algorithm = algorithm
        self.n_iter = n_iter
        self.n_oversamples = n_oversamples
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def fit(self, X, y=None):
        """Fit the model on X (dense or sparse).

        Parameters
        ----------
        X : array-like, scipy.sparse, dask array, xarray.DataArray, zarr.Array or path \
of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self : TruncatedSVD
        """
        validate_params(self, self._constraints)
        inp = as_input(X)
        n, d = inp.n_samples, inp.n_features
        if self.n_components > d:
            raise ParameterError(
                f"TruncatedSVD(n_components={self.n_components}) must be at most the number "
                f"of features ({d}); ask for fewer components."
            )
        solver = self.algorithm
        if solver == "auto":
            solver = "covariance" if d <= COVARIANCE_MAX_FEATURES else "randomized"
        client = active_client()
        arr = inp.array
        multi_pass = solver == "randomized" and self.n_iter > 0
        if multi_pass and not inp.in_memory and arr.nbytes <= memory_budget(client, arr._meta):
            arr = arr.persist()
        rows = RowBlocks(arr, None, client)
        opts = {
            "n_components": self.n_components, "n_oversamples": self.n_oversamples,
            "n_power_iter": self.n_iter, "rng": as_generator(self.random_state),
            "uncentred": True, "stage": "tsvd",
        }  # fmt: skip
        with single_threaded_blas():
            res, sq_sv, vt = SOLVERS[solver](rows, opts)
        nc = self.n_components
        _, vt = svd_flip(None, vt[:nc], u_based_decision=False)
        # var(X v) = vᵀXᵀXv / n - (μ·v)², and the total Σ var(X_f) = trace(Xcᵀ Xc) / n
        ev = np.maximum(sq_sv[:nc] / n - (vt @ res.mean) ** 2, 0.0)
        total = res.trace / n
        dtype = inp.array.dtype
        self.algorithm_ = solver
        self.components_ = vt.astype(dtype)
        self.singular_values_ = np.sqrt(sq_sv[:nc]).astype(dtype)
        self.explained_variance_ = ev.astype(dtype)
        ratio = ev / total if total > 0 else np.zeros_like(ev)
        self.explained_variance_ratio_ = ratio.astype(dtype)
        self.n_passes_ = rows.n_passes
        self.n_features_in_ = d
        if inp.feature_names is not None:
            self.feature_names_in_ = inp.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def transform(self, X):
        """Project X on the components: ``X Vᵀ`` (lazy for dask input; dense output).

        Returns
        -------
        X_new : ndarray, dask array or xarray.DataArray of shape (n_samples, n_components)
        """
        inp = check_fitted_input(self, X)
        arr = inp.array
        proj = self.components_.T.astype(arr.dtype)
        token = tokenize(arr.name, proj)
        out = map_features(partial(_project, mean=np.zeros(proj.shape[0], arr.dtype), proj=proj),
                           arr, proj.shape[1], dtype=arr.dtype,
                           name=f"dkmeans-tsvd-{token}")  # fmt: skip
        return _finish(inp, out, self.get_feature_names_out())

    def inverse_transform(self, X):
        """Map projections back to feature space: ``Z V`` (dense).

        Returns
        -------
        X_original : ndarray, dask array or xarray.DataArray of shape (n_samples, n_features)
        """
        return _inverse_transform(self, X, np.zeros(self.components_.shape[1]), None, "tsvd")
