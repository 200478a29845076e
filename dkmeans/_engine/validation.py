"""Input and parameter validation, in one place.

``as_input`` turns every accepted form of X (NumPy, pandas, dask, xarray, Zarr array
or path) into one (n_samples, n_features) float dask array with one chunk along
features, plus what is needed to return results in the caller's form.  Nothing
here reads the data: NaN/inf are caught in the first pass that reads it.
"""

from __future__ import annotations

import math
import numbers
import os
import uuid
from dataclasses import dataclass, replace
from typing import Any

import array_api_compat as aac
import dask.array as da
import numpy as np

from . import backend as B
from . import config
from .errors import InputError, InputTypeError, ParameterError

FEATURE_DIMS = ("feature", "features", "variable", "variables", "channel")


@dataclass
class Input:
    """X as a dask array, and how to hand results back.

    kind : "numpy" | "device" | "dask" | "xarray" | "zarr" ("device": an in-memory
        array of another library, CuPy for one; "numpy" also for in-memory
        scipy.sparse, whose blocks are CSR)
    feature_names : ndarray of str or None
    sample_dim, sample_coord : for xarray input, the labels' dimension and coordinate.
    """

    array: da.Array
    kind: str
    feature_names: np.ndarray | None = None
    sample_dim: str | None = None
    sample_coord: Any = None
    feature_dim: str | None = None

    @property
    def in_memory(self) -> bool:
        """True when the data came as an in-memory array (results go back computed)."""
        return self.kind in ("numpy", "device") or (self.kind == "xarray" and self._numpy_backed)

    _numpy_backed: bool = False

    @property
    def sparse(self) -> bool:
        """True when the blocks are scipy.sparse (CSR): see ``sparse_kernels``."""
        return B.is_sparse(self.array._meta)

    @property
    def n_samples(self) -> int:
        return int(self.array.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.array.shape[1])

    def wrap_features(self, values, feature_names=None):
        """A (n_samples, n_features) result in the input's form (xarray keeps its coords)."""
        if self.kind != "xarray":
            return values
        import xarray as xr

        coords = {} if self.sample_coord is None else {self.sample_dim: self.sample_coord}
        names = self.feature_names if self.feature_names is not None else feature_names
        fdim = self.feature_dim or "feature"
        if names is not None:
            coords[fdim] = names
        return xr.DataArray(values, dims=(self.sample_dim, fdim), coords=coords)

    def wrap_samples(self, values, name: str, extra_dims: tuple = ()):
        """Per-sample results (labels, distances) in the input's form."""
        if self.kind == "xarray":
            import xarray as xr

            coords = {} if self.sample_coord is None else {self.sample_dim: self.sample_coord}
            dims = (self.sample_dim, *extra_dims)
            return xr.DataArray(values, dims=dims, coords=coords, name=name)
        return values


def nonfinite_error(count: int | None = None) -> InputError:
    """The one error for NaN or infinity in X (``count`` of them, where known)."""
    many = "" if count is None else f" ({count} value(s))"
    return InputError(
        f"Input X contains NaN or infinity{many}. Remove or impute them first (for example "
        "sklearn.impute.SimpleImputer, or X[da.isfinite(X).all(axis=1)] on a dask array)."
    )


def unwrap(x):
    """The array inside an xarray.DataArray; anything else as it is."""
    return x.data if hasattr(x, "dims") and hasattr(x, "data") else x


def _rows_per_block(n_samples: int, row_bytes: int) -> int:
    cpus = os.cpu_count() or 1
    by_threads = math.ceil(n_samples / (2 * cpus))
    by_bytes = max(1, config.get("block-bytes") // max(row_bytes, 1))
    return max(1, min(max(by_threads, 1024), by_bytes, n_samples))


def _float_dtype(dtype, what: str):
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return dtype
    if dtype.kind in "biuf":
        return np.dtype(np.float64)
    if dtype.kind == "c":
        raise InputError(
            f"Complex data not supported: {what} has dtype {dtype}. Pass the real part, the "
            "magnitude, or both as separate features."
        )
    raise InputTypeError(
        f"{what} has dtype {dtype}, which is not numeric. Encode or drop non-numeric "
        "columns and pass a float or integer array."
    )


def _check_shape(shape, what: str) -> None:
    if len(shape) != 2:
        hint = (
            " Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) "
            "for a single sample."
            if len(shape) == 1
            else ""
        )
        raise InputError(
            f"{what} must be 2-D (n_samples, n_features); got {len(shape)}-D shape {shape}.{hint}"
        )
    if any(isinstance(s, float) and math.isnan(s) for s in shape):
        raise InputError(
            f"{what} has unknown chunk sizes (shape {shape}); call X.compute_chunk_sizes() first."
        )
    for axis, what_axis in ((0, "sample"), (1, "feature")):
        if shape[axis] == 0:
            raise InputError(
                f"{what} is empty: found {shape[axis]} {what_axis}(s) (shape={tuple(shape)}) "
                "while a minimum of 1 is required."
            )


def _numeric_objects(arr: np.ndarray, what: str) -> np.ndarray:
    """An object array of numbers as float64 (as scikit-learn converts it)."""
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InputTypeError(
            f"{what} has dtype object and holds values that are not numbers ({err}). Encode "
            "or drop non-numeric columns and pass a float or integer array."
        ) from None


def _xarray_input(X, what: str) -> Input:
    _check_shape(X.shape, what)
    dims = list(X.dims)
    fdim = next((d for d in dims if d in FEATURE_DIMS), dims[1])
    sdim = next(d for d in dims if d != fdim)
    X = X.transpose(sdim, fdim)
    names = np.array([str(v) for v in X[fdim].values]) if fdim in X.coords else None
    scoord = X[sdim].values if sdim in X.coords else None
    data = X.data if isinstance(X.data, da.Array) else np.asarray(X.data)
    inp = as_input(data, what)
    return Input(inp.array, "xarray", names, sdim, scoord, fdim, _numpy_backed=inp.kind == "numpy")


def _is_sparse(X) -> bool:
    """scipy.sparse (or pydata sparse) X, or a dask array of such blocks."""
    meta = X._meta if isinstance(X, da.Array) else X
    return B.is_sparse(meta) or type(meta).__module__.startswith("sparse")


def as_input(X, what: str = "X") -> Input:
    """Convert any accepted X into an ``Input`` (lazy; reads nothing)."""
    import zarr

    from .store import dask_array, feature_names, open_zarr_array

    if isinstance(X, str | os.PathLike):
        X = open_zarr_array(X)
    if isinstance(X, zarr.Array):
        inp = replace(as_input(dask_array(X), what), kind="zarr")
        inp.feature_names = feature_names(X)
        return inp
    mod = type(X).__module__
    if mod.startswith("xarray"):
        if not hasattr(X, "dims") or not hasattr(X, "transpose") or hasattr(X, "data_vars"):
            raise InputTypeError(
                f"{what} is an xarray Dataset; pass one DataArray (ds['name']) or "
                "ds.to_dataarray('feature')."
            )
        return _xarray_input(X, what)
    names = None
    if mod.startswith("pandas"):
        cols = getattr(X, "columns", None)
        if cols is not None and all(isinstance(c, str) for c in cols):
            names = np.asarray(cols, dtype=object).astype(str)
        X = X.to_numpy()
    if _is_sparse(X):
        return _sparse_input(X, what)
    if isinstance(X, da.Array):
        _check_shape(X.shape, what)
        if X.dtype == object:
            X = X.map_blocks(_numeric_objects, what, dtype=np.float64)
        dtype = _float_dtype(X.dtype, what)
        arr = X.astype(dtype) if X.dtype != dtype else X
        if arr.numblocks[1] != 1:
            arr = arr.rechunk({1: -1})
        return Input(arr, "dask", names)
    if not isinstance(X, np.ndarray) and aac.is_array_api_obj(X):
        return _device_input(X, what, names)
    if not hasattr(X, "__array__") and not isinstance(X, list | tuple):
        raise InputTypeError(
            f"{what} of type {type(X).__name__} is not supported: pass a NumPy, dask or "
            "xarray array, a zarr.Array, or the path of a Zarr store."
        )
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as err:
        raise InputTypeError(f"{what} could not be read as an array: {err}") from err
    _check_shape(arr.shape, what)
    if arr.dtype == object:
        arr = _numeric_objects(arr, what)
    dtype = _float_dtype(arr.dtype, what)
    arr = np.ascontiguousarray(arr, dtype=dtype)
    rows = _rows_per_block(arr.shape[0], arr.shape[1] * arr.itemsize)
    return Input(in_memory_blocks(arr, (rows, -1), "numpy"), "numpy", names)


def in_memory_blocks(x, chunks, kind: str, meta=None) -> da.Array:
    """An in-memory array as dask row blocks: views (NumPy) or slices of it, named
    without hashing its data.

    ``dask.array.from_array`` copies a NumPy array whole and names it by a hash of its
    bytes on every call that takes it (fit, predict, transform, a metric): for a 4M x 32
    float32 array, 512 MB more and 0.08 s for the copy (1.16 s into a fresh process's
    memory, whose huge-page advice stalls first touches here), 0.27 s for the hash.  The graphs
    built on it live within one call, so a unique name does, and views of the
    caller's array are what scikit-learn would read too.
    """
    from dask.array.utils import meta_from_array

    chunks = da.core.normalize_chunks(chunks, x.shape, dtype=x.dtype)
    name = f"dkmeans-{kind}-{uuid.uuid4().hex}"
    stops = np.cumsum(chunks[0])
    ndim = len(x.shape)
    whole = (slice(None),) * (ndim - 1)  # every index in full (the array API asks it)
    dsk = {(name, i, *(0,) * (ndim - 1)): x[(slice(stop - size, stop), *whole)]
           for i, (size, stop) in enumerate(zip(chunks[0], stops, strict=True))}  # fmt: skip
    meta = meta_from_array(x) if meta is None else meta
    return da.Array(dsk, name, chunks, dtype=x.dtype, meta=meta)


class _DeviceRows:
    """An in-memory array of another library as ``dask.array.from_array`` sees it:
    NumPy's dtype, slices taken (and kept) in that library."""

    def __init__(self, x):
        self.x, self.shape, self.ndim, self.dtype = x, tuple(x.shape), x.ndim, B.host_dtype(x)

    def __getitem__(self, key):
        return self.x[key]


def _device_input(X, what: str, names) -> Input:
    """A CuPy (or other array API) array as row blocks that stay where X lives."""
    _check_shape(tuple(X.shape), what)
    xp = B.namespace(X)
    dtype = _float_dtype(B.host_dtype(X), what)
    if B.host_dtype(X) != dtype:
        X = xp.astype(X, B.xp_dtype(xp, dtype))
    try:  # the library's own empty array, where its dtypes are NumPy's (CuPy's are)
        np.dtype(X.dtype)
        meta = X[0:0, 0:0]
    except TypeError:
        meta = np.empty((0, 0), dtype)
    rows = _rows_per_block(X.shape[0], X.shape[1] * dtype.itemsize)
    # named without hashing the data (that would also copy it to the host)
    arr = in_memory_blocks(_DeviceRows(X), (rows, -1), "device", meta=meta)
    return Input(arr, "device", names)


def _sparse_input(X, what: str) -> Input:
    """scipy.sparse X, or a dask array of scipy.sparse blocks, as row blocks of
    canonical CSR (float32 kept, else float64).  In memory, NaN/inf are caught here
    (a scan of the stored values); in dask blocks, by the first pass."""
    import scipy.sparse as sp

    meta = X._meta if isinstance(X, da.Array) else X
    if not B.is_sparse(meta):
        raise InputTypeError(
            f"{what} holds pydata sparse arrays; convert them to scipy.sparse CSR first "
            "(X.tocsr(), or X.map_blocks(lambda b: b.tocsr()) for dask blocks)."
        )
    _check_shape(X.shape, what)
    dtype = _float_dtype(X.dtype, what)
    if isinstance(X, da.Array):
        arr = X if X.numblocks[1] == 1 else X.rechunk({1: -1})
        if X.dtype != dtype or meta.format != "csr":
            arr = arr.map_blocks(_csr_block, dtype, dtype=dtype,
                                 meta=sp.csr_matrix((0, 0), dtype=dtype))  # fmt: skip
        return Input(arr, "dask")
    X = _csr_block(X, dtype)
    n_bad = int(X.data.size - np.count_nonzero(np.isfinite(X.data)))
    if n_bad:
        raise nonfinite_error(n_bad)
    per_row = -(-X.nnz // X.shape[0]) * (X.dtype.itemsize + X.indices.itemsize)
    rows = _rows_per_block(X.shape[0], per_row + X.indptr.itemsize)
    return Input(in_memory_blocks(X, (rows, -1), "csr"), "numpy")


def _csr_block(x, dtype):
    """A scipy.sparse block as canonical CSR of ``dtype`` (a copy only where needed)."""
    x = x.tocsr().astype(dtype, copy=False)
    if not x.has_canonical_format:
        x = x.copy()
        x.sum_duplicates()
    return x


def check_fitted_input(estimator, X) -> Input:
    """X for a fitted estimator's predict/transform: same number (and names) of features."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "n_features_in_")
    inp = as_input(X)
    name = type(estimator).__name__
    if inp.n_features != estimator.n_features_in_:
        raise InputError(
            f"X has {inp.n_features} features, but {name} is expecting "
            f"{estimator.n_features_in_} features as input; pass data with the features "
            "it was fitted on."
        )
    fitted = getattr(estimator, "feature_names_in_", None)
    if (
        fitted is not None
        and inp.feature_names is not None
        and not np.array_equal(fitted, inp.feature_names)
    ):
        raise InputError(
            "The feature names of X differ from those seen in fit "
            f"({list(fitted)} vs {list(inp.feature_names)}); reorder or rename the columns."
        )
    return inp


def as_sample_weight(sample_weight, X: da.Array) -> da.Array | None:
    """Validate weights: 1-D, one per row, finite, non-negative, not all zero."""
    if sample_weight is None:
        return None
    n = X.shape[0]
    if isinstance(sample_weight, numbers.Number):
        w = np.full(n, float(sample_weight))
    elif isinstance(sample_weight, da.Array):
        w = sample_weight
    else:
        w = np.asarray(sample_weight)
    if w.ndim != 1 or w.shape[0] != n:
        raise InputError(
            f"sample_weight has shape {w.shape}, expected ({n},): one weight per sample."
        )
    if not isinstance(w, da.Array):
        w = np.asarray(w, dtype=np.float64)
        if not np.all(np.isfinite(w)):
            raise InputError("sample_weight contains NaN or infinity.")
        if np.any(w < 0):
            raise InputError("sample_weight has negative values; weights must be >= 0.")
        if not np.any(w > 0):
            raise InputError("sample_weight is zero everywhere; at least one must be > 0.")
        return in_memory_blocks(w, (X.chunks[0],), "weights")
    return w.astype(np.float64).rechunk((X.chunks[0],))


def as_generator(random_state) -> np.random.Generator:
    """A NumPy Generator from None, an int, a Generator or a legacy RandomState."""
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    raise ParameterError(
        f"random_state={random_state!r} is not valid: use None, an int, or a numpy Generator."
    )


# ---------------------------------------------------------------- parameter constraints
class Interval:
    """Numbers of ``kind`` in [low, high] (bounds may be None, ``closed`` as in sklearn)."""

    def __init__(self, kind, low, high, closed="both"):
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def __call__(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, self.kind):
            return False
        lo_ok = self.low is None or (
            v >= self.low if self.closed in ("both", "left") else v > self.low
        )
        hi_ok = self.high is None or (
            v <= self.high if self.closed in ("both", "right") else v < self.high
        )
        return lo_ok and hi_ok

    def __repr__(self) -> str:
        lo = "[" if self.closed in ("both", "left") else "("
        hi = "]" if self.closed in ("both", "right") else ")"
        kind = getattr(self.kind, "__name__", "number")
        return f"{kind} in {lo}{self.low}, {self.high if self.high is not None else 'inf'}{hi}"


class OneOf:
    def __init__(self, *options):
        self.options = options

    def __call__(self, v) -> bool:
        return isinstance(v, str | bool) and v in self.options

    def __repr__(self) -> str:
        return " or ".join(repr(o) for o in self.options)


class IsInstance:
    def __init__(self, *types, label):
        self.types, self.label = types, label

    def __call__(self, v) -> bool:
        return isinstance(v, self.types)

    def __repr__(self) -> str:
        return self.label


RANDOM_STATE = IsInstance(
    type(None),
    numbers.Integral,
    np.random.Generator,
    np.random.RandomState,
    label="None, an int or a Generator",
)


def validate_params(estimator, constraints: dict) -> None:
    """Check every parameter against its list of accepted forms; one clear error."""
    for name, options in constraints.items():
        value = getattr(estimator, name)
        if not any(opt(value) for opt in options):
            allowed = "; ".join(repr(o) for o in options)
            raise ParameterError(
                f"{type(estimator).__name__}({name}={value!r}) is not valid: expected {allowed}."
            )
