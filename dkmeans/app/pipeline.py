"""The archetype job: store -> scale -> PCA -> choose k -> fit -> labels -> profiles -> model,
in as few reads of the store as it can (see :func:`run`).

A :class:`Job` describes the whole run (a dataclass, loadable from YAML); :func:`run`
does it and returns a :class:`JobResult`.  Each step is optional and logged on the
``dkmeans`` logger; the CLI's ``dkmeans fit`` is this function.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import io
from .._engine.errors import (
    ConfigError,
    InputError,
    LowConfidenceError,
    NotFoundError,
    OutputExistsError,
    ParameterError,
)
from .._engine.validation import unwrap
from ..alignment import align_labels
from ..archetypes import Archetypes
from ..changes import ArchetypeChanges, compare_archetypes
from ..cluster import KMeans
from ..model_selection import CRITERIA, KSelection, select_k
from ..persistence import data_fingerprint, load, model_exists, save
from ..streaming import label_and_profile, summarize

__all__ = ["Job", "JobResult", "run"]

logger = logging.getLogger(__name__)

_ON_LOW_CONFIDENCE = ("warn", "error")


@dataclass
class Job:
    """What one clustering run does.

    Parameters
    ----------
    store : str
        The Zarr store of the records (a group, or ``"store.zarr/array"``): a path, or
        a URL (``s3://``, ``gs://``, ``az://``, ``http(s)://`` read-only).
    storage_options : dict, optional
        For a URL: the fsspec file system's options (credentials, endpoint); by default
        the cloud's ambient credentials and environment variables.  Never saved with
        the model.
    variable : str, optional
        The records' array in the group (needed when it holds several 2-D arrays).
    k : int or "auto", default="auto"
        Clusters, or choose among ``k_range`` by ``criterion``.
    k_range : [int, int], default=[2, 16]
        Smallest and largest k tried (both included).
    criterion : str, default="silhouette"
        See :func:`dkmeans.select_k`.
    on_low_confidence : {"warn", "error"}, default="warn"
        With ``k="auto"``, when the k choice's confidence is low (the criteria
        disagree, or the chosen k is unstable: :class:`dkmeans.model_selection.KConfidence`):
        ``"warn"`` logs one warning naming the candidate ks and goes on; ``"error"``
        raises :class:`~dkmeans.exceptions.LowConfidenceError` before anything is
        written (labels, model, profiles, plots).  Either way the saved model's
        metadata carries the confidence (``metadata_["k_confidence"]``).
    scale : bool, default=True
        Standard-scale the features first (they come in different units).
    pca : float, int or None, default=0.95
        Keep the fewest components reaching this explained variance (float), this
        many components (int), or no PCA (None).
    feature_names : list of str, optional
        Names of the features, in place of the store's; a store that carries none is
        named ``x0 ... x{d-1}`` (logged).
    sample_size : int, default=10000
        Rows of the silhouette sample (:func:`select_k`).
    fit_sample : "auto", int or None, default="auto"
        Rows of the seeded sample that the k sweep and the fit run on before the
        chosen centres are polished on all rows.  ``"auto"``: 200,000 rows (at most
        256 MiB, at least 200 per cluster of the largest k) when the records are not
        kept in memory, and no sample when they are; None: sweep and fit on all rows
        (one read per pass when streamed).
    n_init : int or "auto", default=3
        Initialisations per k, the best kept (see :class:`dkmeans.KMeans`): a sweep
        with one run per k can pick the wrong k from one unlucky local optimum, and
        on a sample the extra runs cost no reads.
    random_state : int, default=0
    persist : "auto" or bool, default="auto"
        Keep the records in memory after their one read (``"auto"``: when they take
        at most half of the memory).
    labels_out : str, optional
        ``"STORE[:NAME]"``: where the labels go.  Default: an array ``cluster`` beside
        the records in their own group.  ``write_labels=False`` skips writing.
    write_labels : bool, default=True
    overwrite : bool, default=False
        Replace an existing labels array, model directory or profile files.
    model_out : str, optional
        Directory to save the fitted model to (:func:`dkmeans.save`).
    align_to : str, optional
        A saved model whose cluster IDs this run keeps (:func:`dkmeans.align_labels`).
        The run then reports what changed since it (``JobResult.changes``, and
        ``changes.md`` / ``changes.csv`` in ``profile_out``), with the label churn
        against the labels this run replaces, counted in the final pass.
    align_max_distance : float, optional
        Largest centre distance, in the reference's standard deviations, still
        counted as the same archetype; a cluster farther from every reference
        centre is new (see :func:`dkmeans.align_labels`).
    score : dict or str, optional
        Ranks the archetypes (see :func:`dkmeans.profile_clusters`).
    profile_out : str, optional
        Directory for ``archetypes.csv`` and ``archetypes.md``.
    plots : str, optional
        Directory for the PNG plots (:mod:`dkmeans.plot`).
    cluster : str, optional
        A cluster config (``cluster_configs/*.yaml``); used by the CLI.
    checkpoint : str, optional
        Directory for the fit's checkpoints (after seeding and every iteration).
    resume : bool, default=False
        Continue the fit from ``checkpoint`` (same result as an uninterrupted run).
    sweep_sample_size : int, optional
        Deprecated: ``fit_sample``.
    """

    store: str
    storage_options: dict | None = None
    variable: str | None = None
    k: int | str = "auto"
    k_range: list = field(default_factory=lambda: [2, 16])
    criterion: str = "silhouette"
    on_low_confidence: str = "warn"
    scale: bool = True
    pca: float | int | None = 0.95
    feature_names: list | None = None
    sample_size: int = 10_000
    fit_sample: int | str | None = "auto"
    n_init: int | str = 3
    random_state: int = 0
    persist: str | bool = "auto"
    labels_out: str | None = None
    write_labels: bool = True
    overwrite: bool = False
    model_out: str | None = None
    align_to: str | None = None
    align_max_distance: float | None = None
    score: dict | str | None = None
    profile_out: str | None = None
    plots: str | None = None
    cluster: str | None = None
    checkpoint: str | None = None
    resume: bool = False
    sweep_sample_size: int | None = None  # deprecated: fit_sample

    def __post_init__(self):
        if self.sweep_sample_size is not None:
            warnings.warn(
                "Job(sweep_sample_size=N) is deprecated: the k sweep runs on the fit sample; "
                "use fit_sample=N.",
                FutureWarning,
                stacklevel=3,
            )
            self.fit_sample, self.sweep_sample_size = self.sweep_sample_size, None
        if self.k != "auto" and not (isinstance(self.k, int) and self.k >= 1):
            raise ParameterError(f"k={self.k!r} must be 'auto' or a positive int.")
        if not (self.n_init == "auto" or (isinstance(self.n_init, int) and self.n_init >= 1)):
            raise ParameterError(f"n_init={self.n_init!r} must be 'auto' or a positive int.")
        _check_max_distance(self.align_max_distance)
        lo, hi = [*list(self.k_range), None, None][:2]
        if not (isinstance(lo, int) and isinstance(hi, int) and 2 <= lo <= hi):
            raise ParameterError(
                f"k_range={self.k_range!r} must be [low, high] with 2 <= low <= high."
            )
        top = self.k if isinstance(self.k, int) else hi
        if not (self.fit_sample in ("auto", None) or (
            isinstance(self.fit_sample, int) and self.fit_sample > top
        )):  # fmt: skip
            raise ParameterError(
                f"fit_sample={self.fit_sample!r} must be 'auto', None, or an int above the "
                f"largest k ({top})."
            )
        if self.criterion not in CRITERIA:
            raise ParameterError(f"criterion={self.criterion!r} is not one of {list(CRITERIA)}.")
        if self.on_low_confidence not in _ON_LOW_CONFIDENCE:
            raise ParameterError(
                f"on_low_confidence={self.on_low_confidence!r} is not one of "
                f"{list(_ON_LOW_CONFIDENCE)}."
            )
        if self.pca is not None and not (
            (isinstance(self.pca, float) and 0 < self.pca < 1)
            or (isinstance(self.pca, int) and self.pca >= 1)
        ):
            raise ParameterError(
                f"pca={self.pca!r} must be a variance share in (0, 1), a number of "
                "components, or None."
            )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Job:
        """A job from a YAML file (safe-loaded; unknown keys are errors)."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"No job file at {p}.")
        doc = yaml.safe_load(p.read_text())
        if not isinstance(doc, dict):
            raise ConfigError(f"{p}: expected a mapping of job settings.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"{p}: unknown key(s) {unknown}; known keys: {sorted(known)}.")
        return cls(**doc)

    def public_dict(self) -> dict:
        """The job's settings for the saved model: no storage options (they may hold
        credentials), and URLs without any user:password part."""
        out = dataclasses.asdict(self)
        out.pop("storage_options")
        for key in ("store", "labels_out", "model_out", "align_to"):
            if out[key] is not None:
                out[key] = io.public_url(out[key])
        return out

    @property
    def ks(self) -> range:
        return range(self.k_range[0], self.k_range[1] + 1)


@dataclass
class JobResult:
    """What :func:`run` made.

    model : sklearn.pipeline.Pipeline (scaler, PCA, KMeans; the steps that ran)
    selection : KSelection or None
    archetypes : Archetypes
    changes : ArchetypeChanges or None
        What changed since the ``align_to`` model (None without one).
    labels_path, model_path, profile_paths, plot_paths : where outputs were written
    seconds : dict of step -> wall seconds
    n_features_out : int (features after PCA)
    """

    model: object
    selection: KSelection | None
    archetypes: Archetypes
    labels_path: str | None = None
    model_path: str | None = None
    profile_paths: list = field(default_factory=list)
    plot_paths: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    n_features_out: int = 0
    changes: ArchetypeChanges | None = None

    @property
    def kmeans(self) -> KMeans:
        """The fitted KMeans (the model's last step)."""
        return self.model.steps[-1][1]


class _Timer:
    def __init__(self):
        self.seconds = {}

    def step(self, name: str):
        timer = self

        class _Step:
            def __enter__(self):
                logger.info("step %s ...", name)
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = time.perf_counter() - self.t0
                if exc[0] is None:
                    logger.info("step %s done in %.2fs", name, timer.seconds[name])

        return _Step()


def open_records(store: str, variable=None, feature_names=None, *, default_names=True,
                 storage_options=None):  # fmt: skip
    """The records as a lazy DataArray on their own dimensions, with feature names, and
    the Zarr array.  ``feature_names`` stand in for (or replace) the store's; a store
    that carries none is named ``x0 ... x{d-1}`` (scikit-learn's convention), unless
    ``default_names`` is False (then it stays unnamed)."""
    import xarray as xr

    arr = io.open_zarr_array(store, variable, storage_options=storage_options)
    names = io.feature_names(arr)
    d = arr.shape[1]
    if feature_names is not None:
        names = np.asarray([str(n) for n in feature_names])
        if names.shape != (d,) or len(set(names)) != names.shape[0]:
            raise InputError(
                f"feature_names must be {d} unique names, one per column of the records; "
                f"got {names.shape[0]} ({len(set(names))} unique)."
            )
    elif names is None and default_names:
        names = np.asarray([f"x{i}" for i in range(d)])
        logger.info(
            "the records in %r carry no feature names: calling them x0 ... x%d "
            "(name them with feature_names, or --feature-names on the command line)",
            io.public_url(store), d - 1,
        )  # fmt: skip
    dims = io.dimension_names(arr) or ("sample", "feature")
    coords = {} if names is None else {dims[1]: names}
    return xr.DataArray(io.from_zarr(arr), dims=dims, coords=coords), arr


def _labels_target(job: Job, arr) -> tuple[str | None, str]:
    """``(group to write into or None for beside the records, array name)``."""
    if job.labels_out is None:
        return None, "cluster"
    target, _, name = job.labels_out.partition(":")
    return target, name or "cluster"


def run(job: Job) -> JobResult:
    """Run a :class:`Job` end to end (on the active Dask scheduler or client).

    Records that fit in memory are read from the store ONCE and kept: everything else
    (statistics, the fit, the labels and profiles pass) reads memory.  Records that do
    not fit are read at most about four times, whatever the k range:

    1. one pass gathers the moments, the NaN/inf check, the covariance for PCA and a
       seeded row sample (:func:`dkmeans.summarize`); scaling and PCA are algebra on
       those statistics;
    2. the k sweep and the chosen k's fit run on the (scaled, reduced) sample in memory;
    3. full-data Lloyd passes polish the sample's centres to the usual convergence
       rule (typically one to two passes);
    4. one final pass writes the labels beside the records and measures the archetype
       statistics in original units, the sizes, the exact inertia and the simplified
       silhouette (:func:`dkmeans.label_and_profile`).
    """
    from sklearn.pipeline import Pipeline

    timer = _Timer()
    X, arr = open_records(job.store, job.variable, job.feature_names,
                          storage_options=job.storage_options)  # fmt: skip
    if job.write_labels:  # refuse before any work, not after
        into, name = _labels_target(job, arr)
        io.check_labels_target(arr, name, into=into, overwrite=job.overwrite)
    model_options = None if job.model_out is None else _remote_only(job.model_out, job)
    if job.model_out and model_exists(job.model_out, model_options) and not job.overwrite:
        raise OutputExistsError(
            f"{io.public_url(job.model_out)} exists; pass overwrite=True (--overwrite) to "
            "replace it."
        )
    reference = None
    if job.align_to:
        reference = load(job.align_to, storage_options=_remote_only(job.align_to, job))
        _check_reference_features(reference, X)
    kept = _fits_in_memory(X, job.persist)
    if kept:
        with timer.step("read"):
            X = X.persist()  # the one read of the store
    ks = list(job.ks) if job.k == "auto" else [job.k]
    size = job.fit_sample
    if size is None:  # no fit sample; streamed, the plots still take a sample's rows
        size = 0 if kept or not job.plots else job.sample_size
    with timer.step("summarize"):
        summary = summarize(
            X, sample_size=size, n_clusters=ks[-1], covariance=job.pca is not None,
            random_state=job.random_state,
        )  # fmt: skip
    # "auto": the sample, unless the records are kept and hardly larger than it
    on_sample = job.fit_sample is not None and (
        job.fit_sample != "auto" or not kept or 2 * summary.sample.shape[0] <= summary.n_samples
    )
    steps = []
    if job.scale:
        steps.append(("scale", summary.standard_scaler()))
    if job.pca is not None:
        scaler = steps[0][1] if steps else None
        pca = summary.pca(job.pca, scaler=scaler, random_state=job.random_state)
        logger.info("PCA keeps %d components", pca.n_components_)
        steps.append(("pca", pca))
    data = _transform(steps, X)
    if kept and not on_sample:
        data = data.persist()  # from memory: the fit's passes skip the transform
    sample = _transform(steps, summary.sample) if summary.sample.shape[0] else None
    fit_on = sample if on_sample else data
    selection = None
    with timer.step("kmeans"):
        fit_params = {"random_state": job.random_state, "fit_sample": None, "n_init": job.n_init,
                      "compute_labels": False, "persist": job.persist}  # fmt: skip
        if not on_sample:
            fit_params.update(checkpoint=job.checkpoint, resume=job.resume)
        if job.k == "auto":
            selection = select_k(fit_on, ks, criterion=job.criterion,
                                 sample_size=job.sample_size, **fit_params)  # fmt: skip
            _check_confidence(selection.confidence, job.on_low_confidence)
            km = selection.best_model
        else:
            km = KMeans(job.k, **fit_params).fit(fit_on)
    if on_sample:
        summary.check_coverage(Pipeline([*steps, ("kmeans", km)]))
        with timer.step("polish"):
            km = KMeans(
                km.n_clusters_, init=km.cluster_centers_, n_init=1, fit_sample=None,
                compute_labels=False, persist=job.persist if kept else False,
                random_state=job.random_state, checkpoint=job.checkpoint, resume=job.resume,
            ).fit(data)  # fmt: skip
        km.fit_sample_size_ = int(summary.sample.shape[0])
        km.n_seeding_passes_ = 1  # the pass that drew the sample
    # the saved model reads as the KMeans the job stands for, not its internal steps
    km.set_params(init="k-means||", n_init=job.n_init, fit_sample=job.fit_sample,
                  compute_labels=True, persist=job.persist)  # fmt: skip
    km.n_passes_ += 2  # the gathering pass and the final pass
    if selection is not None:
        selection = dataclasses.replace(selection, best_model=km)
        km.k_selection_ = selection
    steps.append(("kmeans", km))
    model = Pipeline(steps)
    previous, notes = None, []
    if reference is not None:
        align_labels(model, reference, max_distance=job.align_max_distance)
        previous, notes = _previous_labels(job, arr)  # opened before the writer replaces it
    result = JobResult(model, selection, None, n_features_out=int(data.shape[1]))
    with timer.step("labels and archetypes"):
        if job.write_labels:
            into, name = _labels_target(job, arr)
            attrs = {"model": job.model_out, "k": int(km.cluster_centers_.shape[0])}
            with io.labels_writer(arr, name, into=into, overwrite=job.overwrite,
                                  attrs=attrs) as writer:  # fmt: skip
                final = label_and_profile(X, model, write=writer, score=job.score,
                                          update_model=True, previous_labels=previous)  # fmt: skip
            result.labels_path = writer.path
            options = job.storage_options if "://" in writer.path else None
            km.labels_ = io.from_zarr(writer.path, storage_options=options)
        else:
            final = label_and_profile(X, model, score=job.score, update_model=True,
                                      previous_labels=previous)  # fmt: skip
        result.archetypes = final.archetypes
    if reference is not None:
        result.changes = compare_archetypes(final.archetypes, reference, model=model,
                                            churn=final.churn, notes=notes)  # fmt: skip
    if job.model_out:
        with timer.step("save"):
            result.model_path = str(save(
                model, job.model_out, overwrite=job.overwrite,
                fingerprint=data_fingerprint(arr), metadata=_metadata(job, result),
                storage_options=_remote_only(job.model_out, job),
            ))  # fmt: skip
    if job.profile_out:
        result.profile_paths = _write_profiles(result.archetypes, Path(job.profile_out),
                                               result.changes)  # fmt: skip
    if job.plots:
        from .plot import save_plots

        with timer.step("plots"):  # on rows in memory: the sample unless all are kept
            result.plot_paths = save_plots(job.plots, result, data if kept else sample,
                                           random_state=job.random_state)  # fmt: skip
    result.seconds = timer.seconds
    return result


def _check_confidence(confidence, on_low: str) -> None:
    """Stop (``"error"``) or log one warning (``"warn"``) when the k choice is uncertain;
    runs before anything is written."""
    if not confidence.low:
        return
    if on_low == "error":
        raise LowConfidenceError(
            f"{confidence.warning}; stopping before writing anything "
            "(on_low_confidence='error'). Choose k yourself (k=N), or pass "
            "on_low_confidence='warn'.",
            confidence,
        )
    logger.warning("%s", confidence.warning)


def _remote_only(path: str, job: Job):
    """The job's storage options for a URL (they are the records' store's), else None."""
    return job.storage_options if "://" in path else None


def _transform(steps, X):
    """X through the fitted transformers (lazy for dask input)."""
    for _, step in steps:
        X = step.transform(X)
    return X


def _fits_in_memory(X, persist) -> bool:
    """Whether to keep the records in memory: ``persist``, or for "auto" whether they
    take at most the memory budget (half of the cluster's, or of this machine's)."""
    from .._engine.parallel import active_client, memory_budget

    if persist != "auto":
        return bool(persist)
    return unwrap(X).nbytes <= memory_budget(active_client())


def _check_max_distance(value) -> None:
    if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)
                                  and value > 0):  # fmt: skip
        raise ParameterError(
            f"align_max_distance={value!r} must be a positive number of standard deviations, "
            "or None."
        )


def _metadata(job: Job, result: JobResult) -> dict:
    """The saved model's metadata: the job, how sure its k choice was, and the archetype
    profile that the next run aligned to this model compares with (sizes, means, global
    mean and std, score, rank)."""
    out = {"job": job.public_dict(), "archetypes": result.archetypes.to_dict()}
    if result.selection is not None:
        out["k_confidence"] = result.selection.confidence.to_dict()
    return out


def _check_reference_features(reference, X) -> None:
    """Refuse, before any work, a reference whose saved profile has other features: the
    changes report compares the two runs feature by feature."""
    km = reference.steps[-1][1] if hasattr(reference, "steps") else reference
    saved = (getattr(km, "metadata_", {}).get("archetypes") or {}).get("features")
    coord = X.coords.get(X.dims[1])
    names = None if coord is None else [str(n) for n in coord.values]
    if saved is not None and names is not None and list(saved) != names:
        raise InputError(
            f"The align_to model was profiled on features {list(saved)}, these records have "
            f"{names}; align to a model trained on the same features."
        )


def _previous_labels(job: Job, arr) -> tuple[object, list[str]]:
    """The labels this run's write would replace (opened now, before the writer switches
    to the new ones) when they label the same records, else None; and notes for the
    changes report."""
    into, name = _labels_target(job, arr)
    found = io.existing_labels(arr, name, into=into)
    where = f"{name!r}" if into is None else f"{io.public_url(into)}:{name}"
    if found is None:
        return None, [f"label churn not measured: no previous labels {where} to compare with"]
    if found.shape != (arr.shape[0],):
        return None, [
            f"label churn not measured: the previous labels {where} have shape {found.shape}, "
            f"the records {arr.shape[0]} rows"
        ]
    made_by = found.attrs.get("model")
    if made_by is not None and not _same_place(made_by, job.align_to):
        return found, [
            f"the previous labels {where} were written with the model "
            f"{io.public_url(made_by)}, not the reference {io.public_url(job.align_to)}"
        ]
    return found, []


def _same_place(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.abspath(a) == os.path.abspath(b)


def _write_profiles(arch: Archetypes, folder: Path, changes: ArchetypeChanges | None = None,
                    ) -> list[str]:  # fmt: skip
    """``archetypes.csv/.md`` (and ``changes.csv/.md``) in ``folder``: every file is
    written under a temporary name first, then all are moved into place, so a failure
    leaves the previous files as they were."""
    writers = {"archetypes.csv": arch.to_csv, "archetypes.md": _text(arch.to_markdown)}
    if changes is not None:
        writers |= {"changes.csv": changes.to_csv, "changes.md": _text(changes.to_markdown)}
    folder.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    written = []
    try:
        for name, write in writers.items():
            tmp = folder / f".{name}.tmp-{tag}"
            write(tmp)
            written.append((tmp, folder / name))
        for tmp, path in written:
            os.replace(tmp, path)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
    return [str(path) for _, path in written]


def _text(render):
    def write(path: Path) -> None:
        path.write_text(render())

    return write
