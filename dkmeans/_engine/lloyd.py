"""Lloyd iterations in lockstep: one data pass updates every still-running run.

Several runs (``n_init`` restarts, later several k) share each read of the data.
A run stops when the squared centre shift summed over clusters is at most the
absolute tolerance (``tol`` times the mean column variance, as in scikit-learn);
labels unchanged between iterations imply a zero shift, so that test covers
scikit-learn's strict convergence too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from . import config
from . import kernels as K
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
    history: list = field(default_factory=list)  # (inertia, shift, seconds) per iteration


def tolerance(tol: float, moments: R.Moments) -> float:
    """Absolute tolerance: ``tol`` times the mean column variance (scikit-learn's rule)."""
    return 0.0 if tol == 0 else float(np.mean(moments.variance)) * tol


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
) -> tuple[list[Run], R.Moments]:
    """Run Lloyd from each initial centre array until all converge or ``max_iter``.

    ``moments`` are the data's column moments if a previous pass measured them;
    otherwise the first pass measures them (and checks for NaN/inf) on the way.
    ``runs`` continues runs restored from a checkpoint instead (``inits`` is then
    ignored); ``on_iteration(runs, moments)`` is called after every pass.
    ``spherical``: centres are scaled back to unit length after each update
    (spherical k-means on unit-normalised rows).
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
    for it in range(max(r.n_iter for r in runs) + 1, max_iter + 1):
        active = [r for r in runs if not r.converged]
        if not active:
            break
        t0 = time.perf_counter()
        sets = [K.prepare_centers(r.centers, shift, dtype) for r in active]
        parts, mom = rows.lloyd_pass(
            sets, shift, n_far, with_moments=moments is None, name=f"{name}-{it}"
        )
        pass_shift = shift  # the partial sums are of rows shifted by this
        if moments is None:
            moments, shift = accept_moments(mom)
            tol_abs = tolerance(tol, moments)
        seconds = time.perf_counter() - t0
        for run, part in zip(active, parts, strict=True):
            upd = R.finalize_lloyd(part, run.centers, pass_shift)
            if spherical:
                unit = K.unit_rows(upd.centers, strict=False)
                move = float(((unit.astype(np.float64) - run.centers) ** 2).sum())
                upd = upd._replace(centers=unit, center_shift=move)
            run.centers = upd.centers
            run.n_iter = it
            run.history.append((upd.cost, upd.center_shift, seconds))
            if upd.n_relocated:
                report(logger, "Iteration %d: relocated %d empty cluster(s).", it,
                       upd.n_relocated, verbose=2)  # fmt: skip
            if upd.center_shift <= tol_abs:
                run.converged = True
        # scikit-learn's lines (one value per run when several iterate in lockstep)
        report(logger, "Iteration %d, inertia %s.", it, ", ".join(f"{p.cost:.6g}" for p in parts))
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
