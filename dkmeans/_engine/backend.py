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

import mmap

import array_api_compat as aac
import numpy as np

# NumPy advises the kernel to back every array of 4 MiB or more with transparent huge
# pages (MADV_HUGEPAGE).  Where the kernel's THP defrag policy is "madvise" (many
# distributions' default) and no huge page is free, each first touch of such memory
# stalls in direct compaction: on the 2-core benchmark machine 512 MB of blocks took
# 1.18 s to touch with the advice and 0.23 s without it, and a persisted fit paid
# that on every block it kept.  ``host_empty`` maps such arrays without the advice
# (a kernel whose THP policy is "always" still backs them with huge pages).  Only
# memory that is kept goes there: a buffer freed and allocated again every pass (a
# streamed read) is reused by the allocator without faulting at all.
_NUMPY_HUGEPAGE_BYTES = 1 << 22
_ANONYMOUS_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)


def host_empty(shape, dtype) -> np.ndarray:
    """An uninitialised NumPy array, in fresh memory that is quick to touch.

    For large arrays that live long and are written once (blocks kept in memory):
    from 4 MiB up, an anonymous private mapping without NumPy's huge-page advice (see
    ``_NUMPY_HUGEPAGE_BYTES``); smaller arrays, and platforms without such mappings,
    get ``np.empty``.  The mapping is freed with the last array that views it.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(int(n) for n in shape)
    count = int(np.prod(shape))
    nbytes = count * dtype.itemsize
    if nbytes < _NUMPY_HUGEPAGE_BYTES or not _ANONYMOUS_PRIVATE:
        return np.empty(shape, dtype)
    memory = mmap.mmap(-1, nbytes, flags=_ANONYMOUS_PRIVATE)
    return np.frombuffer(memory, dtype, count).reshape(shape)


def host_copy(x):
    """A copy of a NumPy block in ``host_empty`` memory (a block about to be kept); a
    block of any other library (a dask array's meta may not tell) as it is."""
    if type(x) is not np.ndarray:
        return x
    out = host_empty(x.shape, x.dtype)
    np.copyto(out, x)
    return out


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
