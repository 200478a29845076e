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
from dataclasses import dataclass

import numpy as np
from dask.base import tokenize

from . import kernels as K
from . import reductions as R
from .checkpoint import Checkpoint
from .lloyd import Run, lloyd
from .parallel import RowBlocks, memory_budget
from .seeding import seed_runs
from .validation import Input, as_sample_weight

logger = logging.getLogger("dkmeans")


@dataclass(frozen=True)
class FitSpec:
    """What a fit needs besides the data: validated parameters.

    init : a name of ``seeding.INITIALIZERS``, or explicit centres (then ``n_init`` is 1).
    """

    init: str | np.ndarray
    n_init: int
    max_iter: int
    tol: float
    oversampling_factor: float = 2.0
    init_rounds: int = 5
    spherical: bool = False
    persist: str | bool = "auto"
    resume: bool = False


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


def prepare(inp: Input, sample_weight, spec: FitSpec, client, n_clusters: int, *,
            stacklevel: int = 4):  # fmt: skip
    """``(RowBlocks, persisted)``: the row blocks to fit on, and whether the data is
    kept in memory (``n_clusters``: the largest k, for the k-means++ warning)."""
    X = rows_for_metric(inp.array, spec.spherical)
    w = as_sample_weight(sample_weight, X)
    if spec.persist == "auto" and inp.in_memory:
        persist = client is not None
    elif spec.persist == "auto":
        persist = X.nbytes <= memory_budget(client, X._meta)
    else:
        persist = bool(spec.persist)
    if persist and not (inp.in_memory and client is None):
        X, w = (X.persist(), None if w is None else w.persist())
    streamed = not (persist or inp.in_memory)
    if isinstance(spec.init, str) and spec.init == "k-means++" and streamed:
        warnings.warn(
            f"init='k-means++' reads the data once per centre ({n_clusters - 1} passes) and "
            f"the data is streamed from its store; init='k-means||' needs "
            f"{spec.init_rounds + 1}.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return RowBlocks(X, w, client), bool(persist)


def _unit(centers, spec: FitSpec):
    """Centres on the unit sphere for cosine (seeds and recluster give means)."""
    return K.unit_rows(centers, strict=False) if spec.spherical else centers


def seed(rows: RowBlocks, spec: FitSpec, ks: list[int], rngs: list) -> tuple[list[Run], object]:
    """Initial runs: ``spec.n_init`` per k, every one seeded in the same passes; and the
    column moments if seeding measured them."""
    if not isinstance(spec.init, str):
        return [Run(_unit(spec.init.astype(rows.dtype), spec))], None
    run_rngs = [rng.spawn(spec.n_init) for rng in rngs]
    seeded = seed_runs(
        rows, spec.init, [k for k in ks for _ in range(spec.n_init)],
        [r for per_k in run_rngs for r in per_k],
        oversampling_factor=spec.oversampling_factor, init_rounds=spec.init_rounds,
    )  # fmt: skip
    return [Run(_unit(s.centers, spec)) for s in seeded], seeded[0].moments


def fit(rows: RowBlocks, spec: FitSpec, ks: list[int], rngs: list,
        checkpoint: Checkpoint | None = None) -> FitResult:  # fmt: skip
    """Seed and iterate every (k, init run) in lockstep; keep each k's best run.

    ``rngs``: one Generator per k (as ``KMeans(k)`` would derive it).
    """
    state = checkpoint.load() if checkpoint is not None and spec.resume else None
    if state is not None:
        logger.info("resuming from %s (%s)", checkpoint.file, state["stage"])
        runs, moments = state["runs"], state["moments"]
        n_seeding = int(state["meta"]["n_seeding_passes"])
    else:
        runs, moments = seed(rows, spec, ks, rngs)
        n_seeding = rows.n_passes  # passes count from this process's start
        if checkpoint is not None:
            checkpoint.save("seeded", runs, moments, n_seeding_passes=n_seeding)
    runs, moments = lloyd(
        rows, None, max_iter=spec.max_iter, tol=spec.tol, moments=moments, runs=runs,
        on_iteration=None if checkpoint is None else checkpoint.observer(n_seeding),
        spherical=spec.spherical,
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
