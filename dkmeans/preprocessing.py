"""Out-of-core preprocessing: :class:`StandardScaler`."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import numpy as np
from dask.base import tokenize
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin

from ._engine import backend as B
from ._engine import kernels as K
from ._engine import sparse_kernels as SP
from ._engine.errors import InputError
from ._engine.model_io import SaveMixin
from ._engine.parallel import RowBlocks, active_client, map_features, single_threaded_blas
from ._engine.seeding import check_finite
from ._engine.validation import (
    OneOf,
    as_input,
    as_sample_weight,
    check_fitted_input,
    validate_params,
)

__all__ = ["StandardScaler"]


def _scale_block(x, *, mean, scale, forward: bool):
    """Scale one block (the parameters move to the block's library, e.g. CuPy; a
    sparse block is scaled column by column and stays sparse: no mean here)."""
    x = K.finite_block(x)
    if B.is_sparse(x):
        return x if scale is None else SP.scale_columns(x, 1.0 / scale if forward else scale)
    if forward:
        x = x if mean is None else x - B.like(x, mean)
        return x if scale is None else x / B.like(x, scale)
    x = x if scale is None else x * B.like(x, scale)
    return x if mean is None else x + B.like(x, mean)


def _no_centring(inp) -> None:
    if inp.sparse:
        raise InputError(
            "Cannot centre sparse data: StandardScaler(with_mean=True) would make sparse X "
            "dense; pass with_mean=False (scales each feature and keeps the zeros)."
        )


def _is_constant(var, mean, n) -> np.ndarray:
    """Features whose variance is only rounding noise (scikit-learn's rule)."""
    eps = np.finfo(np.float64).eps
    return var <= n * eps * var + (n * mean * eps) ** 2


class StandardScaler(SaveMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardise features by removing the mean and scaling to unit variance, out of core.

    ``fit`` is ONE pass over the data: each block's count, mean and centred sum of
    squares (float64) are merged pairwise (Chan et al.), so the result is numerically
    stable however many blocks there are.  ``transform`` is lazy on dask input, so
    scaling can feed another estimator without materialising the scaled data.

    Parameters
    ----------
    copy : bool, default=True
        Kept for scikit-learn compatibility; inputs are never modified in place.
    with_mean : bool, default=True
        Centre the data.  Sparse X (scipy.sparse, or dask arrays of its blocks) needs
        ``with_mean=False``: centring would make it dense.
    with_std : bool, default=True
        Scale to unit variance.  Features of zero variance get ``scale_ = 1``.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) or None
    var_ : ndarray of shape (n_features,) or None
        Population variance of each feature (weighted if ``sample_weight`` was given).
    scale_ : ndarray of shape (n_features,) or None
    n_samples_seen_ : int or float
        Rows seen, or their summed weight.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has feature names.

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans import StandardScaler
    >>> X = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    >>> s = StandardScaler().fit(X)
    >>> s.mean_.tolist(), s.scale_.tolist()[0]
    ([1.0, 4.0], 1.0)
    >>> s.transform(X)[:, 1].round(4).tolist()
    [-1.2247, 0.0, 1.2247]
    """

    _constraints: ClassVar[dict] = {
        "copy": [OneOf(True, False)],
        "with_mean": [OneOf(True, False)],
        "with_std": [OneOf(True, False)],
    }

    def __init__(self, *, copy=True, with_mean=True, with_std=True):
        self.copy = copy
        self.with_mean = with_mean
        self.with_std = with_std

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = not self.with_mean
        return tags

    def fit(self, X, y=None, sample_weight=None):
        """Compute the mean and variance of each feature (one pass).

        Parameters
        ----------
        X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : StandardScaler
        """
        validate_params(self, self._constraints)
        inp = as_input(X)
        if self.with_mean:
            _no_centring(inp)
        w = as_sample_weight(sample_weight, inp.array)
        with single_threaded_blas():
            mom = RowBlocks(inp.array, w, active_client()).moments_pass("scaler-moments")
        return self._fit_moments(mom, inp.n_features, inp.feature_names, weighted=w is not None)

    def _fit_moments(self, mom, n_features: int, feature_names, *, weighted: bool):
        """The fitted attributes from the data's column moments (one pass's result)."""
        validate_params(self, self._constraints)
        check_finite(mom)
        self.n_samples_seen_ = float(mom.count) if weighted else int(mom.count)
        self.n_features_in_ = n_features
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.mean_ = mom.mean if (self.with_mean or self.with_std) else None
        if self.with_std:
            self.var_ = mom.variance
            scale = np.sqrt(self.var_)
            scale[
                _is_constant(self.var_, mom.mean, mom.count) | (scale < 10 * np.finfo(float).eps)
            ] = 1.0
            self.scale_ = scale
        else:
            self.var_ = None
            self.scale_ = None
        return self

    def _block_function(self, dtype, forward: bool = True):
        """The transform of one block of ``dtype`` (what ``transform`` maps over blocks)."""
        mean = self.mean_.astype(dtype) if self.with_mean else None
        scale = self.scale_.astype(dtype) if self.with_std else None
        return partial(_scale_block, mean=mean, scale=scale, forward=forward)

    def _apply(self, X, forward: bool):
        inp = check_fitted_input(self, X)
        if self.with_mean:
            _no_centring(inp)
        dtype = inp.array.dtype
        block = self._block_function(dtype, forward)
        arr = inp.array
        name = "dkmeans-scale" if forward else "dkmeans-unscale"
        token = tokenize(arr.name, block.keywords["mean"], block.keywords["scale"], forward)
        out = map_features(block, arr, inp.n_features, dtype=dtype, name=f"{name}-{token}")
        if inp.in_memory:
            out = out.compute()
        return inp.wrap_features(out, getattr(self, "feature_names_in_", None))

    def transform(self, X):
        """Standardise X (lazy for dask input).

        Returns
        -------
        X_scaled : ndarray, dask array or xarray.DataArray of shape (n_samples, n_features)
            Sparse X gives CSR (in memory) or a dask array of CSR blocks.
        """
        return self._apply(X, forward=True)

    def inverse_transform(self, X):
        """Undo :meth:`transform`.

        Returns
        -------
        X_original : ndarray, dask array or xarray.DataArray of shape (n_samples, n_features)
        """
        return self._apply(X, forward=False)
