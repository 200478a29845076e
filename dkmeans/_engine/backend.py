"""Which array library a block lives in, and moving results between it and NumPy.

dkmeans takes dask arrays whose blocks are NumPy or any library that follows the
Python array API standard (CuPy on a GPU, for one).  The chunk kernels dispatch on
the block: NumPy blocks run the numba loops, other blocks run the same arithmetic
in their own namespace (the GEMMs, argmin and per-cluster sums stay on the device).
What a kernel hands back -- partial sums, counts, labels, costs -- is small against
the block and comes back as NumPy, so the reductions, the driver and the fitted
attributes are NumPy whatever the data lives in.  Transforms that return a row per
input row (distances, projections, scaled data) keep the block's library.

``array_api_compat`` gives every library one namespace; this module is the only
place that knows how to reach the host from each.  scipy.sparse blocks (CSR rows
of TF-IDF-style data) live on the host but are no array API arrays: ``is_sparse``
tells the kernels to hand them to ``sparse_kernels``.
"""

from __future__ import annotations

import array_api_compat as aac
import numpy as np


def is_host(x) -> bool:
    """True for NumPy arrays (and None or Python scalars): the numba kernels' input."""
    return x is None or isinstance(x, np.ndarray | np.generic | int | float)


def is_sparse(x) -> bool:
    """True for a scipy.sparse matrix or array (the sparse kernels' input)."""
    if not type(x).__module__.startswith("scipy.sparse"):
        return False
    import scipy.sparse

    return scipy.sparse.issparse(x)


def namespace(x):
    """The array API namespace of ``x`` (``array_api_compat.numpy`` for NumPy)."""
    return aac.array_namespace(x)


def to_host(x):
    """``x`` as a NumPy array (a copy from the device), NumPy input as it is."""
    if is_host(x):
        return x
    if aac.is_cupy_array(x) or aac.is_torch_array(x):
        x = aac.to_device(x, "cpu")
        return x if isinstance(x, np.ndarray) else np.from_dlpack(x)
    return np.from_dlpack(x)  # CPU-resident array API libraries


def host_dtype(x) -> np.dtype:
    """The NumPy dtype of any array (array API libraries may have their own dtype objects)."""
    try:
        return np.dtype(x.dtype)
    except TypeError:
        return np.dtype(str(x.dtype).rsplit(".", 1)[-1])


def xp_dtype(xp, dtype):
    """The namespace's dtype object for a NumPy dtype."""
    return getattr(xp, np.dtype(dtype).name)


def like(x, value, dtype=None):
    """A host array ``value`` moved next to block ``x`` (unchanged for NumPy blocks)."""
    if is_host(x):
        return value if dtype is None else np.asarray(value, dtype=dtype)
    xp = namespace(x)
    return xp.asarray(value, dtype=None if dtype is None else xp_dtype(xp, dtype))


def take(x, index):
    """Rows ``index`` (host integers) of ``x``, in x's library."""
    if is_host(x):
        return x[index]
    if is_sparse(x):  # CSR rows stay CSR
        return x.tocsr()[np.asarray(index, dtype=np.int64)]
    xp = namespace(x)
    return xp.take(x, xp.asarray(np.asarray(index, dtype=np.int64)), axis=0)


def device_free_bytes(meta) -> int | None:
    """Free memory of the current GPU when ``meta`` is a CuPy array; None otherwise."""
    if not aac.is_cupy_array(meta):
        return None
    import cupy

    return int(cupy.cuda.runtime.memGetInfo()[0])
