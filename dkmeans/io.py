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
import fsspec
import numpy as np
import zarr

from ._engine.errors import (
    InputError,
    NotFoundError,
    OutputExistsError,
    ParameterError,
    StoreError,
    StoreWriteError,
)
from ._engine.store import (
    ICECHUNK_REPOS,
    ChunkReadError,
    check_writable,
    dask_array,
    dimension_names,
    feature_names,
    open_zarr_array,
    public_url,
)

__all__ = [
    "ChunkReadError",
    "LabelsWriter",
    "existing_labels",
    "feature_names",
    "from_zarr",
    "labels_writer",
    "open_labels",
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
        return dask_array(path)
    return dask_array(open_zarr_array(path, variable, storage_options=storage_options))


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
        raise StoreError(
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

    Returns the local group directory (None for records on an object store); raises
    the one clear error for records at a store's root (no group beside them), a remote
    ``into``, the records' own name, or labels already there without ``overwrite``.
    """
    if into is None and _icechunk_of(records) is not None:
        from ._engine.parallel import active_client

        if active_client() is not None:  # a session's writes must stay in this process
            raise StoreError(
                "Labels are committed to an Icechunk repository from the threaded scheduler; "
                "run this job without a cluster, or write the labels elsewhere (labels_out)."
            )
        parent = records.path.rpartition("/")[0]
        group = zarr.open_group(store=records.store, path=parent, mode="r")
        if name == records.path.rpartition("/")[2]:
            raise ParameterError(f"name={name!r} is the records' own name; choose another.")
        if name in group and not overwrite:
            raise OutputExistsError(
                f"{_icechunk_of(records)[3]} holds labels {name!r}; pass overwrite=True "
                "(--overwrite) to replace them."
            )
        return None
    if into is None and _on_object_store(records):
        _remote_target(records, name, overwrite)
        return None
    if into is None:
        if not records.path:
            raise StoreError(
                "The records are a Zarr array at the root of their store, so there is no "
                "group to write labels beside them; write them to another store (into=PATH, "
                "--labels-out PATH)."
            )
        if name == records.path.rpartition("/")[2]:
            raise ParameterError(f"name={name!r} is the records' own name; choose another.")
        group_dir = _local_root(records) / records.path.rpartition("/")[0]
    else:
        if "://" in os.fspath(into):
            raise StoreError(f"into={os.fspath(into)!r}: labels are written to local paths only.")
        group_dir = Path(into)
    if not overwrite and (group_dir / name).exists():
        raise OutputExistsError(
            f"{group_dir / name} exists; pass overwrite=True (--overwrite) to replace it."
        )
    return group_dir


# --------------------------------------------------------------------------- object stores
#
# Object stores have no rename, so labels beside records there are versioned: a run
# writes a NEW array ``<name>-<version>`` (its chunks, then checks that every chunk is
# there), then flips one small pointer, the group attribute ``dkmeans:labels``
# (``{name: "<name>-<version>"}``), in a single PUT of the group's metadata.  Readers
# that follow the pointer (:func:`open_labels`) see the old labels or the new ones,
# never a mix; a write killed midway leaves the pointer, and so the old labels, as they
# were.  The version before the new one is kept for readers still on it; older ones,
# and the leftovers of killed writes, are deleted by the next write.  A lock object,
# created only if absent (a conditional PUT), keeps two writers of one name apart.

POINTER = "dkmeans:labels"


def _icechunk_of(records: zarr.Array):
    """``(store, repository, branch, url)`` of records opened from an Icechunk URL."""
    return ICECHUNK_REPOS.get(id(records.store))


@contextlib.contextmanager
def _icechunk_labels_writer(records: zarr.Array, name: str, attrs):
    """Labels as ONE Icechunk commit on the records' branch, its message naming the
    model and k; a writer that committed first makes this one fail, committing nothing."""
    import icechunk

    _, repo, branch, url = _icechunk_of(records)
    session = repo.writable_session(branch)
    parent = records.path.rpartition("/")[0]
    group = zarr.open_group(store=session.store, path=parent, mode="r+")
    if name in group:
        del group[name]
    out = group.create_array(
        name, shape=(records.shape[0],), chunks=(records.chunks[0],), dtype=np.int32,
        fill_value=-1, **_label_attributes(records, attrs),
    )  # fmt: skip
    yield LabelsWriter(out, f"{url}#{'/'.join(p for p in (parent, name) if p)}")
    _check_complete(out)
    info = dict(attrs or {})
    message = f"dkmeans labels {name!r}: k={info.get('k')}, model {info.get('model')}"
    try:
        session.commit(message)
    except icechunk.ConflictError:
        raise OutputExistsError(
            f"Another writer committed to {url} while these labels were written; nothing "
            "was committed. Run again to label the new state."
        ) from None


def _on_object_store(records: zarr.Array) -> bool:
    fs = getattr(records.store, "fs", None)
    return fs is not None and "file" not in fs.protocol


def _sync_fs(records: zarr.Array):
    """A blocking file system like the records' (zarr's own is asynchronous, bound to
    zarr's event loop): for the lock and for deleting old versions."""
    fs = records.store.fs
    options = {k: v for k, v in fs.storage_options.items() if k not in ("asynchronous", "loop")}
    proto = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    return fsspec.filesystem(proto, **options)


def _full_path(records: zarr.Array) -> str:
    """The records' key prefix in the object store (bucket/...), wherever zarr rooted it."""
    return "/".join(p for p in (records.store.path.strip("/"), records.path) if p)


def _group_of(records: zarr.Array, mode: str = "r") -> zarr.Group:
    """The group beside (above) the records on the object store."""
    from zarr.storage import FsspecStore

    parent = _full_path(records).rpartition("/")[0]
    store = FsspecStore(records.store.fs, path=parent, read_only=mode == "r")
    return zarr.open_group(store=store, mode=mode)


def _url(records: zarr.Array, name: str) -> str:
    fs = records.store.fs
    proto = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    return f"{proto}://{_full_path(records).rpartition('/')[0]}/{name}"


def _remote_target(records: zarr.Array, name: str, overwrite: bool) -> None:
    check_writable(_url(records, name))
    if "/" not in _full_path(records):
        raise StoreError(
            "The records are at the root of their bucket, so there is no group to write "
            "labels beside them; keep the records in a group (bucket/store.zarr/features)."
        )
    if name == _full_path(records).rpartition("/")[2]:
        raise ParameterError(f"name={name!r} is the records' own name; choose another.")
    current = _group_of(records).attrs.get(POINTER, {}).get(name)
    if current is not None and not overwrite:
        raise OutputExistsError(
            f"{_url(records, current)} holds labels {name!r}; pass overwrite=True "
            "(--overwrite) to replace them."
        )


def _check_complete(out: zarr.Array) -> None:
    if out.nchunks_initialized != out.nchunks:  # labels are never the fill value -1
        raise StoreWriteError(
            f"Only {out.nchunks_initialized} of the {out.nchunks} chunks of the labels "
            "were written; nothing was replaced."
        )


@contextlib.contextmanager
def _write_lock(fs, path: str, what: str):
    """Hold ``path`` (created only if absent) while writing ``what``; a lock left by a
    dead process of this machine is taken over."""
    import json
    import socket

    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    for attempt in range(2):
        try:
            with fs.open(path, "xb") as f:
                f.write(json.dumps(me).encode())
            break
        except FileExistsError:
            try:
                held = json.loads(fs.cat(path))
            except Exception:  # half-written or gone: treat as held
                held = {}
            if attempt == 0 and held.get("host") == me["host"] and not _alive(held.get("pid")):
                fs.rm(path)  # a killed earlier write of this machine
                continue
            raise OutputExistsError(
                f"Labels {public_url(what)} are being written by another job "
                f"(pid {held.get('pid')} on {held.get('host')}); wait for it, or remove "
                f"{public_url(path)} if no job is writing."
            ) from None
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)


def _alive(pid) -> bool:
    import psutil

    return isinstance(pid, int) and psutil.pid_exists(pid)


@contextlib.contextmanager
def _remote_labels_writer(records: zarr.Array, name: str, attrs):
    group = _group_of(records, mode="r+")
    version = f"{name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    fs = _sync_fs(records)
    lock_path = _url(records, f".{name}.lock").split("://", 1)[1]
    with _write_lock(fs, lock_path, _url(records, name)):
        before = dict(group.attrs.get(POINTER, {}))
        previous = before.get(name)
        for stale in _versions(group, name) - {previous}:  # older ones and killed writes
            fs.rm(_url(records, stale).split("://", 1)[1], recursive=True)
        out = group.create_array(
            version, shape=(records.shape[0],), chunks=(records.chunks[0],), dtype=np.int32,
            fill_value=-1, **_label_attributes(records, attrs),
        )  # fmt: skip
        try:
            yield LabelsWriter(out, _url(records, version))
            _check_complete(out)
            group.attrs[POINTER] = {**before, name: version}  # the switch: one PUT
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(_url(records, version).split("://", 1)[1], recursive=True)
            raise


def _versions(group: zarr.Group, name: str) -> set[str]:
    """The group's label versions of ``name`` (exactly ``<name>-<time>-<id>``: a user's
    own ``cluster-centres`` is never one)."""
    import re
    import warnings

    version = re.compile(rf"{re.escape(name)}-\d{{8}}T\d{{6}}-[0-9a-f]{{8}}")
    with warnings.catch_warnings():  # our own lock object is no Zarr node
        warnings.filterwarnings("ignore", message=r"Object at \..*\.lock is not recognized")
        keys = list(group.array_keys())
    return {k for k in keys if version.fullmatch(k)}


def open_labels(records: str | os.PathLike | zarr.Array, name: str = "cluster", *,
                variable: str | None = None,
                storage_options: dict | None = None) -> zarr.Array:  # fmt: skip
    """The labels array ``name`` beside the records, following the pointer a write on an
    object store leaves (local stores hold it under ``name`` itself).

    Returns
    -------
    zarr.Array
    """
    arr = records if isinstance(records, zarr.Array) else open_zarr_array(
        records, variable, storage_options=storage_options
    )  # fmt: skip
    group = _group_of(arr)
    target = group.attrs.get(POINTER, {}).get(name, name)
    if target not in group:
        raise NotFoundError(f"No labels {name!r} beside {public_url(_describe(arr))}.")
    return group[target]


def existing_labels(records: zarr.Array, name: str = "cluster", *,
                    into: str | os.PathLike | None = None) -> zarr.Array | None:  # fmt: skip
    """The labels array that :func:`labels_writer` (same ``name`` and ``into``) would
    replace, opened for reading, or None when there is none.

    Open it before the writer starts: a local or object-store writer switches to the
    new labels only when its block ends, so the array stays readable meanwhile (the
    final pass reads it to count the label churn).

    Returns
    -------
    zarr.Array or None
    """
    if into is not None:
        if "://" in os.fspath(into) or not Path(into).is_dir():
            return None
        group = zarr.open_group(os.fspath(into), mode="r")
    elif _icechunk_of(records) is None and _on_object_store(records):
        try:
            return open_labels(records, name)
        except NotFoundError:
            return None
    elif not records.path:
        return None
    else:
        group = zarr.open_group(store=records.store, path=records.path.rpartition("/")[0],
                                mode="r")  # fmt: skip
    node = group.get(name)
    return node if isinstance(node, zarr.Array) else None


def _describe(arr: zarr.Array) -> str:
    return _url(arr, arr.path.rpartition("/")[2]) if _on_object_store(arr) else str(arr.store)


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
            raise InputError(
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
    if group_dir is None and _icechunk_of(arr) is not None:  # one commit
        with _icechunk_labels_writer(arr, name, attrs) as writer:
            yield writer
        return
    if group_dir is None:  # an object store: no rename, a pointer switch instead
        with _remote_labels_writer(arr, name, attrs) as writer:
            yield writer
        return
    group = zarr.open_group(str(group_dir), mode="r+" if into is None else "a")
    final = group_dir / name
    # the lock first: the cleanup below must not touch another writer's array
    with _write_lock(fsspec.filesystem("file"), str(group_dir / f".{name}.lock"), str(final)):
        for stale in group_dir.glob(f".{name}.tmp-*"):  # left by a killed earlier write
            shutil.rmtree(stale, ignore_errors=True)
        tmp = f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        out = group.create_array(
            tmp, shape=(arr.shape[0],), chunks=(arr.chunks[0],), dtype=np.int32,
            fill_value=-1,  # never a label: xarray reads the fill value as missing
            **_label_attributes(arr, attrs),
        )  # fmt: skip
        try:
            yield LabelsWriter(out, str(final))
            _check_complete(out)
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


def _label_attributes(records: zarr.Array, attrs) -> dict:
    """The labels array's attributes and sample dimension, in the records' convention."""
    dims = dimension_names(records)
    attributes = dict(attrs or {})
    if dims is not None and records.metadata.zarr_format == 3:
        return {"attributes": attributes, "dimension_names": (dims[0],)}
    if dims is not None:
        attributes["_ARRAY_DIMENSIONS"] = [dims[0]]  # xarray's convention for Zarr v2
    return {"attributes": attributes}


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
        raise InputError(f"labels have shape {labels.shape}; expected ({arr.shape[0]},).")
    from ._engine.parallel import active_client, run_with_progress

    with labels_writer(arr, name, into=into, overwrite=overwrite, attrs=attrs) as writer:
        labels = da.asarray(labels).astype(np.int32).rechunk(writer.rows)
        stored = da.store(labels, writer.array, lock=False, compute=False)
        run_with_progress([stored], active_client(), "writing labels")
    return writer.path
