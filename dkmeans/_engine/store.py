"""Opening Zarr stores as (n_samples, n_features) records: paths, groups, feature names.

Engine-level, so input validation can open a path; ``dkmeans.io`` re-exports it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr

from . import backend as B
from . import chunk_read
from .errors import ChunkReadError, NotFoundError, ParameterError, StoreError, UnknownNameError

_BACKENDS = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}  # fmt: skip
_READ_ONLY = ("http", "https")


def _is_remote(path: str) -> bool:
    return "://" in path


def protocol(path: str) -> str:
    """The URL's scheme (``"s3"``, ``"gs"``, ...), or ``"file"`` for a local path."""
    return path.split("://", 1)[0].lower() if _is_remote(path) else "file"


def public_url(path: str) -> str:
    """The URL without any user:password part, for messages and metadata."""
    if not _is_remote(path):
        return path
    scheme, rest = path.split("://", 1)
    host, sep, tail = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{sep}{tail}"


def check_writable(path: str) -> None:
    """Refuse read-only protocols (HTTP) before any work."""
    if protocol(path) in _READ_ONLY:
        raise StoreError(
            f"{public_url(path)} is served over HTTP, which is read-only here; "
            "write to a local path or an object store (s3://, gs://, az://)."
        )


_REFUSALS = ("AccessDenied", "InvalidAccessKeyId", "Forbidden", "SignatureDoesNotMatch", "403")


def _credentials_error(err: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(err)}
    text = " ".join(str(e) for e in _chain(err))
    refused = {"NoCredentialsError", "PartialCredentialsError", "PermissionError"}
    return bool(names & refused) or any(code in text for code in _REFUSALS)


def _chain(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def remote_error(path: str, err: BaseException, what: str = "open") -> Exception:
    """The one clear error for a failed remote access: a missing back-end, credentials
    refused or absent, a missing bucket, or nothing at the path (never the credentials)."""
    url, scheme = public_url(path), protocol(path)
    if isinstance(err, ImportError):
        package = _BACKENDS.get(scheme, "an fsspec back-end")
        return ImportError(f"Reading {scheme}:// stores needs {package}: pip install {package}.")
    if _credentials_error(err):
        return PermissionError(
            f"Access to {url} was refused or no credentials were found ({type(err).__name__}); "
            "give credentials with storage_options (--storage-option KEY=VALUE) or the "
            "cloud's environment variables (e.g. AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL)."
        )
    return FileNotFoundError(f"Could not {what} {url}: {type(err).__name__}.")


S3_RETRIES = {"max_attempts": 10, "mode": "standard"}  # botocore's, for 503s and resets


def with_retries(path: str, storage_options: dict | None) -> dict:
    """Storage options with the back-end's retries on transient faults (throttling,
    dropped connections), unless the caller chose their own."""
    options = dict(storage_options or {})
    if protocol(path) in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", dict(S3_RETRIES))
        options["config_kwargs"] = config
    return options


def _missing(path: str, storage_options: dict | None) -> Exception:
    """FileNotFoundError naming what is missing: the bucket, or the store in it."""
    import fsspec

    url = public_url(path)
    try:
        fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        bucket = root.split("/", 1)[0]
        if not fs.exists(bucket):
            return FileNotFoundError(f"No bucket {bucket!r} for {url}: check the URL.")
    except Exception as err:  # the check itself failed: report that cause
        return remote_error(path, err)
    return FileNotFoundError(f"No Zarr store at {url}: check the path.")


ICECHUNK_REPOS: dict = {}  # id(store) -> (store, repository, branch, url): for writes


def _icechunk_storage(location: str, storage_options: dict | None):
    import icechunk

    if not _is_remote(location):
        return icechunk.local_filesystem_storage(location)
    if protocol(location) != "s3":
        raise StoreError(f"icechunk://{public_url(location)}: this dkmeans opens Icechunk "
                         "repositories on local paths and s3:// only.")  # fmt: skip
    bucket, _, prefix = location.split("://", 1)[1].partition("/")
    o = storage_options or {}
    client = o.get("client_kwargs", {})
    return icechunk.s3_storage(
        bucket=bucket, prefix=prefix, endpoint_url=client.get("endpoint_url"),
        region=client.get("region_name"), access_key_id=o.get("key"),
        secret_access_key=o.get("secret"), allow_http=True, force_path_style=True,
        from_env=not o,
    )  # fmt: skip


def _open_icechunk(path: str, storage_options: dict | None):
    """``icechunk://LOCATION[@BRANCH][#PATH]``: a repository (a local path or s3://...),
    its branch (default main), and the node inside it."""
    import icechunk

    rest = path.split("://", 1)[1]
    rest, _, inner = rest.partition("#")
    location, branch = rest, "main"
    if "@" in rest.rsplit("/", 1)[-1]:
        location, _, branch = rest.rpartition("@")
    try:
        repo = icechunk.Repository.open(_icechunk_storage(location, storage_options))
        session = repo.readonly_session(branch=branch)
    except icechunk.IcechunkError as err:
        raise NotFoundError(
            f"No Icechunk repository or branch {branch!r} at {public_url(location)} "
            f"({type(err).__name__}); check the URL."
        ) from None
    store = session.store
    ICECHUNK_REPOS[id(store)] = (store, repo, branch, f"icechunk://{public_url(location)}@{branch}")
    try:
        return zarr.open(store=store, path=inner, mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError):
        raise NotFoundError(
            f"Nothing at {inner!r} in the Icechunk repository {public_url(location)}@{branch}."
        ) from None


def open_zarr_array(path: str | os.PathLike, variable: str | None = None, *,
                    storage_options: dict | None = None) -> zarr.Array:  # fmt: skip
    """Open a Zarr array by path or URL, or one variable of a Zarr group.

    Parameters
    ----------
    path : str or path-like
        A Zarr array, or a group holding the array.  ``"store.zarr/features"``
        addresses an array inside a group directly.  URLs (``s3://``, ``gs://``,
        ``az://`` / ``abfs://``, ``http(s)://`` read-only) go through fsspec.
    variable : str, optional
        Name of the array inside the group at ``path``.  May be omitted when the
        group holds exactly one 2-D array.
    storage_options : dict, optional
        For URLs: the fsspec file system's options (credentials, ``endpoint_url`` in
        ``client_kwargs``, ...); without them, the cloud's ambient credentials.

    Returns
    -------
    zarr.Array

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path`` (or its bucket does not exist).
    PermissionError
        If the object store refuses the credentials or finds none.
    KeyError
        If ``variable`` is not in the group, or the group's choice is ambiguous.
    """
    spath = os.fspath(path)
    remote = _is_remote(spath)
    if protocol(spath) == "icechunk":
        return _pick_array(_open_icechunk(spath, storage_options), spath, variable)
    if not remote and storage_options:
        raise ParameterError("storage_options apply to URLs (s3://, gs://, ...), not local paths.")
    if not remote and not Path(spath).exists():
        raise NotFoundError(f"No Zarr store at {spath!r}: check the path.")
    options = {"storage_options": with_retries(spath, storage_options)} if remote else {}
    try:
        node = zarr.open(store=spath, mode="r", **options)
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as err:
        if remote:
            raise _missing(spath, storage_options) from None
        raise NotFoundError(
            f"{spath!r} is not a Zarr array or group ({err}). Point at a Zarr v2/v3 store."
        ) from err
    except ValueError as err:
        raise NotFoundError(
            f"{public_url(spath)!r} is not a Zarr array or group. Point at a Zarr v2/v3 store."
        ) from (None if remote else err)
    except Exception as err:
        if remote:
            raise remote_error(spath, err) from None
        raise
    return _pick_array(node, spath, variable)


def _pick_array(node, spath: str, variable: str | None) -> zarr.Array:
    """The 2-D records array: ``variable`` of a group, its only 2-D array, or the node."""
    if variable is not None:
        if not isinstance(node, zarr.Group):
            raise UnknownNameError(
                f"{public_url(spath)!r} is a Zarr array, not a group: drop variable={variable!r}."
            )
        if variable not in node:
            raise UnknownNameError(
                f"No variable {variable!r} in Zarr group {public_url(spath)!r}; it holds "
                f"{sorted(node.array_keys())}."
            )
        node = node[variable]
    if isinstance(node, zarr.Group):
        arrays = [name for name, arr in node.arrays() if arr.ndim == 2]
        if len(arrays) != 1:
            raise UnknownNameError(
                f"Zarr group {public_url(spath)!r} holds {len(arrays)} 2-D arrays "
                f"{sorted(arrays)}: name one with variable=NAME (or the path 'STORE/NAME')."
            )
        node = node[arrays[0]]
    return node


def describe_store(arr: zarr.Array) -> str:
    """Where an array lives, for messages: a URL without credentials, or a local path."""
    fs = getattr(arr.store, "fs", None)
    if fs is not None and "file" not in fs.protocol:
        proto = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
        return f"{proto}://{arr.store.path.strip('/')}"
    return str(getattr(arr.store, "root", arr.store))


class ChunkReader:
    """A Zarr array as dask reads it, block by block; a failed read raises one
    ``ChunkReadError`` naming the store and the chunk's key (picklable).

    A block that is one whole chunk is decoded straight into its own memory where the
    layout allows (``chunk_read``); ``kept``: into ``backend.host_empty`` memory, for
    blocks that are kept (see there), else into ``np.empty``, which the allocator
    reuses from one streamed pass to the next.
    """

    def __init__(self, arr: zarr.Array, kept: bool = False):
        self.arr = arr
        self.kept = kept
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        self._decode = chunk_read.decoder(arr)

    def __getitem__(self, key):
        try:
            block = None
            if self._decode is not None:
                empty = B.host_empty if self.kept else np.empty
                block = chunk_read.whole_chunk(self.arr, key, self._decode, empty)
            if block is None:
                block = self.arr[key]
                block = B.host_copy(block) if self.kept else block
            return block
        except Exception as err:
            raise ChunkReadError(
                f"Could not read chunk {self._chunk_key(key)} of {describe_store(self.arr)}: "
                f"{type(err).__name__}: {err}. The chunk is corrupt or unreachable; restore "
                "it or rewrite the store."
            ) from err

    def _chunk_key(self, key) -> str:
        index = tuple((k.start or 0) // c if isinstance(k, slice) else int(k) // c
                      for k, c in zip(key, self.arr.chunks, strict=False))  # fmt: skip
        encode = getattr(self.arr.metadata, "encode_chunk_key", None)
        chunk = encode(index) if encode is not None else ".".join(map(str, index))
        return f"{self.arr.path}/{chunk}" if self.arr.path else chunk


def dask_array(arr: zarr.Array, *, kept: bool = False):
    """The Zarr array as a dask array chunked like the store (lazy), its reads named.

    ``kept``: blocks for keeping in memory (``ChunkReader``), under another name.
    """
    import dask.array as da
    from dask.base import tokenize

    meta = np.empty((0,) * arr.ndim, dtype=arr.dtype)
    name = f"{'dkmeans-keep-' if kept else ''}from-zarr-{tokenize(arr)}"
    return da.from_array(ChunkReader(arr, kept), chunks=arr.chunks, name=name, asarray=False,
                         meta=meta)  # fmt: skip


def kept_reads(X):
    """``X``'s blocks read straight into memory that is kept, when ``X`` is exactly an
    array ``dask_array`` made, still to be read (not derived from one, not persisted:
    a persisted array keeps its name but no longer reads); else None.

    The reader is the one in X's own graph, under the key dask's ``from_array`` gives
    it: should that change, this finds none, and the blocks are copied as before.
    """
    key = f"original-{getattr(X, 'name', '')}"
    layer = X.dask.layers.get(key) if key.startswith("original-from-zarr-") else None
    reader = None if layer is None else layer.get(key)
    if not isinstance(reader, ChunkReader) or reader.kept:
        return None
    return dask_array(reader.arr, kept=True)


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
        raise StoreError(
            f"The store lists {names.shape[0]} feature names for {arr.shape[1]} features; "
            "fix its feature_names attribute (or feature coordinate)."
        )
    values, counts = np.unique(names, return_counts=True)
    if (counts > 1).any():
        raise StoreError(
            f"The store's feature names are duplicated: {sorted(values[counts > 1])}; "
            "give every feature a unique name."
        )
    return names
