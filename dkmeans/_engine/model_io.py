"""Save and load fitted models as a directory of JSON and ``.npy`` files (never pickle).

The estimators' ``save`` method and the format; ``dkmeans.persistence`` is the public
module (above the estimators, which register here by subclassing ``SaveMixin``).

Layout of a model directory::

    model.json        format and version, library versions, every step's class,
                      parameters and scalar attributes, the k table and the k
                      choice's confidence, the training data's fingerprint,
                      free-form metadata
    arrays/*.npy      every array attribute (loaded with ``allow_pickle=False``)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import numbers
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from . import backend as B
from .confidence import KConfidence
from .errors import InputTypeError, NotFittedError, NotFoundError, OutputExistsError, StoreError

__all__ = ["FORMAT_VERSION", "SaveMixin", "data_fingerprint", "load", "save"]

FORMAT = "dkmeans-model"
FORMAT_VERSION = 1
_SKIPPED = {"labels_", "k_selection_"}  # data-sized, or saved separately (the k table)


_CLASSES: dict[str, type] = {}  # the saveable estimators, by class name


class SaveMixin:
    """``save(path)`` for dkmeans estimators (see :func:`dkmeans.save`); each public
    subclass registers itself so that :func:`load` can rebuild it."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("dkmeans.") and not cls.__name__.startswith("_"):
            _CLASSES[cls.__name__] = cls  # dkmeans' own (a user's subclass is not one)

    def save(self, path, **kwargs):
        """Save the fitted estimator to the directory ``path`` (see :func:`dkmeans.save`)."""
        return save(self, path, **kwargs)


def _classes() -> dict:
    return _CLASSES


def _json_value(value):
    """A JSON-safe form of a parameter or scalar attribute, or raise TypeError."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, range):
        return {"range": [value.start, value.stop, value.step]}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"range"}:
        return range(*value["range"])
    return value


def _steps(model) -> list[tuple[str, object]]:
    if hasattr(model, "steps"):
        return [(name, est) for name, est in model.steps]
    return [(type(model).__name__.lower(), model)]


def _describe(name: str, est, arrays_dir: Path) -> dict:
    classes = _classes()
    cls = type(est).__name__
    if classes.get(cls) is not type(est):
        raise InputTypeError(
            f"Cannot save a {cls}: dkmeans saves KMeans, PCA, StandardScaler and Pipelines of them."
        )
    if not any(k.endswith("_") and not k.startswith("_") for k in vars(est)):
        raise NotFittedError(f"The {cls} is not fitted; fit it before saving.")
    params, arrays, scalars = {}, [], {}
    for key, value in est.get_params(deep=False).items():
        if isinstance(value, np.ndarray):
            np.save(arrays_dir / f"{name}__param__{key}.npy", value, allow_pickle=False)
            params[key] = {"array": f"{name}__param__{key}.npy"}
            continue
        try:
            params[key] = _json_value(value)
        except TypeError:
            params[key] = None  # e.g. a Generator random_state: not reproducible anyway
    for key, value in vars(est).items():
        if not key.endswith("_") or key.startswith("_") or key in _SKIPPED:
            continue
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                value = value.astype(str)
            np.save(arrays_dir / f"{name}__{key}.npy", value, allow_pickle=False)
            arrays.append(key)
        else:
            try:
                scalars[key] = _json_value(value)
            except TypeError:
                continue
    return {"name": name, "class": cls, "params": params, "arrays": arrays, "scalars": scalars}


def data_fingerprint(X) -> dict:
    """Shape, dtype, feature names, source and a hash of the first and last rows of X.

    Reads at most 2,048 rows, so it is cheap on any store.
    """
    from .store import public_url
    from .validation import as_input

    inp = as_input(X)
    arr = inp.array
    n = inp.n_samples
    head = _row_bytes(arr[: min(n, 1024)].compute())
    tail = _row_bytes(arr[max(n - 1024, 0) :].compute())
    digest = hashlib.sha256()
    for part in (str(arr.shape).encode(), str(arr.dtype).encode(), head, tail):
        digest.update(part)
    return {
        "n_samples": n,
        "n_features": inp.n_features,
        "dtype": str(arr.dtype),
        "source": public_url(os.fspath(X))
        if isinstance(X, str | os.PathLike)
        else type(X).__name__,
        "feature_names": None if inp.feature_names is None else list(inp.feature_names),
        "sha256": digest.hexdigest(),
    }


def _row_bytes(rows) -> bytes:
    """The bytes of some rows: dense values, or a CSR block's arrays (not made dense)."""
    if B.is_sparse(rows):
        rows = rows.tocsr()
        return b"".join(np.ascontiguousarray(a).tobytes()
                        for a in (rows.indptr, rows.indices, rows.data))  # fmt: skip
    return np.asarray(B.to_host(rows)).tobytes()


def save(model, path, *, overwrite: bool = False, fingerprint: dict | None = None,
         metadata: dict | None = None,
         storage_options: dict | None = None) -> Path | str:  # fmt: skip
    """Save a fitted KMeans, PCA, StandardScaler, or a Pipeline of them, to a directory.

    Written under a temporary name and moved into place when complete.

    Parameters
    ----------
    model : fitted estimator or sklearn.pipeline.Pipeline
    path : str or path-like
        The model directory.
    overwrite : bool, default=False
        Replace an existing directory.
    fingerprint : dict, optional
        Of the training data (:func:`data_fingerprint`).
    metadata : dict, optional
        Anything JSON-serialisable, stored as is.
    storage_options : dict, optional
        For a URL (``s3://``, ``gs://``, ...): the fsspec file system's options.  On an
        object store (no rename) the arrays go under a new ``arrays-<id>/`` and
        ``model.json``, written last in one PUT, switches to them.

    Returns
    -------
    pathlib.Path, or the URL
    """
    if "://" in os.fspath(path):
        return _save_remote(model, os.fspath(path), overwrite, fingerprint, metadata,
                            storage_options)  # fmt: skip
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it.")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_local(model, tmp, fingerprint, metadata)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def model_exists(path, storage_options: dict | None = None) -> bool:
    """Whether a model is saved at ``path`` (a directory, or a URL holding model.json)."""
    if "://" not in os.fspath(path):
        return Path(path).exists()
    import fsspec

    from .store import with_retries

    url = os.fspath(path).rstrip("/")
    fs, root = fsspec.core.url_to_fs(url, **with_retries(url, storage_options))
    return fs.exists(f"{root}/model.json")


def _save_remote(model, url: str, overwrite, fingerprint, metadata, storage_options) -> str:
    import tempfile

    import fsspec

    from .store import check_writable, public_url, with_retries

    check_writable(url)
    fs, root = fsspec.core.url_to_fs(url, **with_retries(url, storage_options))
    if model_exists(url, storage_options) and not overwrite:
        raise OutputExistsError(
            f"{public_url(url)} holds a model; pass overwrite=True (--overwrite) to replace it."
        )
    arrays = f"arrays-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="dkmeans-model-") as tmp:
        _write_local(model, Path(tmp) / "m", fingerprint, metadata, arrays=arrays)
        fs.put(str(Path(tmp) / "m" / arrays), f"{root}/{arrays}", recursive=True)
        fs.pipe(f"{root}/model.json", (Path(tmp) / "m" / "model.json").read_bytes())  # switch
    for old in fs.ls(root, detail=False):  # arrays of earlier saves
        name = old.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("arrays") and name != arrays:
            fs.rm(old, recursive=True)
    return url


def _write_local(model, folder: Path, fingerprint, metadata, *, arrays: str = "arrays") -> None:
    """The model directory's files in ``folder`` (arrays under ``arrays/``)."""
    from importlib.metadata import PackageNotFoundError, version

    import dask
    import sklearn
    import zarr

    try:
        __version__ = version("dkmeans")
    except PackageNotFoundError:  # run from a source tree that was not installed
        __version__ = "unknown"
    (folder / arrays).mkdir(parents=True)
    steps = [_describe(name, est, folder / arrays) for name, est in _steps(model)]
    km = _steps(model)[-1][1]
    selection = getattr(km, "k_selection_", None)
    k_table = None if selection is None else json.loads(selection.table.to_json(orient="records"))
    confidence = getattr(selection, "confidence", None)
    versions = {"dkmeans": __version__, "numpy": np.__version__,
                "scikit-learn": sklearn.__version__, "dask": dask.__version__,
                "zarr": zarr.__version__}  # fmt: skip
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pipeline": hasattr(model, "steps"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "steps": steps,
        "k_table": k_table,
        "k_criterion": None if selection is None else selection.criterion,
        "k_confidence": None if confidence is None else confidence.to_dict(),
        "fingerprint": fingerprint,
        "metadata": metadata or {},
        "arrays": arrays,
    }
    (folder / "model.json").write_text(json.dumps(doc, indent=1))


def _location(path, storage_options=None):
    """``(read_bytes(name), describe)`` for a model directory: local, or a URL."""
    if "://" in os.fspath(path):
        import fsspec

        from .store import public_url, with_retries

        url = os.fspath(path).rstrip("/")
        fs, root = fsspec.core.url_to_fs(url, **with_retries(url, storage_options))

        def read(name: str) -> bytes:
            try:
                return fs.cat(f"{root}/{name}")
            except FileNotFoundError:
                raise NotFoundError(f"{public_url(url)}/{name} is missing.") from None

        return read, public_url(url)
    folder = Path(path)

    def read_local(name: str) -> bytes:
        try:
            return (folder / name).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{folder / name} is missing; save the model again.") from None

    return read_local, str(folder)


def read_manifest(path, storage_options=None) -> dict:
    """The checked ``model.json`` of a model directory (a path or a URL)."""
    read, where = _location(path, storage_options)
    try:
        text = read("model.json")
    except FileNotFoundError:
        raise NotFoundError(f"{where} is not a dkmeans model directory (no model.json).") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise StoreError(f"{where}/model.json is not valid JSON ({err}).") from err
    path = where
    if doc.get("format") != FORMAT:
        raise StoreError(f"{path} is not a dkmeans model directory (format {doc.get('format')!r}).")
    if doc.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path} has model format version {doc.get('format_version')!r}; this dkmeans "
            f"reads version {FORMAT_VERSION}. Load it with the dkmeans version that saved it "
            f"({doc.get('versions', {}).get('dkmeans', 'unknown')}) or retrain."
        )
    return doc


def load(path, *, storage_options: dict | None = None):
    """Load a model saved by :func:`save` (a directory or a URL): the estimator, or the
    Pipeline.

    The loaded KMeans carries ``k_table_`` (a DataFrame) and ``k_confidence_`` (a
    :class:`~dkmeans.model_selection.KConfidence`: the k each criterion preferred, the
    stability, the level) when the model chose its k, and every loaded estimator
    carries ``fingerprint_`` and ``metadata_``.
    """
    import io

    import pandas as pd
    from sklearn.pipeline import Pipeline

    doc = read_manifest(path, storage_options)
    read, where = _location(path, storage_options)
    folder = doc.get("arrays", "arrays")

    def array(name: str):
        return np.load(io.BytesIO(read(f"{folder}/{name}")), allow_pickle=False)

    path = where
    classes = _classes()
    estimators = []
    for step in doc["steps"]:
        cls = classes.get(step["class"])
        if cls is None:
            raise StoreError(f"{path}: unknown estimator class {step['class']!r}.")
        params = {}
        for key, value in step["params"].items():
            if isinstance(value, dict) and set(value) == {"array"}:
                value = array(value["array"])
            params[key] = _from_json(value)
        est = cls(**params)
        for key in step["arrays"]:
            setattr(est, key, array(f"{step['name']}__{key}.npy"))
        for key, value in step["scalars"].items():
            setattr(est, key, _from_json(value))
        est.fingerprint_ = doc.get("fingerprint")
        est.metadata_ = doc.get("metadata", {})
        estimators.append((step["name"], est))
    if doc.get("k_table") is not None:
        estimators[-1][1].k_table_ = pd.DataFrame.from_records(doc["k_table"])
    if doc.get("k_confidence") is not None:  # absent from models saved before it existed
        estimators[-1][1].k_confidence_ = KConfidence.from_dict(doc["k_confidence"])
    if doc.get("pipeline"):
        return Pipeline(estimators)
    return estimators[0][1]
