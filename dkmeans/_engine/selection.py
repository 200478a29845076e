"""Choosing k: the lockstep sweep over a list of k, its scoring table and the choice.

Engine-level so that ``KMeans("auto")`` and ``select_k`` share it without importing each
other: the caller passes its estimator class, and the chosen k's fit goes into the
model it names (or a new one).
"""

from __future__ import annotations

import logging
import numbers
import time
from dataclasses import dataclass, field, replace
from functools import partial

import dask
import numpy as np

from . import cluster_stats as S
from . import driver as D
from . import kernels as K
from .confidence import KConfidence, assess, kneedle
from .errors import ParameterError
from .lloyd import Run
from .log import report, verbosity
from .parallel import RowBlocks, active_client, block_seed, single_threaded_blas
from .validation import as_generator, as_input

logger = logging.getLogger(__name__)

# criterion -> (table column, True when larger is better; None: the knee of the
# column against k, by Kneedle)
CRITERIA = {
    "silhouette": ("silhouette", True),
    "davies_bouldin": ("davies_bouldin", False),
    "calinski_harabasz": ("calinski_harabasz", True),
    "simplified_silhouette": ("simplified_silhouette", True),
    "stratified_silhouette": ("stratified_silhouette", True),
    "elbow": ("inertia", None),
}
_STAGE_SWEEP_SAMPLE = 11
# the stability fits run in memory on the sample: no fit sample, checkpoint or labels
_IN_MEMORY = {"fit_sample": None, "checkpoint": None, "resume": False, "compute_labels": False,
              "verbose": 0}  # fmt: skip


@dataclass
class KSelection:
    """The result of :func:`select_k`.

    Attributes
    ----------
    best_k : int
    best_model : KMeans
        Fitted with ``best_k`` clusters (labels, inertia, centres: no refit needed).
    table : pandas.DataFrame
        One row per k: ``k, inertia, silhouette, stratified_silhouette,
        simplified_silhouette, sqeuclidean_silhouette, davies_bouldin,
        calinski_harabasz, iterations, converged, seconds`` (seconds: wall time of
        the passes the k took part in).
    criterion : str
    n_passes : int
        Data passes of the whole selection.
    centers : dict of int to ndarray of shape (k, n_features)
        The fitted centres of every k of the sweep.
    confidence : KConfidence
        How sure the choice is: the k each criterion prefers, the stability, and
        ``level`` "high" or "low" (the rule: :class:`KConfidence`).
    """

    best_k: int
    best_model: object  # the KMeans fitted with best_k
    table: object
    criterion: str
    n_passes: int
    centers: dict = field(default_factory=dict)
    confidence: KConfidence | None = None

    @property
    def preferred(self) -> dict:
        """The k each criterion of :data:`CRITERIA` prefers (the elbow included); a
        criterion that cannot say (all NaN, or the elbow of fewer than 3 ks) is left out."""
        return {} if self.confidence is None else dict(self.confidence.preferred)

    @property
    def stability(self) -> float:
        """Adjusted Rand index between the chosen k's fits on two disjoint halves of the
        silhouette sample, both labelling the whole sample; NaN if not measured."""
        return np.nan if self.confidence is None else self.confidence.stability

    def plot(self, axes=None):
        """Elbow (inertia) and the quality criteria against k, with the chosen k marked
        (and the elbow's, dotted).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        t = self.table
        if axes is None:
            fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        else:
            fig = axes[0].figure
        axes[0].plot(t["k"], t["inertia"], "o-")
        axes[0].set(xlabel="k", ylabel="inertia", title="Elbow")
        if "elbow" in self.preferred:
            axes[0].axvline(self.preferred["elbow"], color="tab:orange", linestyle=":")
        for col in ("silhouette", "stratified_silhouette", "simplified_silhouette",
                    "davies_bouldin"):  # fmt: skip
            axes[1].plot(t["k"], t[col], "o-", label=col.replace("_", " "))
        axes[1].set(xlabel="k", ylabel="score", title=f"Criterion: {self.criterion}")
        axes[1].legend()
        for ax in axes:
            ax.axvline(self.best_k, color="grey", linestyle="--")
        return fig


def _check_k_range(k_range, n_samples: int) -> list[int]:
    try:
        ks = sorted({int(k) for k in k_range})
    except (TypeError, ValueError) as err:
        raise ParameterError(
            f"k_range={k_range!r} must be an iterable of ints, e.g. range(2, 16)."
        ) from err
    if not ks:
        raise ParameterError(
            "k_range is empty; give the candidate numbers of clusters, e.g. range(2, 16)."
        )
    if ks[0] < 2:
        raise ParameterError(
            f"k_range starts at {ks[0]}; the selection criteria compare clusters, so every k "
            "must be at least 2."
        )
    if ks[-1] >= n_samples:
        raise ParameterError(
            f"k_range reaches {ks[-1]} but X has only {n_samples} samples; every k must be "
            "smaller than the number of samples."
        )
    return ks


def select_into(model, inp, k_range, *, estimator, criterion="silhouette", sample_size=10_000,
                n_init="auto", random_state=None, sample_weight=None, kmeans_params=None,
                depth=0) -> KSelection:  # fmt: skip
    """``select_k``: every k of ``k_range`` fitted in lockstep and scored, the chosen k
    fitted into a new ``estimator(best_k)`` (the selection's ``best_model``) and, if given,
    into ``model`` too (a ``KMeans("auto")``).  ``estimator`` is the KMeans class;
    ``depth``: calls between the user's and ``select_k``'s place (for warnings).
    With a fit sample (``fit_sample``, streamed data by default) the sweep runs on the
    sample and only the chosen k is polished on all rows."""
    kmeans_params = dict(kmeans_params or {})
    if criterion not in CRITERIA:
        raise ParameterError(
            f"criterion={criterion!r} is not valid: expected one of {list(CRITERIA)}."
        )
    ks = _check_k_range(k_range, inp.n_samples)
    if criterion == "elbow" and len(ks) < 3:
        raise ParameterError(
            f"criterion='elbow' needs at least 3 ks to find a knee; k_range gives {ks}."
        )
    for name in ("n_clusters", "k_range"):
        if name in kmeans_params:
            raise ParameterError(f"select_k sets {name} itself; do not pass it.")
    if not isinstance(sample_size, numbers.Integral) or sample_size < 2:
        raise ParameterError(f"sample_size={sample_size!r} must be an int of at least 2.")
    template = estimator(ks[-1], n_init=n_init, random_state=random_state, **kmeans_params)
    spec = template._fit_spec(inp, ks[-1], n_init)
    if not isinstance(spec.init, str):
        raise ParameterError(
            "select_k needs init='k-means||', 'k-means++' or 'random', not an array or a "
            "callable (their centres are for one k)."
        )
    rng = as_generator(random_state)
    t0 = time.perf_counter()
    with verbosity(template.verbose), single_threaded_blas():
        rows, persisted = D.prepare(inp, sample_weight, spec, active_client())
        streamed = not (persisted or inp.in_memory)
        size = template._sample_size(rows, streamed=streamed)
        if size is None and streamed:
            D.warn_if_seeding_streams(spec, ks[-1], stacklevel=4 + depth)
        if size is not None:
            return _select_on_sample(model, estimator, inp, rows, persisted, ks, template, rng,
                                     criterion, sample_size, size, depth)  # fmt: skip
        checkpoint = template._checkpoint(inp, sample_weight, spec)
        if checkpoint is not None:
            checkpoint.key["k_range"] = ks
        fitted = D.fit(rows, spec, ks, _per_k_generators(random_state, len(ks)), checkpoint)
        table, sample = _score(rows, ks, fitted, rng, min(sample_size, inp.n_samples),
                               template._inertia)  # fmt: skip
        best_k = _choose(table, ks, criterion)
        best_model = estimator(best_k, n_init=n_init, random_state=random_state, **kmeans_params)
        run = fitted.best[ks.index(best_k)]
        _label_into(best_model, model, inp, rows, run, fitted, persisted, None, depth)
        # on the silhouette sample, in memory: no pass over the data
        params = {**kmeans_params, **_IN_MEMORY, "n_init": n_init}
        stability = _stability(sample, best_k, rng, partial(estimator, best_k, **params))
        confidence = assess(best_k, criterion, _preferred(table, ks), stability)
    report(
        logger, "select_k: best k=%d by %s, %d data passes, %.3fs; %s", best_k, criterion,
        rows.n_passes, time.perf_counter() - t0, confidence.summary(),
    )  # fmt: skip
    centers = {k: r.centers for k, r in zip(ks, fitted.best, strict=True)}
    return KSelection(best_k, best_model, table, criterion, rows.n_passes, centers, confidence)


def _choose(table, ks: list[int], criterion: str) -> int:
    column, larger = CRITERIA[criterion]
    values = table[column].to_numpy()
    if larger is None:  # the elbow; a flat curve has none: every k fits alike, take the least
        knee = kneedle(ks, values)
        return ks[0] if knee is None else knee
    return ks[int(np.nanargmax(values) if larger else np.nanargmin(values))]


def _preferred(table, ks: list[int]) -> dict[str, int]:
    """The k each criterion prefers, leaving out those that cannot say."""
    out = {}
    for name, (column, larger) in CRITERIA.items():
        values = table[column].to_numpy(dtype=np.float64)
        if larger is None:
            knee = kneedle(ks, values)
            if knee is not None:
                out[name] = knee
        elif np.isfinite(values).any():
            out[name] = _choose(table, ks, name)
    return out


def _stability(sample: S.RowSample, k: int, rng: np.random.Generator, make) -> float:
    """Adjusted Rand index between the labelings of the sample's rows by two fits of k
    clusters, ``make(random_state=seed).fit`` on two disjoint random halves of it.

    Unweighted, as the silhouette sample; NaN when a half would not have more rows
    than clusters.
    """
    from sklearn.metrics import adjusted_rand_score

    rows = sample.rows
    half = rows.shape[0] // 2
    if half <= k:
        return np.nan
    order = rng.permutation(rows.shape[0])
    seeds = rng.integers(2**31 - 1, size=2)
    # a few thousand rows in memory: this process's threads, not a cluster's workers,
    # whose per-pass latency made these two fits 1.7 s of a 22 s sweep (same result)
    with dask.config.set(scheduler="threads"):
        labelings = [
            np.asarray(make(random_state=int(seed)).fit(rows[np.sort(idx)]).predict(rows))
            for idx, seed in zip((order[:half], order[half : 2 * half]), seeds, strict=True)
        ]
    return float(adjusted_rand_score(*labelings))


def _label_into(best_model, model, inp, rows, run, fitted, persisted, sample_size, depth):
    """The chosen run's final label pass (unless compute_labels=False), set into
    ``best_model`` and ``model``."""
    labels = assignment = None
    if best_model.compute_labels:
        labels, assignment = D.final_labels(inp, rows, run.centers, fitted.shift)
    best_model._set_fitted(inp, rows, run, labels, assignment, persisted=persisted,
                           n_seeding_passes=fitted.n_seeding_passes, stacklevel=5 + depth,
                           also=model, sample_size=sample_size)  # fmt: skip


def _per_k_generators(random_state, n_k: int) -> list[np.random.Generator]:
    """One Generator per k, as ``KMeans(k, random_state=random_state)`` would make it.

    With an int (or None) every k starts from the same seed as its own fit would, so
    each k of the sweep reproduces that fit exactly; a Generator is split instead.
    """
    if random_state is None or isinstance(random_state, numbers.Integral):
        return [as_generator(random_state) for _ in range(n_k)]
    return as_generator(random_state).spawn(n_k)


def _score(rows: RowBlocks, ks: list[int], fitted: D.FitResult, rng, sample_size: int,
           inertia) -> tuple[object, S.RowSample]:  # fmt: skip
    """Two passes scoring every k's kept run; returns the table and the silhouette
    sample (``inertia``: the estimator's cost-to-inertia rule)."""
    import pandas as pd

    dtype, shift = rows.dtype, fitted.shift
    centers = [r.centers for r in fitted.best]
    sets = [K.prepare_centers(c, shift, dtype) for c in centers]
    entropy = int(rng.integers(2**63))

    def per_block(i):
        seed = block_seed(entropy, _STAGE_SWEEP_SAMPLE, i)
        return ((seed, sample_size, int(rows.offsets[i])),)

    evals, sample = rows.reduce(
        S.evaluate_chunk, partial(S.combine_evaluations, size=sample_size), "sweep-evaluate",
        centers, sets, shift, per_block=per_block,
    )  # fmt: skip
    moments = [e[0] for e in evals]
    total = fitted.moments.count
    spreads = rows.reduce(
        S.spread_chunk_sets, S.combine_spreads, "sweep-spread", sets, shift, moments,
        fitted.moments.mean,
    )  # fmt: skip
    sample_rows = sample.rows  # NumPy, or CSR for sparse data
    sample_labels = [K.assign_labels(sample_rows, cs, shift)[0] for cs in sets]
    silhouettes, stratified = _silhouettes(sample, sample_labels, ks)
    records = []
    for i, k in enumerate(ks):
        mom = moments[i]
        # Σ||x - c||² = Σ||x - mean||² + n·||mean - c||² per cluster
        offset = ((mom.means - centers[i].astype(np.float64)) ** 2).sum(axis=1)
        cost = inertia(float(mom.m2.sum() + mom.counts @ offset))
        filled = mom.counts > 0
        spread = np.where(filled, spreads[i][0] / np.where(filled, mom.counts, 1), 0.0)
        run = fitted.best[i]
        records.append(
            {
                "k": k,
                "inertia": cost,
                "silhouette": silhouettes[i],
                "stratified_silhouette": stratified[i],
                "simplified_silhouette": evals[i][1] / total,
                "sqeuclidean_silhouette": spreads[i][1] / total,
                "davies_bouldin": S.davies_bouldin(mom.means[filled], spread[filled]),
                "calinski_harabasz": S.calinski_harabasz(mom, total),
                "iterations": run.n_iter,
                "converged": run.converged,
                "seconds": float(sum(h[2] for h in run.history)),
            }
        )
    return pd.DataFrame.from_records(records), sample


def _silhouettes(sample: S.RowSample, labelings, ks) -> tuple[list[float], list[float]]:
    """Per k: the mean silhouette of the uniform sample, and the stratified one.

    The stratified silhouette draws from the same in-memory sample, so it costs no
    pass: per cluster, up to ``len(sample) // k`` rows of smallest key (at least 2),
    a uniform draw within each cluster; it is the silhouette of those rows against
    themselves, averaged per cluster, then over the clusters (each cluster weighs
    the same, where the uniform mean weighs each by its size).  A cluster with few
    rows in the uniform sample keeps all of them.
    """
    n = sample.rows.shape[0]
    masks = [S.stratified_members(lab, sample.keys, max(n // k, 2))
             for lab, k in zip(labelings, ks, strict=True)]  # fmt: skip
    values = S.silhouette_values(sample.rows, [*labelings, *labelings], [*ks, *ks],
                                 members=[None] * len(ks) + masks)  # fmt: skip
    uniform, strata = values[: len(ks)], values[len(ks) :]
    silhouettes = [float(v.mean()) if np.unique(lab).shape[0] > 1 else np.nan
                   for v, lab in zip(uniform, labelings, strict=True)]  # fmt: skip
    stratified = [S.macro_mean(v, lab) for v, lab in zip(strata, labelings, strict=True)]
    return silhouettes, stratified


def _select_on_sample(model, estimator, inp, rows, persisted, ks, template, rng, criterion,
                      sample_size, size, depth):  # fmt: skip
    """One pass gathers the moments and a row sample; the whole sweep and its scoring
    run on the sample in memory; the chosen k's centres are then polished with Lloyd
    passes on all rows (into a new KMeans, and into ``model`` too if given)."""
    t0 = time.perf_counter()
    gathered = D.gather(rows, size, rng)
    sample = gathered.sample.rows
    params = template.get_params()
    for name in ("n_clusters", "random_state", "n_init", "k_range", "k_criterion"):
        params.pop(name, None)
    sweep_seed, fit_seed = (int(s) for s in rng.integers(2**31 - 1, size=2))
    in_memory = {"fit_sample": None, "checkpoint": None, "resume": False, "compute_labels": True}
    sub = select_into(
        None, as_input(sample), ks, estimator=estimator, criterion=criterion,
        sample_size=sample_size, n_init=template.n_init, random_state=sweep_seed,
        sample_weight=gathered.sample_weight, kmeans_params={**params, **in_memory},
    )  # fmt: skip
    best_k = sub.best_k
    D.warn_if_sparse(D.sampled_sizes(sample, sub.centers[best_k]), sample.shape[0],
                     rows.n_samples, stacklevel=5 + depth)  # fmt: skip
    best_model = estimator(best_k, n_init=template.n_init, random_state=fit_seed, **params)
    spec = best_model._fit_spec(inp, best_k, template.n_init)
    checkpoint = best_model._checkpoint(inp, rows.sample_weight, spec)

    def start():
        return [Run(sub.centers[best_k])], gathered.moments

    fitted = D.fit(rows, replace(spec, n_init=1), [best_k], [as_generator(fit_seed)], checkpoint,
                   start=start)  # fmt: skip
    _label_into(best_model, model, inp, rows, fitted.best[0], fitted, persisted, sample.shape[0],
                depth)  # fmt: skip
    report(
        logger, "select_k: best k=%d by %s on a sample of %d rows, %d data passes, %.3fs", best_k,
        criterion, sample.shape[0], rows.n_passes, time.perf_counter() - t0,
    )  # fmt: skip
    return KSelection(best_k, best_model, sub.table, criterion, rows.n_passes, sub.centers,
                      sub.confidence)  # fmt: skip
