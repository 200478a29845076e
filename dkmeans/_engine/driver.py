"""The one fit driver: prepare → seed → iterate → keep the best run → final label pass.

Every fit goes through it: ``KMeans`` (its ``n_init`` runs), ``select_k`` and
``KMeans("auto")`` (a list of k fitted in lockstep: each k's runs share every pass),
and ``MiniBatchKMeans`` (prepare, seed and the label pass; its epochs are its own).
The estimators validate their parameters into a ``FitSpec`` and set their fitted
attributes from a ``FitResult``; they build no graphs.  Checkpointing observes the
iterations (``Checkpoint.observer``) and restores a killed fit's state; it does not own
the control flow.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from dask.base import tokenize

from . import backend as B
from . import kernels as K
from . import reductions as R
from .checkpoint import Checkpoint
from .errors import ParameterError
from .lloyd import Run, lloyd
from .log import report
from .parallel import RowBlocks, keep_in_memory, memory_budget, persist_from_here
from .seeding import CallableInit, check_finite, seed_runs
from .summary import Gathered
from .validation import Input, as_input, as_sample_weight
from .warmup import in_background

SAMPLE_ROWS = 200_000  # fit_sample="auto": rows of the sample ...
SAMPLE_BYTES = 2**28  # ... up to this size in memory ...
SAMPLE_ROWS_PER_CLUSTER = 200  # ... but at least this many rows per cluster
MIN_SAMPLED_PER_CLUSTER = 100  # fewer sampled rows in a cluster: warn


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSpec:
    """What a fit needs besides the data: validated parameters.

    init : a name of ``seeding.INITIALIZERS``, a ``seeding.CallableInit``, or explicit
        centres (then ``n_init`` is 1).
    prune : bound-pruned Lloyd passes, the bounds in memory beside the blocks:
        False, "elkan" or "auto" (the same: prune where it applies); the same iterations.
    """

    init: str | np.ndarray | CallableInit
    n_init: int
    max_iter: int
    tol: float
    oversampling_factor: float = 2.0
    init_rounds: int = 5
    spherical: bool = False
    persist: str | bool = "auto"
    resume: bool = False
    prune: bool | str = False


@dataclass
class FitResult:
    """The kept run of each k (in the order asked), the data's column moments, the
    shift of the GEMM form, and the passes spent seeding."""

    best: list[Run]
    moments: R.Moments
    shift: np.ndarray
    n_seeding_passes: int


def rows_for_metric(X, spherical: bool):
    """X as the metric sees it: unit rows for cosine (lazy), else X itself."""
    if not spherical:
        return X
    return X.map_blocks(K.unit_rows, dtype=X.dtype, name=f"dkmeans-unit-{tokenize(X.name)}")


def prepare(inp: Input, sample_weight, spec: FitSpec, client):
    """``(RowBlocks, persisted)``: the row blocks to fit on, and whether the data is
    kept in memory."""
    X = rows_for_metric(inp.array, spec.spherical)
    w = as_sample_weight(sample_weight, X)
    if client is None and not inp.in_memory and B.is_host(X._meta):
        in_background(X.dtype)  # the kernels load while the first pass reads the store
    if spec.persist == "auto" and inp.in_memory:
        persist = client is not None
    elif spec.persist == "auto":
        persist = X.nbytes <= memory_budget(client, X._meta)
    else:
        persist = bool(spec.persist)
    if persist and not (inp.in_memory and client is None):
        keep = persist_from_here if inp.in_memory else partial(keep_in_memory, client=client)
        X, w = keep(X), None if w is None else keep(w)
    return RowBlocks(X, w, client), bool(persist)


def warn_if_seeding_streams(spec: FitSpec, n_clusters: int, *, stacklevel: int) -> None:
    """Warn that k-means++ on streamed data (not on a sample) reads it once per centre."""
    if isinstance(spec.init, str) and spec.init == "k-means++":
        warnings.warn(
            f"init='k-means++' reads the data once per centre ({n_clusters - 1} passes) and "
            f"the data is streamed from its store; init='k-means||' needs "
            f"{spec.init_rounds + 1} (or fit on a sample: fit_sample).",
            UserWarning,
            stacklevel=stacklevel,
        )


def _unit(centers, spec: FitSpec):
    """Centres on the unit sphere for cosine (seeds and recluster give means)."""
    return K.unit_rows(centers, strict=False) if spec.spherical else centers


def seed(rows: RowBlocks, spec: FitSpec, ks: list[int], rngs: list) -> tuple[list[Run], object]:
    """Initial runs: ``spec.n_init`` per k, every one seeded in the same passes; and the
    column moments if seeding measured them."""
    run_rngs = [rng.spawn(spec.n_init) for rng in rngs]
    if isinstance(spec.init, CallableInit):
        return [
            Run(_unit(spec.init.centers(rows.X, k, r).astype(rows.dtype), spec))
            for k, per_k in zip(ks, run_rngs, strict=True)
            for r in per_k
        ], None
    if not isinstance(spec.init, str):
        return [Run(_unit(spec.init.astype(rows.dtype), spec))], None
    seeded = seed_runs(
        rows, spec.init, [k for k in ks for _ in range(spec.n_init)],
        [r for per_k in run_rngs for r in per_k],
        oversampling_factor=spec.oversampling_factor, init_rounds=spec.init_rounds,
    )  # fmt: skip
    return [Run(_unit(s.centers, spec)) for s in seeded], seeded[0].moments


def fit(rows: RowBlocks, spec: FitSpec, ks: list[int], rngs: list,
        checkpoint: Checkpoint | None = None, start=None) -> FitResult:  # fmt: skip
    """Seed and iterate every (k, init run) in lockstep; keep each k's best run.

    ``rngs``: one Generator per k (as ``KMeans(k)`` would derive it).  ``start()``, if
    given, replaces seeding: it returns the initial runs and the data's moments (a fit
    on a sample does so; a resumed fit skips it).
    """
    state = checkpoint.load() if checkpoint is not None and spec.resume else None
    if state is not None:
        report(logger, "Resuming from %s (%s)", checkpoint.file, state["stage"])
        runs, moments = state["runs"], state["moments"]
        n_seeding = int(state["meta"]["n_seeding_passes"])
    else:
        runs, moments = seed(rows, spec, ks, rngs) if start is None else start()
        report(logger, "Initialization complete")
        n_seeding = rows.n_passes  # passes count from this process's start
        if checkpoint is not None:
            checkpoint.save("seeded", runs, moments, n_seeding_passes=n_seeding)
    runs, moments = lloyd(
        rows, None, max_iter=spec.max_iter, tol=spec.tol, moments=moments, runs=runs,
        on_iteration=None if checkpoint is None else checkpoint.observer(n_seeding),
        spherical=spec.spherical, prune=spec.prune,
    )  # fmt: skip
    shift = K.choose_shift(moments.mean, moments.variance)
    n_init = len(runs) // len(ks)
    if n_init > 1:
        costs = rows.cost_pass([r.centers for r in runs], shift, "cost")
        pick = costs.reshape(len(ks), n_init).argmin(axis=1)
    else:
        pick = np.zeros(len(ks), dtype=int)
    best = [runs[i * n_init + int(p)] for i, p in enumerate(pick)]
    return FitResult(best, moments, shift, n_seeding)


def final_labels(inp: Input, rows: RowBlocks, centers, shift):
    """The final label pass: ``(labels, Assignment)``; labels are NumPy for in-memory
    input, else a dask array held in memory."""
    keep = "compute" if inp.in_memory else "persist"
    return rows.label_pass(centers, shift, "labels", keep=keep)


# --------------------------------------------------------------------------- fit on a sample


def sample_size(fit_sample, rows: RowBlocks, streamed: bool, n_clusters: int) -> int | None:
    """Rows of the fit sample (``fit_sample``: "auto", an int or None), or None for a
    fit on all rows throughout.  "auto" samples only data streamed from its store."""
    if fit_sample is None or (fit_sample == "auto" and not streamed):
        return None
    if fit_sample == "auto":
        by_bytes = SAMPLE_BYTES // max(rows.X.shape[1] * rows.dtype.itemsize, 1)
        fit_sample = max(min(SAMPLE_ROWS, by_bytes), SAMPLE_ROWS_PER_CLUSTER * n_clusters)
    elif fit_sample <= n_clusters:
        raise ParameterError(
            f"fit_sample={fit_sample} must be larger than the number of clusters "
            f"({n_clusters}); give more rows, or fit_sample=None to fit on all rows."
        )
    return int(min(fit_sample, rows.n_samples))


def gather(rows: RowBlocks, size: int, rng: np.random.Generator, *,
           with_gram: bool = False) -> Gathered:  # fmt: skip
    """The gathering pass (moments, NaN/inf check, sample; the Gram if asked)."""
    out = rows.gather_pass(size, int(rng.integers(2**63)), with_gram=with_gram)
    check_finite(out.moments)
    return out


def sample_rows(gathered: Gathered, client) -> RowBlocks:
    """The sample as in-memory row blocks with its design weights (on the cluster's
    workers when there is one)."""
    arr = as_input(gathered.sample.rows).array
    w = as_sample_weight(gathered.sample_weight, arr)
    if client is not None:
        arr, w = persist_from_here(arr), None if w is None else persist_from_here(w)
    return RowBlocks(arr, w, client)


def warn_if_sparse(sampled_sizes, n_sample: int, n_samples: int, *, stacklevel: int) -> None:
    """Warn when the sample holds too few rows of its smallest cluster to place it well."""
    smallest = int(np.min(sampled_sizes))
    if smallest >= MIN_SAMPLED_PER_CLUSTER or n_sample >= n_samples:
        return
    factor = -(-MIN_SAMPLED_PER_CLUSTER // max(smallest, 1))
    warnings.warn(
        f"The fit sample of {n_sample} of {n_samples} rows holds only {smallest} rows of "
        f"its smallest cluster (fewer than {MIN_SAMPLED_PER_CLUSTER}): clusters that small "
        f"are placed roughly by the sample, and smaller ones may be missed. Give a larger "
        f"sample (fit_sample={min(n_sample * factor, n_samples)}) or fit on all rows "
        "(fit_sample=None).",
        UserWarning,
        stacklevel=stacklevel,
    )


def sampled_sizes(sample: np.ndarray, centers) -> np.ndarray:
    """Rows of the sample nearest each centre."""
    c = np.asarray(centers, dtype=np.float64)
    shift = K.choose_shift(c.mean(axis=0), c.var(axis=0))
    labels = K.assign_labels(sample, K.prepare_centers(centers, shift, sample.dtype), shift)[0]
    return np.bincount(labels, minlength=c.shape[0])


def fit_on_sample(rows: RowBlocks, spec: FitSpec, k: int, rng: np.random.Generator,
                  size: int, checkpoint: Checkpoint | None = None, *,
                  stacklevel: int) -> FitResult:  # fmt: skip
    """Sample, seed and fit in memory, then polish with Lloyd passes on all rows.

    One pass gathers the moments and the sample (with design weights for weighted
    data); the sample gets the whole fit (``spec.n_init`` runs, seeding, Lloyd to
    convergence), and its best centres start
    full-data Lloyd passes until the usual convergence rule holds: the result is a
    Lloyd fixed point of all rows.  A resumed fit skips the sample.
    """

    def start():
        gathered = gather(rows, size, rng)
        sample = gathered.sample.rows
        on_sample = fit(sample_rows(gathered, rows.client), spec, [k], [rng])
        best = on_sample.best[0]
        warn_if_sparse(sampled_sizes(sample, best.centers), sample.shape[0], rows.n_samples,
                       stacklevel=stacklevel + 2)  # fmt: skip
        # the sample was every row (unweighted): its converged fit is the full-data fit
        whole = sample.shape[0] == rows.n_samples and rows.sample_weight is None
        if whole and best.converged:
            return [best], gathered.moments
        return [Run(best.centers)], gathered.moments

    return fit(rows, replace(spec, n_init=1), [k], [rng], checkpoint, start=start)
