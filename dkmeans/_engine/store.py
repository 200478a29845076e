"""Opening Zarr stores as (n_samples, n_features) records: paths, groups, feature names.

Engine-level, so input validation can open a path; ``dkmeans.io`` re-exports it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr


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


def dimension_names(arr: zarr.Array) -> tuple | None:
    """The array's dimension names (Zarr v3 metadata, or xarray's v2 attribute)."""
    names = getattr(arr.metadata, "dimension_names", None)
    if names is None:
        names = arr.attrs.get("_ARRAY_DIMENSIONS")
    return tuple(names) if names is not None and all(n is not None for n in names) else None


def _parent_group(arr: zarr.Array) -> zarr.Group:
    parent = arr.path.rpartition("/")[0]
    return zarr.open_group(store=arr.store, path=parent, mode="r")


def feature_names(arr: zarr.Array) -> np.ndarray | None:
    """Feature names of a (n_samples, n_features) Zarr array, or None.

    Taken from the array's ``feature_names`` attribute, or else from the xarray
    coordinate of its feature dimension in the same group.

    Raises
    ------
    ValueError
        If the names are duplicated or do not match the number of features.
    """
    names = arr.attrs.get("feature_names")
    dims = dimension_names(arr)
    if names is None and dims is not None and arr.path:
        group = _parent_group(arr)
        if dims[-1] in group and group[dims[-1]].ndim == 1:
            names = group[dims[-1]][:]
    if names is None:
        return None
    names = np.array([str(n) for n in np.asarray(names, dtype=object).ravel()])
    if names.shape != (arr.shape[1],):
        raise ValueError(
            f"The store lists {names.shape[0]} feature names for {arr.shape[1]} features; "
            "fix its feature_names attribute (or feature coordinate)."
        )
    values, counts = np.unique(names, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"The store's feature names are duplicated: {sorted(values[counts > 1])}; "
            "give every feature a unique name."
        )
    return names
