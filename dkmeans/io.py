"""Open Zarr stores as (n_samples, n_features) arrays, and write labels back beside
them.  Thin: no arithmetic."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from ._engine.store import dimension_names, feature_names, open_zarr_array, public_url

__all__ = [
    "LabelsWriter",
    "feature_names",
    "from_zarr",
    "labels_writer",
    "open_zarr_array",
    "store_info",
    "write_labels",
]


def from_zarr(path: str | os.PathLike | zarr.Array, variable: str | None = None, *,
              storage_options: dict | None = None) -> da.Array:  # fmt: skip
    """A Zarr array as a dask array chunked like the store (lazy: nothing is read).

    Parameters
    ----------
    path : str, path-like, URL or zarr.Array
    variable : str, optional
    storage_options : dict, optional
        See :func:`open_zarr_array`.

    Returns
    -------
    dask.array.Array
    """
    if isinstance(path, zarr.Array):
        return da.from_zarr(path)
    return da.from_zarr(open_zarr_array(path, variable, storage_options=storage_options))


def store_info(path: str | os.PathLike, variable: str | None = None, *,
               storage_options: dict | None = None) -> dict:  # fmt: skip
    """Shape, chunks, dtype, codecs, sizes and feature names of a store's records."""
    arr = open_zarr_array(path, variable, storage_options=storage_options)
    codecs = [type(c).__name__ for c in getattr(arr.metadata, "codecs", ())] or [
        str(getattr(arr.metadata, "compressor", None))
    ]
    return {
        "path": public_url(os.fspath(path)),
        "array": arr.path or "/",
        "shape": tuple(int(s) for s in arr.shape),
        "chunks": tuple(int(c) for c in arr.chunks),
        "dtype": str(arr.dtype),
        "codecs": codecs,
        "zarr_format": arr.metadata.zarr_format,
        "dimension_names": dimension_names(arr),
        "bytes": int(arr.nbytes),
        "stored_bytes": int(arr.nbytes_stored()),
        "feature_names": None if (n := feature_names(arr)) is None else n.tolist(),
    }


# --------------------------------------------------------------------------- write-back


def _local_root(arr: zarr.Array) -> Path:
    root = getattr(arr.store, "root", None)
    if root is None:
        raise ValueError(
            f"Labels can be written back only into a local Zarr store, not {arr.store}; "
            "write them to a local path with labels_out=PATH."
        )
    return Path(root)


def _remove_settled(path: Path, settle: float = 0.3, limit: float = 10.0) -> None:
    """Remove ``path`` and keep it removed while straggling tasks of a failed write
    (still running in the thread pool after the first error) finish their chunks."""
    deadline = time.monotonic() + limit
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return
        time.sleep(0.05)


def check_labels_target(
    records: zarr.Array, name: str = "cluster", *, into=None, overwrite: bool = False
) -> Path:
    """Where :func:`write_labels` would write, checked without writing anything.

    Returns the local group directory; raises the one clear error for records at a
    store's root (no group beside them), a remote target, the records' own name, or
    labels already there without ``overwrite``.
    """
    if into is None:
        if not records.path:
            raise ValueError(
                "The records are a Zarr array at the root of their store, so there is no "
                "group to write labels beside them; write them to another store (into=PATH, "
                "--labels-out PATH)."
            )
        if name == records.path.rpartition("/")[2]:
            raise ValueError(f"name={name!r} is the records' own name; choose another.")
        group_dir = _local_root(records) / records.path.rpartition("/")[0]
    else:
        if "://" in os.fspath(into):
            raise ValueError(f"into={os.fspath(into)!r}: labels are written to local paths only.")
        group_dir = Path(into)
    if not overwrite and (group_dir / name).exists():
        raise FileExistsError(
            f"{group_dir / name} exists; pass overwrite=True (--overwrite) to replace it."
        )
    return group_dir


class LabelsWriter:
    """Writes whole row chunks of labels into the array being written (picklable: tasks
    on any worker call it).  ``path`` is where the labels land when complete."""

    def __init__(self, array: zarr.Array, path: str):
        self.array = array
        self.path = path
        self.rows = int(array.chunks[0])

    def __call__(self, labels, start: int) -> None:
        """Write ``labels`` of the rows from ``start``: whole chunks only, so that
        concurrent writers never share a chunk."""
        stop = start + labels.shape[0]
        if start % self.rows or not (stop % self.rows == 0 or stop == self.array.shape[0]):
            raise ValueError(
                f"rows {start}:{stop} are not whole chunks of {self.rows} rows of the "
                "labels; read the records chunked as the store (dask.array.from_zarr)."
            )
        self.array[start:stop] = np.asarray(labels, dtype=np.int32)


@contextlib.contextmanager
def labels_writer(
    records: str | os.PathLike | zarr.Array,
    name: str = "cluster",
    *,
    variable: str | None = None,
    into: str | os.PathLike | None = None,
    overwrite: bool = False,
    attrs: dict | None = None,
):
    """A :class:`LabelsWriter` into a new labels array beside the records (see
    :func:`write_labels`); the labels appear under ``name`` only when the block exits
    without error, and nothing is left behind otherwise.

    Yields
    ------
    LabelsWriter
    """
    arr = records if isinstance(records, zarr.Array) else open_zarr_array(records, variable)
    group_dir = check_labels_target(arr, name, into=into, overwrite=overwrite)
    group = zarr.open_group(str(group_dir), mode="r+" if into is None else "a")
    dims = dimension_names(arr)
    for stale in group_dir.glob(f".{name}.tmp-*"):  # left by a killed earlier write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    attributes = dict(attrs or {})
    on_dim = {}
    if dims is not None and arr.metadata.zarr_format == 3:
        on_dim = {"dimension_names": (dims[0],)}
    elif dims is not None:
        attributes["_ARRAY_DIMENSIONS"] = [dims[0]]  # xarray's convention for Zarr v2
    out = group.create_array(
        tmp, shape=(arr.shape[0],), chunks=(arr.chunks[0],), dtype=np.int32,
        attributes=attributes, fill_value=-1,  # never a label: xarray reads it as missing
        **on_dim,
    )  # fmt: skip
    final = group_dir / name
    try:
        yield LabelsWriter(out, str(final))
        if out.nchunks_initialized != out.nchunks:  # labels are never the fill value -1
            raise RuntimeError(
                f"Only {out.nchunks_initialized} of the {out.nchunks} chunks of the labels "
                "were written; nothing was replaced."
            )
        trash = group_dir / f".{name}.old-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.replace(final, trash)
        os.replace(group_dir / tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        _remove_settled(group_dir / tmp)
        raise
    if group.metadata.consolidated_metadata is not None:
        zarr.consolidate_metadata(str(group_dir))


def write_labels(
    labels: da.Array,
    records: str | os.PathLike | zarr.Array,
    name: str = "cluster",
    *,
    variable: str | None = None,
    into: str | os.PathLike | None = None,
    overwrite: bool = False,
    attrs: dict | None = None,
) -> str:
    """Write per-record labels into the records' Zarr group, beside the records.

    The labels become a 1-D int32 array ``name`` in the group that holds the
    records, chunked like the records' rows (each task writes whole chunks, the
    records are never rewritten) and on the same sample dimension, so xarray opens
    it as a variable of the same Dataset.  It is written under a temporary name and
    renamed into place when complete: a failed write leaves nothing behind.

    Parameters
    ----------
    labels : dask.array.Array or ndarray of shape (n_samples,)
    records : path or zarr.Array
        The records (``"store.zarr"`` with ``variable``, or ``"store.zarr/features"``).
    name : str, default="cluster"
    variable : str, optional
        The records' array inside the group at ``records``.
    into : path, optional
        Write into this (local) Zarr group instead, created if missing; the labels
        keep the records' row chunks and sample dimension.
    overwrite : bool, default=False
        Replace an existing array called ``name``.
    attrs : dict, optional
        Attributes of the labels array (e.g. the model that made them).

    Returns
    -------
    str : the path of the written array.
    """
    arr = records if isinstance(records, zarr.Array) else open_zarr_array(records, variable)
    if labels.shape != (arr.shape[0],):
        raise ValueError(f"labels have shape {labels.shape}; expected ({arr.shape[0]},).")
    from ._engine.parallel import active_client, run_with_progress

    with labels_writer(arr, name, into=into, overwrite=overwrite, attrs=attrs) as writer:
        labels = da.asarray(labels).astype(np.int32).rechunk(writer.rows)
        stored = da.store(labels, writer.array, lock=False, compute=False)
        run_with_progress([stored], active_client())
    return writer.path
