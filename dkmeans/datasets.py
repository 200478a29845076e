"""Synthetic data generated block by block (never whole in memory), and written to Zarr."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import dask.array as da
import numpy as np

__all__ = ["make_blobs", "write_zarr"]


def _blob_block(block_id, *, sizes, centers, cluster_std, dtype, entropy, with_labels):
    i = block_id[0]
    rng = np.random.default_rng(np.random.SeedSequence([entropy, i]))
    n = sizes[i]
    labels = rng.integers(centers.shape[0], size=n)
    X = centers[labels] + cluster_std * rng.standard_normal((n, centers.shape[1]))
    return labels.astype(np.int32) if with_labels else X.astype(dtype)


def make_blobs(
    n_samples: int = 100_000,
    n_features: int = 8,
    centers: int = 8,
    *,
    cluster_std: float = 1.0,
    center_box: tuple[float, float] = (-10.0, 10.0),
    chunks: int = 100_000,
    dtype=np.float32,
    random_state: int = 0,
):
    """Isotropic Gaussian blobs as lazy dask arrays, each block from its own seed.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features)
    y : dask.array.Array of shape (n_samples,), int32 true blob of each row
    true_centers : ndarray of shape (centers, n_features)
    """
    rng = np.random.default_rng(random_state)
    true_centers = rng.uniform(*center_box, size=(centers, n_features))
    entropy = int(rng.integers(2**63))
    row_chunks = da.core.normalize_chunks((chunks,), (n_samples,))[0]
    kw = dict(sizes=row_chunks, centers=true_centers, cluster_std=cluster_std, dtype=dtype,
              entropy=entropy)  # fmt: skip
    X = da.map_blocks(
        lambda block_id=None: _blob_block(block_id, with_labels=False, **kw),
        chunks=(row_chunks, (n_features,)), dtype=dtype, name=f"blobs-X-{entropy}",
    )  # fmt: skip
    y = da.map_blocks(
        lambda block_id=None: _blob_block(block_id, with_labels=True, **kw),
        chunks=(row_chunks,), dtype=np.int32, name=f"blobs-y-{entropy}",
    )  # fmt: skip
    return X, y, true_centers


def write_zarr(X: da.Array, path: str | os.PathLike, *, overwrite: bool = False, **attrs):
    """Write a dask array to a new Zarr array, atomically: a temporary name, then a rename.

    Parameters
    ----------
    X : dask.array.Array
        Written with its own chunks as the Zarr chunks.
    path : str or path-like
    overwrite : bool, default=False
        Replace an existing store at ``path``.
    **attrs
        Stored as the array's attributes (e.g. ``feature_names=[...]``).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        X.to_zarr(str(tmp))
        if attrs:
            import zarr

            zarr.open_array(str(tmp), mode="r+").attrs.update(attrs)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path
