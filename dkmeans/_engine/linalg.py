"""PCA's one-pass reductions: centred Gram, TSQR's R factor, covariance times a matrix.

Same layer as ``reductions`` (no dask); the chunk functions run in the block's
array library (``backend``) and return NumPy partials.  Each partial carries the row
count and the mean of the rows it covers, so blocks are centred on their OWN mean
and merged exactly (Chan et al.'s update for co-moments):

    C = C_a + C_b + (n_a n_b / n) δ δᵀ,   δ = μ_b - μ_a,

which needs no earlier pass for the global mean and never forms Σ xxᵀ of raw,
uncentred data (whose cancellation loses digits when the mean is large).
Blocks are processed in row tiles of float64 so memory stays ``tile-rows × d``
(``dkmeans.tile-rows``, read where the task runs).  A scipy.sparse block is never
centred (that would make it dense): ``sparse_kernels`` forms its centred Gram as
``Xᵀ X - n μ μᵀ`` from the sparse product.  TSQR has no such form.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import backend as B
from . import config
from . import sparse_kernels as SP


class Centred(NamedTuple):
    """Rows covered, their mean (d,), a payload of centred data and its trace.

    payload : the centred Gram ``(d, d)`` (covariance solver), an ``R`` factor with
    ``RᵀR`` equal to it (TSQR), or the Gram times a matrix ``(d, l)`` (randomized).
    """

    count: int
    mean: np.ndarray
    payload: np.ndarray
    trace: float  # Σ ||x - mean||², the total variance times count


def _block_mean(X):
    if B.is_host(X):
        return X.mean(axis=0, dtype=np.float64)
    xp = B.namespace(X)
    return xp.mean(xp.astype(X, xp.float64, copy=False), axis=0)


def _centred_tiles(X, mean, dtype=np.float64, rows=None):
    xp = B.namespace(X)
    rows = rows or config.get("tile-rows")
    for s in range(0, X.shape[0], rows):
        t = xp.astype(X[s : min(s + rows, X.shape[0]), ...], xp.float64, copy=False) - mean
        yield t if dtype == np.float64 else xp.astype(t, B.xp_dtype(xp, dtype))


@np.errstate(invalid="ignore", over="ignore")  # NaN/inf surface in the result
def gram_chunk(X) -> Centred:
    """Centred Gram ``Xcᵀ Xc`` of one block, accumulated in float64.

    Float32 data is centred in float64, then each tile's product runs in float32
    (half the GEMM time; the error, ~1e-6 relative, is below the data's own
    precision, and centring first avoids the cancellation of an uncentred Gram).
    """
    d = X.shape[1]
    if X.shape[0] == 0:
        return Centred(0, np.zeros(d), np.zeros((d, d)), 0.0)
    if B.is_sparse(X):
        return Centred(*SP.centred_gram(X))
    xp = B.namespace(X)
    mean = _block_mean(X)
    gram = xp.zeros((d, d), dtype=xp.float64)
    single = B.host_dtype(X) == np.float32
    tiles = _centred_tiles(X, mean, np.float32, 4096) if single else _centred_tiles(X, mean)
    for t in tiles:
        gram += xp.astype(t.T @ t, xp.float64, copy=False)
    gram = B.to_host(gram)
    return Centred(X.shape[0], B.to_host(mean), gram, float(np.trace(gram)))


@np.errstate(invalid="ignore", over="ignore")  # NaN/inf surface in the result
def gram_times_chunk(X, basis) -> Centred:
    """``Xcᵀ (Xc Q)`` of one block for a (d, l) basis Q: the covariance applied to Q."""
    d, ell = basis.shape
    if X.shape[0] == 0:
        return Centred(0, np.zeros(d), np.zeros((d, ell)), 0.0)
    if B.is_sparse(X):
        return Centred(*SP.centred_gram_times(X, np.asarray(basis, dtype=np.float64)))
    xp = B.namespace(X)
    mean = _block_mean(X)
    basis = B.like(X, basis, np.float64)
    out = xp.zeros((d, ell), dtype=xp.float64)
    trace = 0.0
    for t in _centred_tiles(X, mean):
        out += t.T @ (t @ basis)
        trace += float(xp.sum(t * t))
    return Centred(X.shape[0], B.to_host(mean), B.to_host(out), trace)


def _merged_mean(parts):
    n = sum(p.count for p in parts)
    mean = sum(p.count * p.mean for p in parts) / max(n, 1)
    return n, mean


def _merged_trace(parts, mean) -> float:
    return float(sum(p.trace + p.count * ((p.mean - mean) ** 2).sum() for p in parts))


def combine_gram(parts: list[Centred]) -> Centred:
    parts = [p for p in parts if p.count] or parts[:1]
    n, mean = _merged_mean(parts)
    gram = sum(p.payload for p in parts)
    for p in parts:
        dev = p.mean - mean
        gram = gram + p.count * np.outer(dev, dev)
    return Centred(n, mean, gram, _merged_trace(parts, mean))


def combine_gram_times(parts: list[Centred], basis) -> Centred:
    parts = [p for p in parts if p.count] or parts[:1]
    n, mean = _merged_mean(parts)
    out = sum(p.payload for p in parts)
    for p in parts:
        dev = p.mean - mean
        out = out + p.count * np.outer(dev, dev @ basis)
    return Centred(n, mean, out, _merged_trace(parts, mean))


def _r_factor(stacked):
    if B.is_host(stacked):
        return np.linalg.qr(stacked, mode="r")
    return B.namespace(stacked).linalg.qr(stacked).R  # the standard has no mode="r"


@np.errstate(invalid="ignore", over="ignore")  # NaN/inf surface in the result
def tsqr_chunk(X) -> Centred:
    """R of the QR of the block centred on its mean (float64), tile by tile."""
    d = X.shape[1]
    if X.shape[0] == 0:
        return Centred(0, np.zeros(d), np.zeros((0, d)), 0.0)
    xp = B.namespace(X)
    mean = _block_mean(X)
    r = xp.zeros((0, d), dtype=xp.float64)
    for t in _centred_tiles(X, mean):
        r = _r_factor(xp.concat([r, t]))
    r = B.to_host(r)
    return Centred(X.shape[0], B.to_host(mean), r, float(np.einsum("ij,ij->", r, r)))


def combine_tsqr(parts: list[Centred]) -> Centred:
    """Stack the R factors and the rows √n_i (μ_i - μ), then one QR.

    (X_i - μ) = (X_i - μ_i) + 1(μ_i - μ) and Σ(X_i - μ_i) = 0, so the stack has the
    same Gram as the centred union of the blocks.
    """
    parts = [p for p in parts if p.count] or parts[:1]
    n, mean = _merged_mean(parts)
    rows = [p.payload for p in parts]
    rows += [np.sqrt(p.count) * (p.mean - mean)[None, :] for p in parts]
    r = _r_factor(np.vstack(rows))
    return Centred(n, mean, r, _merged_trace(parts, mean))
