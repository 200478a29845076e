"""Initial centres: k-means|| (Bahmani et al. 2012), k-means++, random.

Each initialiser takes a ``RowBlocks``, the number of clusters and a NumPy
Generator, and returns an ``InitResult``.  Prior validation of the data and the
parameters is assumed.  Initialisers that read all the data fold the column
moments and the non-finite check into their first pass, so the fit needs no
separate validation pass.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from sklearn.cluster import KMeans as _SkKMeans
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from . import backend as B
from . import kernels as K
from . import reductions as R
from .errors import ParameterError
from .log import report
from .parallel import RowBlocks
from .validation import nonfinite_error

logger = logging.getLogger(__name__)

# Stage ids keep the per-block random streams of different stages apart.
_STAGE_KMEANS_PARALLEL = 1
_STAGE_KMEANS_PLUSPLUS = 2
_STAGE_WEIGHTS = 3
_EXTRA_ROUNDS = 10  # rounds k-means|| may add when fewer than k distinct candidates exist


class InitResult(NamedTuple):
    centers: np.ndarray  # (k, d), data dtype
    moments: R.Moments | None  # column moments, if a full pass was made


def check_finite(moments: R.Moments) -> None:
    """Raise the one clear error for NaN/inf found during a pass."""
    if moments.n_nonfinite:
        raise nonfinite_error(moments.n_nonfinite)


def accept_moments(moments: R.Moments) -> tuple[R.Moments, np.ndarray]:
    """Moments from the first pass that read the data: check them, and pick the shift."""
    check_finite(moments)
    return moments, K.choose_shift(moments.mean, moments.variance)


def _seed_int(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _distinct(rows: np.ndarray) -> np.ndarray:
    return np.unique(rows, axis=0) if rows.shape[0] else rows


def _pad_to_k(distinct: np.ndarray, k: int) -> np.ndarray:
    warnings.warn(
        f"Number of distinct clusters ({distinct.shape[0]}) found smaller than n_clusters "
        f"({k}). Possibly due to duplicate points in X.",
        ConvergenceWarning,
        stacklevel=4,
    )
    reps = np.resize(np.arange(distinct.shape[0]), k)
    return distinct[reps]


class Fetch(NamedTuple):
    """A seeder's request for rows by global index (no data pass)."""

    index: np.ndarray


class Pass(NamedTuple):
    """A seeder's request for one job in the next shared seeding pass."""

    job: R.SeedingJob
    state: list | None  # per-group handles of (cost, nearest) from this seeder's last pass
    entropy: int
    stage: int
    # task-name stage: letter-only words and then numbers, so that dask's key_split
    # keeps the words as the dashboard's prefix ("kmeans||" would show as "dkmeans")
    name: str
    label: str | None = None  # on the progress bar (default: from the name)


def kmeans_parallel(
    rows: RowBlocks,
    n_clusters: int,
    rng: np.random.Generator,
    *,
    oversampling_factor: float = 2.0,
    init_rounds: int = 5,
    concurrent: int = 1,
    _n_keep: int | None = None,
):
    """k-means|| seeding: ``init_rounds`` data passes, then one pass to weight candidates.

    A seeder coroutine (run it with ``run_seeders``).  Round r draws every row
    independently with probability ``min(1, ℓ·w·cost / φ)`` (ℓ = oversampling_factor
    · n_clusters, φ the total cost), lowering each row's min cost with the previous
    round's candidates only.  The candidates are then weighted by the weight of the
    rows they attract and reduced to ``n_clusters`` centres by a weighted k-means++
    and Lloyd in memory.  Returns an ``InitResult``.  ``concurrent`` seeders share
    the passes (a sweep over k), which ``keeps_seeding_state`` counts.
    """
    t0 = time.perf_counter()
    ell = oversampling_factor * n_clusters
    entropy = int(rng.integers(2**63))

    # First centre: one weighted draw; reads only the block that holds it.
    c0 = yield Fetch([rows.draw_row(rng)])
    shift = c0[0].astype(np.float64)
    candidates, new, n_candidates = [c0], c0, 1
    state = moments = None
    keep_state = keeps_seeding_state(rows, concurrent)
    applied = ()  # (set, shift, first index) of every round so far, for replay
    scale = ell
    for r in range(1, init_rounds + _EXTRA_ROUNDS + 1):
        if r > init_rounds:  # short of k distinct candidates: oversample harder
            scale = max(ell, 2.0 * n_clusters)
        stage = _STAGE_KMEANS_PARALLEL * 1000 + r
        new_set = (K.prepare_centers(new, shift, rows.dtype), shift, n_candidates - new.shape[0])
        job = R.SeedingJob(
            "round", *new_set, scale=scale, draw="bernoulli",
            n_keep=_n_keep or R.top_count(scale), replay=() if keep_state else applied,
            keep_state=keep_state,
        )  # fmt: skip
        applied += (new_set,)
        draws, state, mom = yield Pass(job, state, entropy, stage, f"kmeans-parallel-round-{r}",
                                       f"seeding round {r}/{init_rounds}")  # fmt: skip
        if moments is None:
            moments, shift = accept_moments(mom)
        phi = draws.cost
        if draws.max_dropped > phi:  # a block held more selected rows than it returned
            job = R.SeedingJob("gather", None, shift, scale=scale, threshold=phi,
                               replay=() if keep_state else applied)  # fmt: skip
            draws, _, _ = yield Pass(job, state, entropy, stage, f"kmeans-parallel-gather-{r}")
        new = draws.rows[draws.keys > phi]
        n_candidates += new.shape[0]
        if new.shape[0]:
            candidates.append(new)
        report(logger, "k-means|| round %d: cost %.6g, %d new candidates", r, phi,
               new.shape[0], verbose=2)  # fmt: skip
        if phi == 0:
            break
        if r >= init_rounds and _distinct(np.concatenate(candidates)).shape[0] >= n_clusters:
            break

    cand = np.concatenate(candidates)
    job = R.SeedingJob(
        "weights", K.prepare_centers(new, shift, rows.dtype) if new.shape[0] else None, shift,
        first_index=n_candidates - new.shape[0], n_candidates=n_candidates,
        replay=() if keep_state else applied,
    )  # fmt: skip
    weights, _, _ = yield Pass(job, state, entropy, _STAGE_WEIGHTS, "kmeans-parallel-weights")
    report(
        logger, "k-means||: %d candidates from %d rounds in %.3fs", cand.shape[0], r,
        time.perf_counter() - t0, verbose=2,
    )  # fmt: skip
    centers = recluster_candidates(cand, weights, n_clusters, rng, rows.n_samples)
    return InitResult(centers.astype(rows.dtype), moments)


def keeps_seeding_state(rows: RowBlocks, concurrent: int = 1) -> bool:
    """Whether blocks keep k-means||'s per-row min costs between passes, or rebuild
    them each pass by replaying the earlier rounds (more arithmetic, no memory).

    The costs are 6-12 bytes a row for each of the ``concurrent`` seeders sharing the
    passes, held twice while a pass runs; they are kept while that is under a quarter
    of the memory budget.  Both ways give the same result, so the choice may depend on
    the cluster.
    """
    per_row = (4 if rows.dtype == np.float32 else 8) + 4
    return rows.keeps_row_state(per_row * concurrent)


# k-means++ restarts of the in-memory recluster step.  The candidates are a few hundred
# weighted rows, so on large data restarts cost little next to one pass, and each
# restart more makes a worse local optimum rarer: W1 (4M x 32, k = 16, 12 seeds), 10
# restarts settled in a worse optimum at 5 seeds and took a median 15 Lloyd
# iterations; 100 restarts (0.2 s) at none, in a median 5.  Their cost grows with the
# candidates (k = 100: 1.3 s for 100), so the count is bounded by the data: a restart
# per 100 rows a candidate, between 10 and 100 (depends only on the sizes, so the
# result stays deterministic).
RECLUSTER_RESTARTS = (10, 100)
_ROWS_PER_RESTART_CANDIDATE = 100


def recluster_restarts(n_samples: int, n_candidates: int) -> int:
    """k-means++ restarts of the recluster step: ``n_samples / (100 · n_candidates)``
    within ``RECLUSTER_RESTARTS``."""
    low, high = RECLUSTER_RESTARTS
    afforded = n_samples // (_ROWS_PER_RESTART_CANDIDATE * max(n_candidates, 1))
    return int(min(high, max(low, afforded)))


def recluster_candidates(
    cand, weights, n_clusters: int, rng: np.random.Generator, n_samples: int
) -> np.ndarray:
    """The best of ``recluster_restarts(n_samples, candidates)`` weighted k-means++ +
    Lloyd runs on the (small, in-memory) candidates."""
    keep = weights > 0
    cand, weights = cand[keep], weights[keep]
    distinct = _distinct(cand)
    if distinct.shape[0] < n_clusters:
        return _pad_to_k(distinct, n_clusters)
    if cand.shape[0] == n_clusters:
        return cand
    seed = _seed_int(rng)
    restarts = recluster_restarts(n_samples, cand.shape[0])
    model = _SkKMeans(n_clusters, init="k-means++", n_init=restarts, random_state=seed)
    # one thread: on a few hundred rows OpenMP's start-up and barriers cost more than
    # the arithmetic (W1's 167 candidates: 30 ms against 50-180 ms on 2 busy cores)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # duplicate candidates can leave sklearn's Lloyd with fewer distinct clusters;
        # the full-data Lloyd relocates them.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # in float64: scikit-learn's float32 distances go through float64 copies
        # (W1's 164 candidates, 100 restarts: 0.16 s in float32, 0.11 s in float64)
        model.fit(cand.astype(np.float64), sample_weight=weights)
    return model.cluster_centers_


def kmeans_plusplus_init(rows: RowBlocks, n_clusters: int, rng: np.random.Generator, **_):
    """D² sampling, one data pass per centre after the first (use on in-memory data)."""
    entropy = int(rng.integers(2**63))
    c0 = yield Fetch([rows.draw_row(rng)])
    shift = c0[0].astype(np.float64)
    centers = [c0]
    state = moments = None
    for j in range(1, n_clusters):
        job = R.SeedingJob(
            "round", K.prepare_centers(centers[-1], shift, rows.dtype), shift,
            first_index=j - 1, scale=1.0, draw="exponential", n_keep=1,
        )  # fmt: skip
        stage = _STAGE_KMEANS_PLUSPLUS * 1000 + j
        draws, state, mom = yield Pass(job, state, entropy, stage, f"kmeans-plusplus-{j}")
        if moments is None:
            moments, shift = accept_moments(mom)
        if draws.cost == 0 or draws.keys.shape[0] == 0 or draws.keys[0] <= 0:
            return InitResult(_pad_to_k(_distinct(np.concatenate(centers)), n_clusters), moments)
        centers.append(draws.rows[:1])
    # with k == 1 nothing was read yet (moments None): Lloyd's first pass checks the data
    return InitResult(np.concatenate(centers), moments)


def random_init(rows: RowBlocks, n_clusters: int, rng: np.random.Generator, **_):
    """``n_clusters`` distinct rows drawn without replacement (∝ sample_weight)."""
    n = rows.n_samples
    w = None
    if rows.sample_weight is not None:
        w = np.asarray(B.to_host(rows.sample_weight.compute()), dtype=np.float64)
        if np.all(w == w[0]):  # equal weights are no weights: the same rows
            w = None
    if w is None:
        index = rng.choice(n, size=n_clusters, replace=False)
    else:
        index = rng.choice(n, size=n_clusters, replace=False, p=w / w.sum())
    centers = yield Fetch(index)
    return InitResult(centers, None)


def check_init_array(init, n_clusters: int, n_features: int) -> np.ndarray:
    """Explicit initial centres as float64, after checking their shape and values."""
    init = np.asarray(init, dtype=np.float64)
    if init.shape != (n_clusters, n_features):
        raise ParameterError(
            f"init array has shape {init.shape}, expected "
            f"(n_clusters, n_features) = ({n_clusters}, {n_features})."
        )
    if not np.all(np.isfinite(init)):
        raise ParameterError("init array contains NaN or infinity.")
    return init


@dataclass(frozen=True)
class CallableInit:
    """``init`` as scikit-learn takes a callable: ``fn(X, n_clusters, random_state)``
    returns the initial centres.

    X is a NumPy array when the data came in memory, else the dask array (the fit
    never loads a store for it); ``random_state`` is a ``numpy.random.RandomState``
    seeded from the run's Generator, the type scikit-learn passes.
    """

    fn: object
    in_memory: bool

    @property
    def name(self) -> str:
        fn = self.fn
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"

    def centers(self, X, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
        data = X.compute() if self.in_memory else X
        random_state = np.random.RandomState(int(rng.integers(2**32 - 1)))
        out = self.fn(data, n_clusters, random_state=random_state)
        out = out.compute() if hasattr(out, "compute") else out  # a dask array's rows
        out = out.toarray() if B.is_sparse(out) else B.to_host(out)  # sparse rows: dense
        return check_init_array(out, n_clusters, X.shape[1])


INITIALIZERS = {
    "k-means||": kmeans_parallel,
    "k-means++": kmeans_plusplus_init,
    "random": random_init,
}


def _advance(seeder, value):
    """Send ``value`` to a seeder: ``(next request, None)`` or ``(None, InitResult)``."""
    try:
        return seeder.send(value), None
    except StopIteration as stop:
        return None, stop.value


def run_seeders(rows: RowBlocks, seeders: list) -> list[InitResult]:
    """Run seeder coroutines together: each pass serves every seeder still running.

    Fetches of single rows are batched into one read; every data pass carries one
    job per running seeder, so seeding several k (or several ``n_init`` runs) costs
    as many passes as the longest of them.  The column moments measured by the
    first pass are handed to every seeder.
    """
    results = [None] * len(seeders)
    pending = {}
    for i, seeder in enumerate(seeders):
        pending[i], results[i] = _advance(seeder, None)
    pending = {i: req for i, req in pending.items() if req is not None}
    moments = None
    while pending:
        fetches = {i: req for i, req in pending.items() if isinstance(req, Fetch)}
        if fetches:
            index = [np.asarray(req.index, dtype=np.int64) for req in fetches.values()]
            fetched = rows.fetch_rows(np.concatenate(index))
            bounds = np.cumsum([ix.shape[0] for ix in index])[:-1]
            replies = dict(zip(fetches, np.split(fetched, bounds), strict=True))
        else:
            order = list(pending)
            requests = [pending[i] for i in order]
            out, states, mom = rows.seeding_pass(
                [tuple(req[:4]) for req in requests], with_moments=moments is None,
                name=requests[0].name, label=requests[0].label,
            )  # fmt: skip
            moments = moments or mom
            replies = {i: (res, st, moments) for i, res, st in zip(order, out, states, strict=True)}
        for i, value in replies.items():
            pending[i], done = _advance(seeders[i], value)
            if pending[i] is None:
                results[i] = done
                del pending[i]
    return results


def seed_runs(rows: RowBlocks, init: str, n_clusters, rngs, **options) -> list[InitResult]:
    """Initial centres of several runs, seeded together (``n_clusters`` one int or one
    per run)."""
    ks = [n_clusters] * len(rngs) if isinstance(n_clusters, int) else list(n_clusters)
    make = INITIALIZERS[init]
    options.setdefault("concurrent", len(ks))
    seeders = [make(rows, k, rng, **options) for k, rng in zip(ks, rngs, strict=True)]
    return run_seeders(rows, seeders)
