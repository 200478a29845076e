"""Lloyd iterations in lockstep: one data pass updates every still-running run.

Several runs (``n_init`` restarts, later several k) share each read of the data.
A run stops when the squared centre shift summed over clusters is at most the
absolute tolerance (``tol`` times the mean column variance, as in scikit-learn);
labels unchanged between iterations imply a zero shift, so that test covers
scikit-learn's strict convergence too.

``prune=True`` (``KMeans(algorithm="elkan")``, and ``"auto"``) makes the passes
bound-pruned (``pruning``: Hamerly's bounds beside the blocks, in memory, whether
the blocks are held or streamed) for NumPy blocks: the same iterations, with
distance computations skipped for rows whose label provably did not change.  See
``Pruning`` for when it falls back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from . import backend as B
from . import config
from . import kernels as K
from . import pruning as P
from . import reductions as R
from .log import report
from .parallel import RowBlocks
from .seeding import accept_moments

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """State of one Lloyd run."""

    centers: np.ndarray
    n_iter: int = 0
    converged: bool = False
    # (inertia, shift, seconds, skip rate) per iteration; the skip rate is the share of
    # rows whose distances a pruned pass skipped (0 for plain passes)
    history: list = field(default_factory=list)


def skip_rates(run: Run) -> np.ndarray:
    """The skip rate of each of the run's iterations (histories without one: 0)."""
    return np.array([h[3] if len(h) > 3 else 0.0 for h in run.history], dtype=np.float64)


def tolerance(tol: float, moments: R.Moments) -> float:
    """Absolute tolerance: ``tol`` times the mean column variance (scikit-learn's rule)."""
    return 0.0 if tol == 0 else float(np.mean(moments.variance)) * tol


def keeps_bounds(rows: RowBlocks, n_runs: int) -> bool:
    """Whether the blocks may keep pruning bounds for ``n_runs`` runs
    (``pruning.bytes_per_row`` a row per run, held twice: the state and its spare) under
    a quarter of the memory budget (as ``seeding.keeps_seeding_state``)."""
    return rows.keeps_row_state(P.bytes_per_row() * n_runs)


class Pruning:
    """The bound states of the runs between pruned passes, and the fallbacks.

    A pruned pass needs the data's shift to be final: a first pass that measures the
    moments is plain, and the next one makes the bounds.  A pruned pass knows no far
    rows for skipped rows, so an iteration that leaves a cluster empty is made again
    from the same centres as a first pass (every distance, the farthest rows, fresh
    bounds and sums), whose relocation is then scikit-learn's.  Each redo costs one
    more pass; after ``MAX_REDOS`` of them the fit continues with plain passes.
    Convergence is tested on the centres as always: with ``tol=0`` (exact centre
    equality) an iteration count may still differ from plain Lloyd's where sums
    updated by moved rows round differently from fresh ones.
    """

    MAX_REDOS = 3

    def __init__(self, rows: RowBlocks):
        self.rows = rows
        self.states: dict[int, tuple] = {}  # id(run) -> (handles, CenterSet they refer to)
        self.redos = 0

    @classmethod
    def start(cls, rows: RowBlocks, n_runs: int, name: str, mode="elkan") -> Pruning | None:
        """Pruning for these runs, or None (plain passes) with the reason logged.

        ``"auto"`` prunes wherever the blocks are NumPy and the bounds fit: since the
        steps stopped touching fresh memory (``kernels.scratch``) and store their bounds
        without nextafter, a pruned pass measured faster on a 2-worker LocalCluster too
        (W1: 0.14 s against 0.17 s), where it had measured 2x a plain one.
        """
        reason = None
        if not B.is_host(rows.X._meta):
            reason = "the blocks are not NumPy arrays"
        elif not keeps_bounds(rows, n_runs):
            reason = f"the bounds of {n_runs} run(s) would not fit in memory"
        if reason is not None:
            report(logger, "%s: algorithm=%r runs plain Lloyd passes: %s.", name, mode, reason,
                   verbose=2)  # fmt: skip
            return None
        return cls(rows)

    def step(self, active: list[Run], sets, shift, n_far: int, name: str):
        """One pruned pass for the active runs: (partials, skip rates)."""
        previous = [self.states.get(id(r), (None, None)) for r in active]
        steps = [
            P.prepare_step(cs, shift, prev) for cs, (_, prev) in zip(sets, previous, strict=True)
        ]
        parts, skipped, handles = self.rows.pruned_lloyd_pass(
            steps, [h for h, _ in previous], n_far, name=name
        )
        for run, cs, h in zip(active, sets, handles, strict=True):
            self.states[id(run)] = (h, cs)
        redo = [i for i, (p, st) in enumerate(zip(parts, steps, strict=True))
                if not st.first and bool(np.any(p.counts == 0))]  # fmt: skip
        if redo:
            # the same step as a first pass: every distance, the far rows, fresh bounds
            self.redos += 1
            report(logger, "%s: a cluster emptied; the iteration is made again with every "
                   "distance, for its relocation.", name, verbose=2)  # fmt: skip
            again, _, fresh = self.rows.pruned_lloyd_pass(
                [P.prepare_step(sets[i], shift, None) for i in redo], [None] * len(redo), n_far,
                name=f"{name}-relocate",
            )  # fmt: skip
            for i, p, h in zip(redo, again, fresh, strict=True):
                parts[i] = p
                skipped[i] = 0
                self.states[id(active[i])] = (h, sets[i])
        n = max(self.rows.n_samples, 1)
        return parts, [c / n for c in skipped]

    def drop(self, run: Run) -> None:
        """Release a finished run's bounds."""
        self.states.pop(id(run), None)

    @property
    def exhausted(self) -> bool:
        return self.redos >= self.MAX_REDOS


def lloyd(
    rows: RowBlocks,
    inits: list[np.ndarray],
    *,
    max_iter: int,
    tol: float,
    moments: R.Moments | None,
    name: str = "lloyd",
    runs: list[Run] | None = None,
    on_iteration=None,
    spherical: bool = False,
    prune: bool | str = False,
) -> tuple[list[Run], R.Moments]:
    """Run Lloyd from each initial centre array until all converge or ``max_iter``.

    ``moments`` are the data's column moments if a previous pass measured them;
    otherwise the first pass measures them (and checks for NaN/inf) on the way.
    ``runs`` continues runs restored from a checkpoint instead (``inits`` is then
    ignored); ``on_iteration(runs, moments)`` is called after every pass.
    ``spherical``: centres are scaled back to unit length after each update
    (spherical k-means on unit-normalised rows).
    ``prune``: bound-pruned passes where they apply (``Pruning``), the same
    iterations.
    Returns the runs and the moments.
    """
    dtype = rows.dtype
    if runs is None:
        runs = [Run(np.asarray(c, dtype=dtype)) for c in inits]
    inits = [r.centers for r in runs]
    # Shift for the GEMM form: the data mean, or the mean of the first centres until known.
    shift = (
        K.choose_shift(moments.mean, moments.variance) if moments is not None
        else inits[0].astype(np.float64).mean(axis=0)
    )  # fmt: skip
    tol_abs = tolerance(tol, moments) if moments is not None else None
    # far rows kept per pass for empty-cluster relocation
    n_far = min(config.get("max-far"), max(r.centers.shape[0] for r in runs))
    n_runs = sum(not r.converged for r in runs)
    pruning = Pruning.start(rows, n_runs, name, prune) if prune else None
    for it in range(max(r.n_iter for r in runs) + 1, max_iter + 1):
        active = [r for r in runs if not r.converged]
        if not active:
            break
        t0 = time.perf_counter()
        sets = [K.prepare_centers(r.centers, shift, dtype) for r in active]
        if pruning is not None and pruning.exhausted:
            report(logger, "%s: clusters keep emptying; plain Lloyd passes from here.", name,
                   verbose=2)  # fmt: skip
            pruning = None
        if pruning is not None and moments is not None:
            parts, skips = pruning.step(active, sets, shift, n_far, name=f"{name}-{it}")
        else:
            parts, mom = rows.lloyd_pass(
                sets, shift, n_far, with_moments=moments is None, name=f"{name}-{it}"
            )
            skips = [0.0] * len(active)
        pass_shift = shift  # the partial sums are of rows shifted by this
        if moments is None:
            moments, shift = accept_moments(mom)
            tol_abs = tolerance(tol, moments)
        seconds = time.perf_counter() - t0
        for run, part, skip in zip(active, parts, skips, strict=True):
            upd = R.finalize_lloyd(part, run.centers, pass_shift)
            if spherical:
                unit = K.unit_rows(upd.centers, strict=False)
                move = float(((unit.astype(np.float64) - run.centers) ** 2).sum())
                upd = upd._replace(centers=unit, center_shift=move)
            run.centers = upd.centers
            run.n_iter = it
            run.history.append((upd.cost, upd.center_shift, seconds, skip))
            if upd.n_relocated:
                report(logger, "Iteration %d: relocated %d empty cluster(s).", it,
                       upd.n_relocated, verbose=2)  # fmt: skip
            if upd.center_shift <= tol_abs:
                run.converged = True
                if pruning is not None:
                    pruning.drop(run)
        # scikit-learn's lines (one value per run when several iterate in lockstep)
        report(logger, "Iteration %d, inertia %s.", it, ", ".join(f"{p.cost:.6g}" for p in parts))
        if pruning is not None and moments is not None and any(skips):
            report(logger, "Iteration %d: bounds skipped the distances of %s of the rows.", it,
                   ", ".join(f"{s:.1%}" for s in skips), verbose=2)  # fmt: skip
        for run in active:
            if run.converged:
                report(logger, "Converged at iteration %d: center shift %.6g within tolerance "
                       "%.6g.", it, run.history[-1][1], tol_abs)  # fmt: skip
        logger.debug(
            "%s pass %d: centre shift %s, %.3fs", name, it,
            ", ".join(f"{h.history[-1][1]:.3g}" for h in active), seconds,
        )  # fmt: skip
        if on_iteration is not None:
            on_iteration(runs, moments)
    return runs, moments
