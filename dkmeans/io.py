"""Open Zarr stores as (n_samples, n_features) arrays.  Thin: no arithmetic."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import zarr

__all__ = ["from_zarr", "open_zarr_array"]


def _is_remote(path: str) -> bool:
    return "://" in path


def open_zarr_array(path: str | os.PathLike, variable: str | None = None) -> zarr.Array:
    """Open a Zarr array by path, or one variable of a Zarr group.

    Parameters
    ----------
    path : str or path-like
        A Zarr array, or a group holding the array.  ``"store.zarr/features"``
        addresses an array inside a group directly.
    variable : str, optional
        Name of the array inside the group at ``path``.  May be omitted when the
        group holds exactly one 2-D array.

    Returns
    -------
    zarr.Array

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path`` or it is not a Zarr store.
    KeyError
        If ``variable`` is not in the group, or the group's choice is ambiguous.
    """
    spath = os.fspath(path)
    if not _is_remote(spath) and not Path(spath).exists():
        raise FileNotFoundError(f"No Zarr store at {spath!r}: check the path.")
    try:
        node = zarr.open(store=spath, mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, ValueError) as err:
        raise FileNotFoundError(
            f"{spath!r} is not a Zarr array or group ({err}). Point at a Zarr v2/v3 store."
        ) from err
    if variable is not None:
        if not isinstance(node, zarr.Group):
            raise KeyError(f"{spath!r} is a Zarr array, not a group: drop variable={variable!r}.")
        if variable not in node:
            raise KeyError(
                f"No variable {variable!r} in Zarr group {spath!r}; it holds "
                f"{sorted(node.array_keys())}."
            )
        node = node[variable]
    if isinstance(node, zarr.Group):
        arrays = [name for name, arr in node.arrays() if arr.ndim == 2]
        if len(arrays) != 1:
            raise KeyError(
                f"Zarr group {spath!r} holds {len(arrays)} 2-D arrays {sorted(arrays)}: name "
                "one with variable=NAME (or the path 'STORE/NAME')."
            )
        node = node[arrays[0]]
    return node


def from_zarr(path: str | os.PathLike | zarr.Array, variable: str | None = None) -> da.Array:
    """A Zarr array as a dask array chunked like the store (lazy: nothing is read).

    Parameters
    ----------
    path : str, path-like or zarr.Array
    variable : str, optional
        See :func:`open_zarr_array`.

    Returns
    -------
    dask.array.Array
    """
    arr = path if isinstance(path, zarr.Array) else open_zarr_array(path, variable)
    return da.from_zarr(arr)
